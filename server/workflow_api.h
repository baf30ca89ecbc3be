// WorkflowApi: the HTTP surface of the durable workflow engine (docs/api-http.md, "Workflows").
//
//   POST /v1/workflows                       {"type", "id", "input"} → start (dedup by id)
//   GET  /v1/workflows?type=T[&state=S][&limit=N][&page_token=P]   → visibility list
//   GET  /v1/workflows/{id}                  → the current run (linearizable)
//   GET  /v1/workflows/{id}/history[?run=R][&after=SEQ][&limit=N]  → history events
//   POST /v1/workflows/{id}/signals/{name}   body = payload
//   POST /v1/workflows/{id}/cancel           body = reason
//   POST /v1/sagas/{id}/retry | /resolve     operator actions on a saga in compensation_failed
// Thread-safety: handle() from any thread.
#pragma once

#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/node_host.h"
#include "workflow/workflow.pb.h"

namespace herald::server {

class WorkflowApi {
 public:
  explicit WorkflowApi(NodeHost* host) : host_(host) {}
  // True when the path belongs to this API (and the request was answered).
  bool handle(HttpRequest& request, Responder& respond);

 private:
  void start(const HttpRequest& request, Responder respond);
  void list(const HttpRequest& request, Responder respond);
  void get(std::string id, Responder respond);
  void history(const HttpRequest& request, std::string id, Responder respond);
  void propose(const workflowpb::WorkflowCommand& command, Responder respond);

  NodeHost* host_;  // borrowed
};

}  // namespace herald::server
