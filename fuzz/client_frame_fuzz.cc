// Fuzz target: the C++ client's decoders of what a server sends (client/herald_client.h,
// client/admin_client.h).
//
// Feeds the bytes of one server WebSocket frame to client::parse_server_frame and, for an answer,
// runs the per-call parsers the client applies to answer fields (changes, chats, conversation,
// prefs, scalar fields); feeds the same bytes as an admin API body to parse_user_info and
// parse_timeline. Asserts: no crash, leak or undefined behaviour; every refusal is kCorruption (the
// client's "the server sent a frame that is not the protocol's"); a parsed answer keeps its
// frame's fields and an event is present exactly when the frame is not an answer.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/status.h"
#include "client/admin_client.h"
#include "client/herald_client.h"

namespace {

namespace client = herald::client;
using herald::Code;
using herald::Status;

void check(const Status& status) {
  HERALD_ASSERT(status.ok() || status.code() == Code::kCorruption,
                "a decoder of server bytes refuses with kCorruption only");
}

// What the client's calls read out of an ok answer (client/herald_client.cc).
void read_answer_fields(const boost::json::object& fields) {
  check(client::read_json_array<client::Change>(fields, "changes", client::parse_change, false)
            .status());
  check(client::read_json_array<client::Chat>(fields, "chats", client::parse_chat, false).status());
  if (const boost::json::value* conversation = client::json_field(fields, "conversation")) {
    check(client::parse_conversation(*conversation).status());
  }
  check(client::parse_prefs(boost::json::value(fields)).status());
  std::string text;
  std::uint64_t number = 0;
  std::int64_t signed_number = 0;
  bool flag = false;
  std::vector<std::string> list;
  check(client::read_json_field(fields, "saga_id", text, false));
  check(client::read_json_field(fields, "seq", number, false));
  check(client::read_json_field(fields, "server_time_ms", signed_number, false));
  check(client::read_json_field(fields, "existed", flag, false));
  check(client::read_json_field(fields, "members", list, false));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const herald::Result<client::ServerFrame> frame = client::parse_server_frame(text);
  check(frame.status());
  if (frame.ok()) {
    HERALD_ASSERT(frame->is_answer != frame->event.has_value(), "a frame is an answer or an event");
    if (frame->is_answer) {
      HERALD_ASSERT(frame->fields != nullptr, "an answer keeps its fields");
      static_cast<void>(client::protocol_error_code(frame->answer.status));
      read_answer_fields(*frame->fields);
    }
  }
  check(client::parse_user_info(text).status());
  check(client::parse_timeline(text).status());
  return 0;
}
