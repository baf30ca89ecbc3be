#include "server/api_json.h"

#include "rsm/node.h"
#include "server/damage_report.h"

namespace herald::server {

namespace json = boost::json;

unsigned http_status_for(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kNotFound: return 404;
    case Code::kInvalidArgument: return 400;
    case Code::kFailedPrecondition:
    case Code::kAlreadyExists: return 409;
    case Code::kResourceExhausted: return 429;
    case Code::kTimeout: return 504;
    case Code::kNotLeader:
    case Code::kUnavailable:
    case Code::kAborted: return 503;
    default: return 500;
  }
}

HttpResponse json_response(unsigned status, const json::value& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = json::serialize(body);
  return r;
}

HttpResponse error_response(const Status& status, const json::object& extra) {
  report_damage(status);
  json::object err{{"code", std::string(code_name(status.code()))}, {"message", status.message()}};
  for (auto& [k, v] : extra) {
    err[k] = v;
  }
  // 507 Insufficient Storage: the cluster refuses new content until a disk has room again.
  const unsigned http_status =
      rsm::is_disk_alarm_refusal(status) ? 507 : http_status_for(status.code());
  return json_response(http_status, json::object{{"error", err}});
}

}  // namespace herald::server
