// JSON responses shared by Herald's HTTP APIs: one mapping from Status codes to HTTP statuses
// and one error body shape, {"error": {"code", "message", ...}} (docs/api-http.md).
#pragma once

#include <boost/json.hpp>

#include "base/status.h"
#include "server/http_server.h"

namespace herald::server {

[[nodiscard]] unsigned http_status_for(Code code);
[[nodiscard]] HttpResponse json_response(unsigned status, const boost::json::value& body);
// `extra` fields are added to the error object (for example "current_revision").
[[nodiscard]] HttpResponse error_response(const Status& status,
                                          const boost::json::object& extra = {});

}  // namespace herald::server
