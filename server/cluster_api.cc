#include "server/cluster_api.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>

#include "server/api_json.h"

namespace herald::server {

namespace json = boost::json;

namespace {

// The request body as a JSON object; kInvalidArgument otherwise.
Result<json::object> body_object(const HttpRequest& request) {
  boost::system::error_code ec;
  json::value v = json::parse(request.body, ec);
  if (ec || !v.is_object()) return Status::invalid_argument("the body must be one JSON object");
  return std::move(v.get_object());
}

Result<std::uint64_t> positive_id(const json::object& body, std::string_view field) {
  const json::value* v = body.if_contains(field);
  boost::system::error_code ec;
  const std::uint64_t id = v != nullptr ? v->to_number<std::uint64_t>(ec) : 0;
  if (v == nullptr || ec || id == 0) {
    return Status::invalid_argument(fmt::format("'{}' must be a positive node id", field));
  }
  return id;
}

Result<std::string> string_field(const json::object& body, std::string_view field) {
  const json::value* v = body.if_contains(field);
  if (v == nullptr || !v->is_string() || v->get_string().empty()) {
    return Status::invalid_argument(fmt::format("'{}' must be a non-empty string", field));
  }
  return std::string(v->get_string());
}

Result<std::uint64_t> path_id(std::string_view text) {
  std::uint64_t id = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id == 0) {
    return Status::invalid_argument(fmt::format("'{}' is not a positive node id", text));
  }
  return id;
}

json::array ids(const google::protobuf::RepeatedField<std::uint64_t>& from) {
  json::array out;
  for (const std::uint64_t id : from) out.emplace_back(id);
  return out;
}

HttpResponse method_not_allowed(std::string_view allowed) {
  HttpResponse r = error_response(Status::invalid_argument("method not allowed"));
  r.status = 405;
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

}  // namespace

bool ClusterApi::handle(HttpRequest& request, Responder& respond) {
  const std::string_view path = request.path;
  if (path == kClusterLeaderPath) {
    if (request.method != "POST") {
      respond(method_not_allowed("POST"));
    } else {
      transfer(request, std::move(respond));
    }
    return true;
  }
  if (path == kClusterBackupPath) {
    if (request.method != "POST") {
      respond(method_not_allowed("POST"));
    } else {
      backup(request, std::move(respond));
    }
    return true;
  }
  if (!path.starts_with(kClusterMembersPath)) return false;
  std::string_view rest = path.substr(kClusterMembersPath.size());
  if (rest.empty()) {
    if (request.method != "POST") {
      respond(method_not_allowed("POST"));
      return true;
    }
    auto body = body_object(request);
    auto id = body.ok() ? positive_id(*body, "id") : Result<std::uint64_t>(body.status());
    auto address = id.ok() ? string_field(*body, "peer_address") : Result<std::string>(id.status());
    if (!address.ok()) {
      respond(error_response(address.status()));
      return true;
    }
    change({rsm::MemberOp::kAddLearner, *id, *std::move(address)}, std::move(respond));
    return true;
  }
  if (!rest.starts_with('/')) return false;
  rest.remove_prefix(1);
  constexpr std::string_view kPromote = "/promote";
  const bool promote = rest.ends_with(kPromote);
  if (promote) rest.remove_suffix(kPromote.size());
  auto id = path_id(rest);
  if (!id.ok()) {
    respond(error_response(id.status()));
    return true;
  }
  if (promote && request.method == "POST") {
    change({rsm::MemberOp::kPromote, *id, {}}, std::move(respond));
  } else if (!promote && request.method == "DELETE") {
    change({rsm::MemberOp::kRemove, *id, {}}, std::move(respond));
  } else {
    respond(method_not_allowed(promote ? "POST" : "DELETE"));
  }
  return true;
}

void ClusterApi::change(const rsm::MemberChange& change, Responder respond) {
  NodeHost* host = host_;
  host_->change_membership(change, [host, respond = std::move(respond)](const Status& s) {
    if (s.code() == Code::kNotLeader) {
      // Point the caller at the leader: its id and, from its report, its client address.
      host->inspect([s, respond](const ClusterView& view) {
        json::object extra;
        const raft::NodeId leader = view.self.leader;
        if (leader != raft::kNoNode) {
          extra["leader"] = leader;
          if (const auto it = view.peers.find(leader); it != view.peers.end()) {
            extra["leader_address"] = it->second.report.client_address();
          }
        }
        respond(error_response(s, extra));
      });
      return;
    }
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    host->inspect([respond](const ClusterView& view) {
      respond(json_response(200, json::object{{"voters", ids(view.self.conf_state.voters())},
                                              {"learners", ids(view.self.conf_state.learners())}}));
    });
  });
}

void ClusterApi::transfer(const HttpRequest& request, Responder respond) {
  auto body = body_object(request);
  auto id = body.ok() ? positive_id(*body, "id") : Result<std::uint64_t>(body.status());
  if (!id.ok()) {
    respond(error_response(id.status()));
    return;
  }
  NodeHost* host = host_;
  host_->transfer_leadership(*id, [host, respond = std::move(respond)](const Status& s) {
    if (!s.ok()) {
      respond(error_response(s));
      return;
    }
    host->inspect([respond](const ClusterView& view) {
      respond(
          json_response(200, json::object{{"leader", view.self.leader}, {"term", view.self.term}}));
    });
  });
}

void ClusterApi::backup(const HttpRequest& request, Responder respond) {
  auto body = body_object(request);
  auto dir = body.ok() ? string_field(*body, "dir") : Result<std::string>(body.status());
  if (dir.ok() && (dir->size() > kMaxBackupDirBytes || !dir->starts_with('/'))) {
    dir = Status::invalid_argument(
        fmt::format("'dir' must be an absolute path of at most {} bytes", kMaxBackupDirBytes));
  }
  if (!dir.ok()) {
    respond(error_response(dir.status()));
    return;
  }
  host_->backup(*std::move(dir), [respond = std::move(respond)](Result<BackupInfo> r) {
    if (!r.ok()) {
      respond(error_response(r.status()));
      return;
    }
    respond(json_response(200, json::object{{"dir", r->dir},
                                            {"index", r->index},
                                            {"term", r->term},
                                            {"records", r->records},
                                            {"chunks", r->chunks},
                                            {"data_bytes", r->data_bytes}}));
  });
}

}  // namespace herald::server
