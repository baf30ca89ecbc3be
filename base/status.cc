#include "base/status.h"

namespace herald {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not_found";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kCorruption: return "corruption";
    case Code::kIOError: return "io_error";
    case Code::kUnavailable: return "unavailable";
    case Code::kCompacted: return "compacted";
    case Code::kTimeout: return "timeout";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kNotLeader: return "not_leader";
    case Code::kFailedPrecondition: return "failed_precondition";
    case Code::kAborted: return "aborted";
    case Code::kAlreadyExists: return "already_exists";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) {
    return "ok";
  }
  std::string out(code_name(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace herald
