#include "server/workflow_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <limits>
#include <memory>
#include <mutex>

#include "base/clock.h"
#include "messaging/delivery.h"
#include "server/api_json.h"
#include "server/workflow_overview.h"
#include "workflow/engine.h"
#include "workflow/saga.h"

namespace herald::server {

namespace json = boost::json;

namespace {

constexpr std::size_t kMaxListLimit = 1000;
constexpr std::size_t kMaxHistoryLimit = 1000;
constexpr std::size_t kDefaultLimit = 100;

json::object record_json(const workflowpb::WorkflowRecord& r) {
  return json::object{{"id", r.workflow_id()},
                      {"type", r.type()},
                      {"run_id", r.run_id()},
                      {"status", workflowpb::WorkflowStatus_Name(r.status())},
                      {"state", r.state()},
                      {"data", r.data()},
                      {"result", r.result()},
                      {"error_type", r.error_type()},
                      {"error_message", r.error_message()},
                      {"created_ms", r.created_ms()},
                      {"updated_ms", r.updated_ms()},
                      {"history_length", r.history_length()},
                      {"cancel_requested", r.cancel_requested()}};
}

json::object event_json(const workflowpb::HistoryEvent& e) {
  json::object o{{"seq", e.seq()}, {"time_ms", e.time_ms()}, {"kind", e.kind()}};
  if (!e.name().empty()) o["name"] = e.name();
  if (!e.payload().empty()) o["payload"] = e.payload();
  if (!e.error_type().empty()) o["error_type"] = e.error_type();
  if (!e.error_message().empty()) o["error_message"] = e.error_message();
  if (e.activity_id() != 0) o["activity_id"] = e.activity_id();
  if (e.attempt() != 0) o["attempt"] = e.attempt();
  if (e.next_attempt_ms() != 0) o["next_attempt_ms"] = e.next_attempt_ms();
  if (e.node_id() != 0) o["node_id"] = e.node_id();
  if (e.term() != 0) o["term"] = e.term();
  return o;
}

// A purged workflow (past the closed-workflow retention): its outcome and milestones.
json::object summary_json(const workflowpb::WorkflowSummary& s) {
  json::array milestones;
  for (const auto& e : s.milestones()) {
    milestones.push_back(event_json(e));
  }
  return json::object{{"id", s.workflow_id()},
                      {"type", s.type()},
                      {"run_id", s.run_id()},
                      {"status", workflowpb::WorkflowStatus_Name(s.status())},
                      {"state", s.state()},
                      {"error_type", s.error_type()},
                      {"created_ms", s.created_ms()},
                      {"closed_ms", s.closed_ms()},
                      {"history_length", s.history_length()},
                      {"purged", true},
                      {"milestones", std::move(milestones)},
                      {"milestones_truncated", s.milestones_truncated()}};
}

// Parses an optional non-negative integer query parameter.
Result<std::uint64_t> query_number(const HttpRequest& request, const char* name,
                                   std::uint64_t fallback) {
  const auto it = request.query.find(name);
  if (it == request.query.end()) {
    return fallback;
  }
  std::uint64_t v = 0;
  const std::string& s = it->second;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return Status::invalid_argument(std::string(name) + " must be a non-negative integer");
  }
  return v;
}

// Reads a required string field of a JSON object body.
Result<std::string> string_field(const json::object& body, const char* name, bool required) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr) {
    if (required) {
      return Status::invalid_argument(std::string("missing field \"") + name + "\"");
    }
    return std::string();
  }
  if (!v->is_string()) {
    return Status::invalid_argument(std::string("field \"") + name + "\" must be a string");
  }
  return std::string(v->as_string());
}

}  // namespace

bool WorkflowApi::handle(HttpRequest& request, Responder& respond) {
  auto segments = split_path(request.path);
  if (!segments.ok()) {
    return false;
  }
  const std::vector<std::string>& s = *segments;
  if (s.size() == 3 && s[0] == "v1" && s[1] == "overview" && s[2] == "workflows") {
    if (request.method == "GET") {
      overview(request, std::move(respond));
    } else {
      respond(error_response(Status::not_found("no such endpoint or method")));
    }
    return true;
  }
  if (s.size() < 2 || s[0] != "v1" || (s[1] != "workflows" && s[1] != "sagas")) {
    return false;
  }
  const std::string& m = request.method;
  workflowpb::WorkflowCommand command;
  if (s[1] == "sagas" && s.size() == 4 && m == "POST" && (s[3] == "retry" || s[3] == "resolve")) {
    command.mutable_signal()->set_workflow_id(s[2]);
    command.mutable_signal()->set_name(s[3]);
    propose(command, std::move(respond));
  } else if (s[1] != "workflows") {
    respond(error_response(Status::not_found("no such endpoint")));
  } else if (s.size() == 2 && m == "POST") {
    start(request, std::move(respond));
  } else if (s.size() == 2 && m == "GET") {
    list(request, std::move(respond));
  } else if (s.size() == 3 && m == "GET") {
    get(s[2], std::move(respond));
  } else if (s.size() == 4 && s[3] == "history" && m == "GET") {
    history(request, s[2], std::move(respond));
  } else if (s.size() == 5 && s[3] == "signals" && m == "POST") {
    auto* signal = command.mutable_signal();
    signal->set_workflow_id(s[2]);
    signal->set_name(s[4]);
    signal->set_payload(std::move(request.body));
    propose(command, std::move(respond));
  } else if (s.size() == 3 && s[2] == "actions" && m == "POST") {
    batch_action(request, std::move(respond));
  } else if (s.size() == 4 && s[3] == "actions" && m == "POST") {
    action(request, s[2], std::move(respond));
  } else if (s.size() == 4 && s[3] == "cancel" && m == "POST") {
    command.mutable_cancel()->set_workflow_id(s[2]);
    command.mutable_cancel()->set_reason(std::move(request.body));
    propose(command, std::move(respond));
  } else {
    respond(error_response(Status::not_found("no such endpoint or method")));
  }
  return true;
}

void WorkflowApi::start(const HttpRequest& request, Responder respond) {
  boost::system::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (ec || !body.is_object()) {
    respond(error_response(Status::invalid_argument("the body must be a JSON object")));
    return;
  }
  const json::object& o = body.as_object();
  auto type = string_field(o, "type", true);
  auto id = string_field(o, "id", true);
  auto input = string_field(o, "input", false);
  for (const Status* s : {&type.status(), &id.status(), &input.status()}) {
    if (!s->ok()) {
      respond(error_response(*s));
      return;
    }
  }
  if (internal_types_.contains(*type)) {
    respond(json_response(
        403, json::object{{"error", json::object{{"code", "internal_type"},
                                                 {"message", "workflows of type " + *type +
                                                                 " are started by Herald itself, "
                                                                 "not through this API"}}}}));
    return;
  }
  workflowpb::WorkflowCommand command;
  auto* st = command.mutable_start();
  st->set_type(std::move(type).value());
  st->set_workflow_id(std::move(id).value());
  st->set_input(std::move(input).value());
  propose(command, std::move(respond));
}

void WorkflowApi::propose(const workflowpb::WorkflowCommand& command, Responder respond) {
  rsmpb::Command c;
  c.mutable_module()->set_name(workflow::kModuleName);
  c.mutable_module()->set_payload(command.SerializeAsString());
  host_->propose(std::move(c), [respond = std::move(respond)](Result<rsmpb::CommandResult> r) {
    if (!r.ok()) {
      respond(error_response(r.status()));
      return;
    }
    if (r->code() != 0) {
      respond(error_response(Status(static_cast<Code>(r->code()), r->message())));
      return;
    }
    workflowpb::WorkflowRecord record;
    if (!record.ParseFromString(r->payload())) {
      respond(error_response(Status::corruption("undecodable workflow record in result")));
      return;
    }
    respond(json_response(
        200, json::object{{"existed", r->existed()}, {"workflow", record_json(record)}}));
  });
}

void WorkflowApi::get(std::string id, Responder respond) {
  host_->read([id = std::move(id), respond = std::move(respond)](const Status& s,
                                                                 const storage::Engine& engine) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    auto record = workflow::Engine::read_workflow(engine, id);
    if (!record.ok()) {
      respond(error_response(record.status()));
    } else if (!record->has_value()) {
      auto summary = workflow::Engine::read_summary(engine, id);
      if (summary.ok() && summary->has_value()) {
        respond(json_response(200, summary_json(**summary)));
      } else {
        respond(error_response(summary.ok() ? Status::not_found("no such workflow")
                                            : summary.status()));
      }
    } else {
      respond(json_response(200, record_json(**record)));
    }
  });
}

void WorkflowApi::history(const HttpRequest& request, std::string id, Responder respond) {
  auto run = query_number(request, "run", 0);
  auto after = query_number(request, "after", 0);
  auto limit = query_number(request, "limit", kDefaultLimit);
  for (const Status* s : {&run.status(), &after.status(), &limit.status()}) {
    if (!s->ok()) {
      respond(error_response(*s));
      return;
    }
  }
  const std::size_t n = std::min<std::size_t>(*limit, kMaxHistoryLimit);
  host_->read([id = std::move(id), run = *run, after = *after, n, respond = std::move(respond)](
                  const Status& s, const storage::Engine& engine) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    std::uint64_t run_id = run;
    if (run_id == 0) {
      auto record = workflow::Engine::read_workflow(engine, id);
      if (!record.ok() || !record->has_value()) {
        respond(
            error_response(record.ok() ? Status::not_found("no such workflow") : record.status()));
        return;
      }
      run_id = (*record)->run_id();
    }
    auto events = workflow::Engine::read_history(engine, id, run_id, after, n);
    if (!events.ok()) {
      respond(error_response(events.status()));
      return;
    }
    json::array out;
    for (const auto& e : *events) {
      out.push_back(event_json(e));
    }
    respond(json_response(200, json::object{{"id", id}, {"run_id", run_id}, {"events", out}}));
  });
}

void WorkflowApi::list(const HttpRequest& request, Responder respond) {
  workflow::ListFilter filter;
  const auto type = request.query.find("type");
  if (type == request.query.end() || type->second.empty()) {
    respond(error_response(Status::invalid_argument("type is required")));
    return;
  }
  filter.type = type->second;
  if (const auto state = request.query.find("state"); state != request.query.end()) {
    filter.state = state->second;
  }
  if (const auto token = request.query.find("page_token"); token != request.query.end()) {
    filter.page_token = token->second;
  }
  auto limit = query_number(request, "limit", kDefaultLimit);
  if (!limit.ok()) {
    respond(error_response(limit.status()));
    return;
  }
  filter.limit = std::min<std::size_t>(*limit, kMaxListLimit);
  host_->read([filter = std::move(filter), respond = std::move(respond)](
                  const Status& s, const storage::Engine& engine) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    auto page = workflow::Engine::list(engine, filter);
    if (!page.ok()) {
      respond(error_response(page.status()));
      return;
    }
    json::array out;
    for (const auto& e : page->entries) {
      out.push_back(json::object{{"id", e.workflow_id},
                                 {"type", e.type},
                                 {"status", workflowpb::WorkflowStatus_Name(e.status)},
                                 {"state", e.state},
                                 {"state_since_ms", e.state_since_ms}});
    }
    respond(json_response(
        200, json::object{{"workflows", out}, {"next_page_token", page->next_page_token}}));
  });
}

namespace {

json::array overview_items_json(const std::vector<OverviewItem>& items) {
  json::array out;
  for (const OverviewItem& item : items) {
    json::object o{{"id", item.workflow_id},
                   {"type", item.type},
                   {"status", item.status},
                   {"state", item.state},
                   {"updated_ms", item.updated_ms}};
    if (!item.activity_type.empty()) {
      o["activity_type"] = item.activity_type;
      o["attempt"] = item.attempt;
      o["next_attempt_ms"] = item.next_attempt_ms;
      o["error_type"] = item.error_type;
      o["error_message"] = item.error_message;
    }
    out.emplace_back(std::move(o));
  }
  return out;
}

json::object overview_json(const WorkflowOverview& view, std::int64_t now_ms) {
  json::array counts;
  for (const auto& [key, n] : view.counts) {
    counts.emplace_back(json::object{{"type", key.first}, {"state", key.second}, {"count", n}});
  }
  return json::object{{"now_ms", now_ms},
                      {"counts", std::move(counts)},
                      {"stuck", overview_items_json(view.stuck)},
                      {"retrying", overview_items_json(view.retrying)},
                      {"escalated", overview_items_json(view.escalated)},
                      {"failed", overview_items_json(view.failed)},
                      {"compensation_failed", overview_items_json(view.compensation_failed)},
                      {"scanned", view.scanned},
                      {"truncated", view.truncated}};
}

}  // namespace

namespace {

// The operator action a request body asks for on `workflow_id`: {"action", "operator", "reason"?}
// with action retry_now, escalate_now, cancel, saga_retry or saga_resolve.
Result<workflowpb::OperatorAction> operator_action_of(const json::object& body) {
  HERALD_ASSIGN_OR_RETURN(std::string action, string_field(body, "action", true));
  HERALD_ASSIGN_OR_RETURN(std::string actor, string_field(body, "operator", true));
  HERALD_ASSIGN_OR_RETURN(std::string reason, string_field(body, "reason", false));
  if (actor.empty() || actor.size() > kMaxOperatorNameBytes) {
    return Status::invalid_argument("\"operator\" names who acts: 1 to 256 bytes");
  }
  workflowpb::OperatorAction op;
  if (action == "retry_now") {
    op.set_action("retry_now");
  } else if (action == "escalate_now") {
    op.set_action("fire_timer");
    op.set_name(messaging::kEscalateTimer);
  } else if (action == "cancel") {
    op.set_action("cancel");
  } else if (action == "saga_retry" || action == "saga_resolve") {
    op.set_action("signal");
    op.set_name(action == "saga_retry" ? workflow::kSagaRetrySignal : workflow::kSagaResolveSignal);
  } else {
    return Status::invalid_argument(
        "\"action\" is one of retry_now, escalate_now, cancel, saga_retry, saga_resolve");
  }
  op.set_actor(std::move(actor));
  op.set_reason(std::move(reason));
  return op;
}

Result<json::object> body_of(const HttpRequest& request) {
  boost::system::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (ec || !body.is_object()) {
    return Status::invalid_argument("the body must be a JSON object");
  }
  return std::move(body.as_object());
}

rsmpb::Command workflow_command(const workflowpb::WorkflowCommand& command) {
  rsmpb::Command c;
  c.mutable_module()->set_name(workflow::kModuleName);
  c.mutable_module()->set_payload(command.SerializeAsString());
  return c;
}

// Collects the outcome of each command of a batch and answers once every one is known.
struct BatchAnswer {
  std::mutex mu;
  json::array results;      // GUARDED_BY(mu)
  std::size_t pending = 0;  // GUARDED_BY(mu)
  Responder respond;

  void done(std::size_t index, const Status& status) {
    std::lock_guard lock(mu);
    json::object& o = results[index].as_object();
    o["ok"] = status.ok();
    if (!status.ok()) {
      o["error"] = json::object{{"code", std::string(code_name(status.code()))},
                                {"message", status.message()}};
    }
    if (--pending == 0) respond(json_response(200, json::object{{"results", results}}));
  }
};

}  // namespace

void WorkflowApi::action(const HttpRequest& request, std::string id, Responder respond) {
  auto body = body_of(request);
  if (!body.ok()) return respond(error_response(body.status()));
  auto op = operator_action_of(*body);
  if (!op.ok()) return respond(error_response(op.status()));
  op->set_workflow_id(std::move(id));
  workflowpb::WorkflowCommand command;
  *command.mutable_operator_action() = std::move(*op);
  propose(command, std::move(respond));
}

void WorkflowApi::batch_action(const HttpRequest& request, Responder respond) {
  auto body = body_of(request);
  if (!body.ok()) return respond(error_response(body.status()));
  auto op = operator_action_of(*body);
  if (!op.ok()) return respond(error_response(op.status()));
  const json::value* ids = body->if_contains("ids");
  const json::value* filter = body->if_contains("filter");
  if ((ids == nullptr) == (filter == nullptr)) {
    return respond(error_response(
        Status::invalid_argument("name the workflows with \"ids\" or with a \"filter\"")));
  }
  if (ids != nullptr) {
    std::vector<std::string> list;
    if (!ids->is_array() || ids->as_array().size() > kMaxBatchActions) {
      return respond(error_response(Status::invalid_argument(
          fmt::format("\"ids\" is an array of at most {} workflow ids", kMaxBatchActions))));
    }
    for (const json::value& v : ids->as_array()) {
      if (!v.is_string()) {
        return respond(error_response(Status::invalid_argument("every id is a string")));
      }
      list.emplace_back(v.as_string());
    }
    return act_on(*op, list, std::move(respond));
  }
  workflow::ListFilter list_filter;
  if (!filter->is_object()) {
    return respond(
        error_response(Status::invalid_argument("\"filter\" is {\"type\", \"state\"?}")));
  }
  auto type = string_field(filter->as_object(), "type", true);
  auto state = string_field(filter->as_object(), "state", false);
  if (!type.ok() || !state.ok()) {
    return respond(error_response(type.ok() ? state.status() : type.status()));
  }
  list_filter.type = std::move(*type);
  if (!state->empty()) list_filter.state = std::move(*state);
  list_filter.limit = kMaxBatchActions;
  host_->read(
      [this, op = std::move(*op), list_filter = std::move(list_filter),
       respond = std::move(respond)](const Status& s, const storage::Engine& engine) mutable {
        if (!s.ok()) return respond(error_response(s));
        auto page = workflow::Engine::list(engine, list_filter);
        if (!page.ok()) return respond(error_response(page.status()));
        std::vector<std::string> list;
        for (const auto& e : page->entries) {
          if (e.status == workflowpb::RUNNING) list.push_back(e.workflow_id);
        }
        act_on(op, list, std::move(respond));
      });
}

void WorkflowApi::act_on(const workflowpb::OperatorAction& op, const std::vector<std::string>& ids,
                         Responder respond) {
  if (ids.empty()) {
    return respond(json_response(200, json::object{{"results", json::array()}}));
  }
  auto answer = std::make_shared<BatchAnswer>();
  answer->respond = std::move(respond);
  answer->pending = ids.size();
  for (const std::string& id : ids) answer->results.emplace_back(json::object{{"id", id}});
  // One command per workflow, each recorded in that workflow's history.
  for (std::size_t i = 0; i < ids.size(); ++i) {
    workflowpb::WorkflowCommand command;
    *command.mutable_operator_action() = op;
    command.mutable_operator_action()->set_workflow_id(ids[i]);
    host_->propose(workflow_command(command), [answer, i](const Result<rsmpb::CommandResult>& r) {
      if (!r.ok()) return answer->done(i, r.status());
      answer->done(i, Status(static_cast<Code>(r->code()), r->message()));
    });
  }
}

void WorkflowApi::overview(const HttpRequest& request, Responder respond) {
  auto stuck = query_number(request, "stuck_after_ms", kDefaultStuckAfterMs);
  auto limit = query_number(request, "limit", kDefaultOverviewListLimit);
  for (const Status* s : {&stuck.status(), &limit.status()}) {
    if (!s->ok()) {
      respond(error_response(*s));
      return;
    }
  }
  OverviewOptions options;
  options.now_ms = SystemClock().wall_ms();
  options.stuck_after_ms = static_cast<std::int64_t>(
      std::min<std::uint64_t>(*stuck, std::numeric_limits<std::int64_t>::max()));
  options.list_limit = std::clamp<std::size_t>(*limit, 1, kMaxOverviewListLimit);
  host_->read([types = host_->workflow_types(), options, respond = std::move(respond)](
                  const Status& s, const storage::Engine& engine) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    auto view = workflow_overview(engine, types, options);
    if (!view.ok()) {
      respond(error_response(view.status()));
      return;
    }
    respond(json_response(200, overview_json(*view, options.now_ms)));
  });
}

}  // namespace herald::server
