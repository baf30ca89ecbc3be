#include "server/kv_api.h"

#include <boost/json.hpp>
#include <charconv>
#include <optional>

#include "base/encoding.h"
#include "rsm/kv_state_machine.h"
#include "server/api_json.h"

namespace herald::server {

namespace json = boost::json;

namespace {

constexpr std::string_view kKvPrefix = "/v1/kv/";
constexpr std::string_view kClusterPath = "/v1/cluster";

// Parses ?prev_revision=R. nullopt when absent; an error for a malformed number.
Result<std::optional<std::uint64_t>> prev_revision(const HttpRequest& request) {
  const auto it = request.query.find("prev_revision");
  if (it == request.query.end()) {
    return std::optional<std::uint64_t>();
  }
  std::uint64_t value = 0;
  const std::string& s = it->second;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) {
    return Status::invalid_argument("prev_revision must be a non-negative integer");
  }
  return std::optional<std::uint64_t>(value);
}

Status result_status(const rsmpb::CommandResult& result) {
  if (result.code() == 0) {
    return Status::ok_status();
  }
  return {static_cast<Code>(result.code()), result.message()};
}

// Turns a proposal's outcome into a response via `on_ok`.
template <typename OnOk>
rsm::ProposeCallback answer(Responder respond, OnOk on_ok) {
  return [respond = std::move(respond), on_ok](Result<rsmpb::CommandResult> r) {
    if (!r.ok()) {
      respond(error_response(r.status()));
      return;
    }
    const Status s = result_status(*r);
    if (!s.ok()) {
      json::object extra;
      if (s.code() == Code::kFailedPrecondition) {
        extra["current_revision"] = r->current_revision();
      }
      respond(error_response(s, extra));
      return;
    }
    respond(json_response(200, on_ok(*r)));
  };
}

HttpResponse value_response(const storage::Reader& reader, const std::string& key) {
  auto value = rsm::KvStateMachine::read(reader, key);
  if (!value.ok()) {
    return error_response(value.status());
  }
  if (!value->has_value()) {
    return error_response(Status::not_found("no such key"));
  }
  HttpResponse r;
  r.status = 200;
  r.content_type = "application/octet-stream";
  r.body = (*value)->value();
  r.headers.emplace_back("X-Herald-Revision", std::to_string((*value)->revision()));
  return r;
}

}  // namespace

HttpResponse KvApi::health(const HostHealth& h) {
  if (h.halted) {
    return json_response(503, json::object{{"status", "halted"}, {"reason", h.halt_reason}});
  }
  json::object body;
  if (!h.disk_alarms.empty()) {
    // Still serving reads and deletions; new content is refused until the alarms clear.
    json::array alarms;
    for (const raft::NodeId node : h.disk_alarms) {
      alarms.emplace_back(node);
    }
    body["disk_alarms"] = std::move(alarms);
  }
  if (h.raft_idle_ms > kHealthMaxRaftIdleMs) {
    body["status"] = "stalled";
    return json_response(503, body);
  }
  if (!h.leader_known) {
    body["status"] = "no_leader";
    return json_response(503, body);
  }
  body["status"] = "serving";
  return json_response(200, body);
}

void KvApi::handle(HttpRequest&& request, Responder respond) {
  const std::string_view path = request.path;
  if (path == kHealthPath && request.method == "GET") {
    respond(health(host_->health()));
    return;
  }
  if (path == kClusterPath && request.method == "GET") {
    cluster(std::move(respond));
    return;
  }
  if (path.starts_with(kKvPrefix)) {
    std::string key;
    if (!percent_decode(path.substr(kKvPrefix.size()), key)) {
      respond(error_response(Status::invalid_argument("malformed percent-encoding in key")));
      return;
    }
    handle_kv(std::move(request), std::move(key), std::move(respond));
    return;
  }
  respond(error_response(Status::not_found("no such endpoint")));
}

void KvApi::handle_kv(HttpRequest&& request, std::string key, Responder respond) {
  if (const Status s = rsm::validate_kv(key, request.body); !s.ok()) {
    respond(error_response(s));
    return;
  }
  if (request.method == "PUT") {
    put(std::move(request), std::move(key), std::move(respond));
  } else if (request.method == "GET") {
    get(request, std::move(key), std::move(respond));
  } else if (request.method == "DELETE") {
    del(request, std::move(key), std::move(respond));
  } else {
    HttpResponse r = error_response(Status::invalid_argument("method not allowed"));
    r.status = 405;
    respond(std::move(r));
  }
}

void KvApi::put(HttpRequest&& request, std::string key, Responder respond) {
  auto prev = prev_revision(request);
  if (!prev.ok()) {
    respond(error_response(prev.status()));
    return;
  }
  rsmpb::Command command;
  auto* op = command.mutable_kv_put();
  op->set_key(std::move(key));
  op->set_value(std::move(request.body));
  if (prev->has_value()) {
    op->set_has_expected_revision(true);
    op->set_expected_revision(**prev);
  }
  host_->propose(std::move(command), answer(std::move(respond), [](const rsmpb::CommandResult& r) {
                   return json::value(json::object{{"revision", r.revision()}});
                 }));
}

void KvApi::del(const HttpRequest& request, std::string key, Responder respond) {
  auto prev = prev_revision(request);
  if (!prev.ok()) {
    respond(error_response(prev.status()));
    return;
  }
  rsmpb::Command command;
  auto* op = command.mutable_kv_delete();
  op->set_key(std::move(key));
  if (prev->has_value()) {
    op->set_has_expected_revision(true);
    op->set_expected_revision(**prev);
  }
  host_->propose(
      std::move(command), answer(std::move(respond), [](const rsmpb::CommandResult& r) {
        return json::value(json::object{{"deleted", r.existed()}, {"revision", r.revision()}});
      }));
}

void KvApi::get(const HttpRequest& request, std::string key, Responder respond) {
  const auto consistency = request.query.find("consistency");
  if (consistency != request.query.end()) {
    if (consistency->second == "stale") {
      respond(value_response(host_->engine(), key));
      return;
    }
    if (consistency->second != "linearizable") {
      respond(error_response(
          Status::invalid_argument("consistency must be \"linearizable\" or \"stale\"")));
      return;
    }
  }
  host_->read([key = std::move(key), respond = std::move(respond)](const Status& s,
                                                                   const storage::Engine& engine) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    respond(value_response(engine, key));
  });
}

namespace {

constexpr double kMicrosPerMilli = 1000.0;

json::object latency_json(const LatencySummary& s) {
  return json::object{{"count", s.count},
                      {"p50_ms", static_cast<double>(s.p50_us) / kMicrosPerMilli},
                      {"p99_ms", static_cast<double>(s.p99_us) / kMicrosPerMilli},
                      {"max_ms", static_cast<double>(s.max_us) / kMicrosPerMilli}};
}

// A node's figures (server/node_figures.h) as GET /v1/cluster shows them (docs/api-http.md).
json::object figures_json(const NodeFigures& f, MonoMs age_ms) {
  return json::object{{"window_ms", f.window_ms},
                      {"age_ms", age_ms},
                      {"stale", age_ms > kNodeFiguresStaleMs},
                      {"fsync", latency_json(f.fsync)},
                      {"commit", latency_json(f.commit)},
                      {"apply", latency_json(f.apply)},
                      {"devices", f.devices},
                      {"leader_changes", f.leader_changes}};
}

}  // namespace

void KvApi::cluster(Responder respond) {
  host_->inspect([respond = std::move(respond)](const ClusterView& view) {
    const raft::NodeStatus& self = view.self;
    json::array nodes;
    std::map<raft::NodeId, raft::Index> match;
    for (const auto& p : self.progress) {
      match[p.id] = p.match;
    }
    json::object me{{"id", self.id},           {"role", raft::role_name(self.role)},
                    {"term", self.term},       {"commit", self.commit},
                    {"applied", self.applied}, {"last_index", self.last_index}};
    me["figures"] = figures_json(view.figures, 0);
    nodes.push_back(me);
    for (const auto& [id, peer] : view.peers) {
      json::object n{{"id", id},
                     {"role", peer.report.role()},
                     {"term", peer.report.term()},
                     {"commit", peer.report.commit()},
                     {"applied", peer.report.applied()},
                     {"last_index", peer.report.last_index()},
                     {"report_age_ticks", peer.age_ticks},
                     {"client_address", peer.report.client_address()}};
      if (self.role == raft::Role::kLeader && match.contains(id)) {
        n["match"] = match[id];
      }
      const auto figures = view.peer_figures.find(id);
      n["figures"] = figures == view.peer_figures.end()
                         ? json::value(nullptr)
                         : figures_json(figures->second.figures, figures->second.age_ms);
      nodes.push_back(n);
    }
    json::object body{{"id", self.id}, {"term", self.term}, {"nodes", nodes}};
    json::array voters;
    json::array learners;
    for (const raft::NodeId id : self.conf_state.voters()) voters.emplace_back(id);
    for (const raft::NodeId id : self.conf_state.learners()) learners.emplace_back(id);
    body["voters"] = std::move(voters);
    body["learners"] = std::move(learners);
    body["memory"] = json::object{{"resident_bytes", view.resident_bytes},
                                  {"block_cache_bytes", view.memory.block_cache_bytes},
                                  {"block_cache_capacity", view.memory.block_cache_capacity},
                                  {"memtable_bytes", view.memory.memtable_bytes},
                                  {"table_readers_bytes", view.memory.table_readers_bytes}};
    body["storage"] = json::object{{"state_bytes", view.memory.state_bytes},
                                   {"log_bytes", view.memory.log_bytes}};
    body["leader"] = self.leader == raft::kNoNode ? json::value(nullptr) : json::value(self.leader);
    respond(json_response(200, body));
  });
}

}  // namespace herald::server
