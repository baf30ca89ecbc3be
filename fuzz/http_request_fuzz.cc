// Fuzz target: the HTTP server's request decoding (server/http_server.h, base/encoding.h).
//
// Feeds the bytes as they would arrive on a connection to server::parse_http_request (Beast's
// request parser with kMaxRequestBodyBytes and kMaxRequestHeaderBytes, then the handler's view:
// path, percent-decoded query, headers, body), splits the path of a parsed request with
// server::split_path as the API routers do, and feeds the same bytes to split_path and
// percent_decode directly. Asserts: no crash, leak or undefined behaviour; refusals are
// kInvalidArgument or kResourceExhausted; a parsed body is within kMaxRequestBodyBytes; a decoded
// segment holds no more bytes than its escape; percent_decode inverts percent_encode.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/encoding.h"
#include "base/status.h"
#include "server/http_server.h"

namespace {

using herald::Code;
using herald::Result;

void check_split(std::string_view path) {
  const Result<std::vector<std::string>> segments = herald::server::split_path(path);
  if (!segments.ok()) {
    HERALD_ASSERT(segments.status().code() == Code::kInvalidArgument,
                  "split_path refuses with kInvalidArgument");
    return;
  }
  std::size_t decoded_bytes = 0;
  for (const std::string& segment : *segments) {
    HERALD_ASSERT(!segment.empty(), "split_path drops empty segments");
    decoded_bytes += segment.size();
  }
  HERALD_ASSERT(decoded_bytes <= path.size(), "decoding never grows a path");
}

void check_percent(std::string_view text) {
  std::string decoded;
  if (herald::percent_decode(text, decoded)) {
    HERALD_ASSERT(decoded.size() <= text.size(), "decoding never grows a segment");
  }
  std::string round_trip;
  HERALD_ASSERT(herald::percent_decode(herald::percent_encode(text), round_trip),
                "an encoded segment decodes");
  HERALD_ASSERT(round_trip == text, "percent_decode inverts percent_encode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const Result<herald::server::HttpRequest> request = herald::server::parse_http_request(bytes);
  if (request.ok()) {
    HERALD_ASSERT(request->body.size() <= herald::server::kMaxRequestBodyBytes,
                  "a parsed body keeps to the limit");
    check_split(request->path);
    static_cast<void>(request->header("Authorization"));
    static_cast<void>(request->header("Upgrade"));
  } else {
    const Code code = request.status().code();
    HERALD_ASSERT(code == Code::kInvalidArgument || code == Code::kResourceExhausted,
                  "parse_http_request refuses with kInvalidArgument or kResourceExhausted");
  }
  check_split(bytes);
  check_percent(bytes);
  return 0;
}
