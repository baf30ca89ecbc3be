// ClusterApi: the operator's HTTP surface for membership, leadership and backups
// (docs/api-http.md, "Cluster administration"), behind the operator credential like every
// operator path (server/operator_gate.h).
//
//   POST   /v1/cluster/members                {"id": N, "peer_address": "host:port"}
//                                             → add node N as a learner
//   POST   /v1/cluster/members/{id}/promote   → make learner {id} a voter
//   DELETE /v1/cluster/members/{id}           → remove member {id} (never the leader)
//   POST   /v1/cluster/leader                 {"id": N} → hand leadership to voter N
//   POST   /v1/cluster/backup                 {"dir": "/path"} → an online backup on this
//                                             node's disk (server/backup.h)
// Membership changes are decided by the leader: a follower answers 503 `not_leader` with the
// leader's id and client address ("leader", "leader_address") when it knows them, and the caller
// asks the leader. A change answers 200 {"voters": [...], "learners": [...]} once it is applied
// on the leader. Thread-safety: handle() from any thread.
#pragma once

#include <string_view>

#include "server/http_server.h"
#include "server/node_host.h"

namespace herald::server {

inline constexpr std::string_view kClusterMembersPath = "/v1/cluster/members";
inline constexpr std::string_view kClusterLeaderPath = "/v1/cluster/leader";
inline constexpr std::string_view kClusterBackupPath = "/v1/cluster/backup";
// A backup directory path longer than this is refused.
inline constexpr std::size_t kMaxBackupDirBytes = 4096;

class ClusterApi {
 public:
  explicit ClusterApi(NodeHost* host) : host_(host) {}
  // True when the path belongs to this API (and the request was answered).
  bool handle(HttpRequest& request, Responder& respond);

 private:
  void change(const rsm::MemberChange& change, Responder respond);
  void transfer(const HttpRequest& request, Responder respond);
  void backup(const HttpRequest& request, Responder respond);

  NodeHost* host_;  // borrowed
};

}  // namespace herald::server
