// KvApi: Herald's operator HTTP API — the KV namespace and the cluster view.
//
//   PUT    /v1/kv/{key}                  body = value           → 200 {"revision": N}
//   PUT    /v1/kv/{key}?prev_revision=R  compare-and-set (R = 0: the key must not exist)
//   GET    /v1/kv/{key}                  linearizable; ?consistency=stale reads this replica
//                                        → 200, body = value, header X-Herald-Revision
//   DELETE /v1/kv/{key}[?prev_revision=R] → 200 {"deleted": bool, "revision": N}
//   GET    /v1/cluster                    → this node's id, the leader, and every node's view
//   GET    /v1/health                     → 200 {"status": "serving"}, or 503 with "no_leader"
//                                        (no known leader) or "stalled" (the raft thread has
//                                        not finished a step for kHealthMaxRaftIdleMs)
// Every path but /v1/health needs the operator credential; OperatorGate checks it before
// handle() is called.
// Keys are arbitrary bytes, percent-encoded in the path. Errors are JSON bodies
// {"error": {"code", "message"}} with 400/404/409/413/503/504 (docs/api-http.md).
// Requests to a follower are served through it: proposals are forwarded to the leader inside
// raft, and reads use ReadIndex through the leader. Thread-safety: handle() from any thread.
#pragma once

#include "server/http_server.h"
#include "server/node_host.h"
#include "server/operator_gate.h"

namespace herald::server {

// GET /v1/health answers "stalled" once the raft thread has been inside one step this long.
inline constexpr std::int64_t kHealthMaxRaftIdleMs = 2'000;

class KvApi {
 public:
  explicit KvApi(NodeHost* host) : host_(host) {}
  // Answers every request, with 404 for paths outside the API.
  void handle(HttpRequest&& request, Responder respond);
  // The answer to GET /v1/health for `health`.
  [[nodiscard]] static HttpResponse health(const HostHealth& health);

 private:
  void handle_kv(HttpRequest&& request, std::string key, Responder respond);
  void put(HttpRequest&& request, std::string key, Responder respond);
  void get(const HttpRequest& request, std::string key, Responder respond);
  void del(const HttpRequest& request, std::string key, Responder respond);
  void cluster(Responder respond);

  NodeHost* host_;  // borrowed
};

}  // namespace herald::server
