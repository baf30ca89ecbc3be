// WorkflowApi: the HTTP surface of the durable workflow engine (docs/api-http.md, "Workflows").
//
//   POST /v1/workflows                       {"type", "id", "input"} → start (dedup by id)
//   GET  /v1/workflows?type=T[&state=S][&limit=N][&page_token=P]   → visibility list
//   GET  /v1/workflows/{id}                  → the current run (linearizable)
//   GET  /v1/workflows/{id}/history[?run=R][&after=SEQ][&limit=N]  → history events
//   POST /v1/workflows/{id}/signals/{name}   body = payload
//   POST /v1/workflows/{id}/cancel           body = reason
//   POST /v1/sagas/{id}/retry | /resolve     operator actions on a saga in compensation_failed
//   GET  /v1/overview/workflows[?stuck_after_ms=MS][&limit=N]  → counts and attention lists
//   POST /v1/workflows/{id}/actions          {"action", "operator", "reason"?} → one operator
//                                            action, a replicated OperatorAction command
//   POST /v1/workflows/actions               {"action", "operator", "reason"?, "ids" | "filter"}
//                                            → the same action on each (one command each)
// Workflow types that the system starts itself (the messaging delivery workflow and read-sync
// saga) cannot be started through POST /v1/workflows: a start names one of `internal_types` is
// refused with 403 `internal_type`. Reads, signals and cancellation are not restricted here.
// Thread-safety: handle() from any thread.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "server/http_server.h"
#include "server/node_host.h"
#include "workflow/workflow.pb.h"

namespace herald::server {

// Workflows one batch action reaches at most.
inline constexpr std::size_t kMaxBatchActions = 500;
// The operator's name recorded with an action, at most.
inline constexpr std::size_t kMaxOperatorNameBytes = 256;

class WorkflowApi {
 public:
  WorkflowApi(NodeHost* host, std::set<std::string, std::less<>> internal_types)
      : host_(host), internal_types_(std::move(internal_types)) {}
  // True when the path belongs to this API (and the request was answered).
  bool handle(HttpRequest& request, Responder& respond);

 private:
  void start(const HttpRequest& request, Responder respond);
  void list(const HttpRequest& request, Responder respond);
  void overview(const HttpRequest& request, Responder respond);
  void action(const HttpRequest& request, std::string id, Responder respond);
  void batch_action(const HttpRequest& request, Responder respond);
  void act_on(const workflowpb::OperatorAction& op, const std::vector<std::string>& ids,
              Responder respond);
  void get(std::string id, Responder respond);
  void history(const HttpRequest& request, std::string id, Responder respond);
  void propose(const workflowpb::WorkflowCommand& command, Responder respond);

  NodeHost* host_;  // borrowed
  std::set<std::string, std::less<>> internal_types_;
};

}  // namespace herald::server
