#include "client/admin_client.h"

#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "client/tls.h"

namespace herald::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr unsigned kHttpVersion11 = 11;
constexpr unsigned kFirstSuccess = 200;
constexpr unsigned kFirstNonSuccess = 300;
// The step named in the error of a failed TLS handshake (is_tls_failure() looks for it).
constexpr std::string_view kTlsHandshakeStep = "in the TLS handshake";

// Bytes of a non-JSON error body quoted in an error message, at most.
constexpr std::size_t kMaxQuotedBodyBytes = 200;

// ---- One request over its own connection. Every asynchronous step runs the io_context until it
// completes; the tcp_stream's expiry (one deadline for the whole request) completes any step
// that would outlast it with beast::error::timeout. `Stream` is beast::tcp_stream (http://) or
// TlsStream (https://, with the TLS context `tls`, which must outlive the exchange).
template <class Stream>
class Exchange {
 public:
  Exchange(std::uint32_t timeout_ms, ssl::context* tls)
      : timeout_ms_(timeout_ms),
        deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms)),
        stream_(make_stream(io_, tls)) {}

  [[nodiscard]] Result<HttpReply> run(const std::string& host, std::uint16_t port,
                                      const http::request<http::string_body>& request);

 private:
  [[nodiscard]] Result<std::vector<tcp::endpoint>> resolve(const std::string& host,
                                                           std::uint16_t port);
  // Runs the io_context until every started operation has completed.
  void drive() {
    io_.restart();
    io_.run();
  }
  [[nodiscard]] Status failed(std::string_view step, const beast::error_code& ec) const {
    if (ec == beast::error::timeout) {
      return Status::timeout(
          fmt::format("the request took longer than {} ms ({})", timeout_ms_, step));
    }
    if (ec == http::error::body_limit) {
      return Status::resource_exhausted(
          fmt::format("a response body exceeded {} bytes", kMaxAdminResponseBytes));
    }
    return Status::io_error(fmt::format("the request failed while {}: {}", step, ec.message()));
  }

  static Stream make_stream(asio::io_context& io, ssl::context* tls) {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      return Stream(io, *tls);
    } else {
      return Stream(io);
    }
  }
  // TLS only: the client handshake, expecting a certificate for `host`.
  [[nodiscard]] Status tls_handshake(const std::string& host) {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      HERALD_RETURN_IF_ERROR(expect_server_name(stream_.native_handle(), host));
      beast::error_code ec;
      stream_.async_handshake(ssl::stream_base::client,
                              [&](const beast::error_code& e) { ec = e; });
      drive();
      if (ec) return failed(kTlsHandshakeStep, ec);
    }
    return Status::ok_status();
  }

  const std::uint32_t timeout_ms_;
  const std::chrono::steady_clock::time_point deadline_;
  asio::io_context io_;  // first: destroyed last
  Stream stream_;
};

template <class Stream>
Result<std::vector<tcp::endpoint>> Exchange<Stream>::resolve(const std::string& host,
                                                             std::uint16_t port) {
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) return std::vector<tcp::endpoint>{tcp::endpoint(address, port)};
  tcp::resolver resolver(io_);
  std::vector<tcp::endpoint> endpoints;
  resolver.async_resolve(host, std::to_string(port),
                         [&](const beast::error_code& e, const tcp::resolver::results_type& r) {
                           ec = e;
                           for (const auto& entry : r) endpoints.push_back(entry.endpoint());
                         });
  io_.restart();
  io_.run_until(deadline_);
  if (!io_.stopped()) {
    // The system resolver has its own timeouts; cancel and let the handler run.
    resolver.cancel();
    drive();
    return Status::timeout(fmt::format("resolving {} took longer than {} ms", host, timeout_ms_));
  }
  if (ec || endpoints.empty()) {
    return Status::io_error(fmt::format("cannot resolve {}: {}", host, ec.message()));
  }
  return endpoints;
}

template <class Stream>
Result<HttpReply> Exchange<Stream>::run(const std::string& host, std::uint16_t port,
                                        const http::request<http::string_body>& request) {
  HERALD_ASSIGN_OR_RETURN(const std::vector<tcp::endpoint> endpoints, resolve(host, port));
  beast::tcp_stream& tcp_stream = beast::get_lowest_layer(stream_);
  tcp_stream.expires_at(deadline_);
  beast::error_code ec;
  tcp_stream.async_connect(endpoints,
                           [&](const beast::error_code& e, const tcp::endpoint&) { ec = e; });
  drive();
  if (ec) return failed("connecting", ec);
  HERALD_RETURN_IF_ERROR(tls_handshake(host));
  http::async_write(stream_, request, [&](const beast::error_code& e, std::size_t) { ec = e; });
  drive();
  if (ec) return failed("writing", ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAdminResponseBytes);
  http::async_read(stream_, buffer, parser,
                   [&](const beast::error_code& e, std::size_t) { ec = e; });
  drive();
  if (ec) return failed("reading", ec);
  beast::error_code ignored;
  tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  http::response<http::string_body> response = parser.release();
  return HttpReply{response.result_int(), std::move(response.body())};
}

// ---- Reading the admin API's JSON, with the client's readers (client/herald_client.h).

Status missing(std::string_view key) {
  return Status::corruption(fmt::format("the admin answer lacks \"{}\"", key));
}

Result<json::object> parse_object(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Status::corruption("the admin answer is not a JSON object");
  return std::move(v.get_object());
}

Result<DeviceInfo> parse_device(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* device, json_object_of(v, "a device"));
  const json::object& o = *device;
  DeviceInfo d;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "device_id", d.device_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "platform", d.platform, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "push_provider", d.push_provider, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "has_push_token", d.has_push_token, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "created_ms", d.created_ms, false));
  return d;
}

Result<TimelineEvent> parse_event(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* event, json_object_of(v, "a history event"));
  const json::object& o = *event;
  TimelineEvent e;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "seq", e.seq));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "time_ms", e.time_ms));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "kind", e.kind));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "name", e.name, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "error_type", e.error_type, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "error_message", e.error_message, false));
  return e;
}

Result<DeviceDelivery> parse_device_delivery(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* device, json_object_of(v, "a device delivery"));
  const json::object& o = *device;
  DeviceDelivery d;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "device_id", d.device_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "state", d.state));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "delivered_ms", d.delivered_ms, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "read_ms", d.read_ms, false));
  return d;
}

Result<RecipientTimeline> parse_recipient(const json::value& v) {
  HERALD_ASSIGN_OR_RETURN(const json::object* recipient, json_object_of(v, "a recipient"));
  const json::object& o = *recipient;
  RecipientTimeline r;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "user_id", r.user_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "workflow_id", r.workflow_id));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "state", r.state, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "status", r.status, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "escalated", r.escalated, false));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "emailed", r.emailed, false));
  HERALD_ASSIGN_OR_RETURN(
      r.devices, read_json_array<DeviceDelivery>(o, "devices", parse_device_delivery, false));
  HERALD_ASSIGN_OR_RETURN(r.history,
                          read_json_array<TimelineEvent>(o, "history", parse_event, false));
  return r;
}

// The object under `key` of a 2xx body.
Result<json::value> member(std::string_view body, std::string_view key) {
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(body));
  const json::value* v = json_field(o, key);
  if (v == nullptr) return missing(key);
  return *v;
}

http::verb verb_of(std::string_view method) {
  const http::verb verb = http::string_to_verb(method);
  HERALD_ASSERT(verb != http::verb::unknown, "unknown HTTP method");
  return verb;
}

}  // namespace

// ------------------------------------------------------------------ parsers

bool is_tls_failure(const Status& status) {
  // request() returns kInvalidArgument only from setting TLS up (make_client_tls_context,
  // expect_server_name).
  return status.code() == Code::kInvalidArgument ||
         (status.code() == Code::kIOError &&
          status.message().find(kTlsHandshakeStep) != std::string::npos);
}

Status status_of_reply(const HttpReply& reply) {
  HERALD_ASSERT(reply.status < kFirstSuccess || reply.status >= kFirstNonSuccess,
                "a successful reply is no error");
  auto body = parse_object(reply.body);
  if (body.ok()) {
    const json::value* error = json_field(*body, "error");
    if (error != nullptr && error->is_object()) {
      std::string code;
      std::string message;
      if (read_json_field(error->get_object(), "code", code).ok() &&
          read_json_field(error->get_object(), "message", message, false).ok()) {
        return status_of_error(code, message);
      }
    }
  }
  const std::string_view quoted = std::string_view(reply.body).substr(0, kMaxQuotedBodyBytes);
  return Status::io_error(fmt::format("http_{}: {}", reply.status, quoted));
}

Result<UserInfo> parse_user_info(std::string_view body) {
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(body));
  const json::value* user = json_field(o, "user");
  if (user == nullptr || !user->is_object()) return missing("user");
  UserInfo info;
  const json::object& u = user->get_object();
  HERALD_RETURN_IF_ERROR(read_json_field(u, "user_id", info.user_id));
  HERALD_RETURN_IF_ERROR(read_json_field(u, "display_name", info.display_name, false));
  HERALD_RETURN_IF_ERROR(read_json_field(u, "email", info.email, false));
  HERALD_RETURN_IF_ERROR(read_json_field(u, "created_ms", info.created_ms, false));
  HERALD_ASSIGN_OR_RETURN(info.devices, read_json_array<DeviceInfo>(o, "devices", parse_device));
  return info;
}

Result<MessageTimeline> parse_timeline(std::string_view body) {
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(body));
  const json::value* message = json_field(o, "message");
  if (message == nullptr) return missing("message");
  MessageTimeline t;
  HERALD_ASSIGN_OR_RETURN(t.message, parse_message(*message));
  HERALD_ASSIGN_OR_RETURN(t.recipients,
                          read_json_array<RecipientTimeline>(o, "recipients", parse_recipient));
  return t;
}

const RecipientTimeline* MessageTimeline::recipient(std::string_view user_id) const {
  for (const RecipientTimeline& r : recipients) {
    if (r.user_id == user_id) return &r;
  }
  return nullptr;
}

std::string encode_path_segment(std::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (const char c : segment) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

// ------------------------------------------------------------------ the client

AdminClient::AdminClient(std::string host, std::uint16_t port, std::string token,
                         std::uint32_t timeout_ms, std::optional<ClientTls> tls)
    : host_(std::move(host)),
      port_(port),
      token_(std::move(token)),
      timeout_ms_(timeout_ms),
      tls_(std::move(tls)) {
  HERALD_ASSERT(timeout_ms_ > 0, "an admin request timeout must be positive");
}

Result<HttpReply> AdminClient::request(std::string_view method, const std::string& target,
                                       const std::string& body) const {
  http::request<http::string_body> request{verb_of(method), target, kHttpVersion11};
  request.set(http::field::host, fmt::format("{}:{}", host_, port_));
  request.set(http::field::user_agent, "herald-admin-client");
  request.set(http::field::connection, "close");
  if (!token_.empty()) request.set(http::field::authorization, "Bearer " + token_);
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  if (tls_.has_value()) {
    HERALD_ASSIGN_OR_RETURN(const std::unique_ptr<ssl::context> context,
                            make_client_tls_context(*tls_));
    Exchange<TlsStream> exchange(timeout_ms_, context.get());
    return exchange.run(host_, port_, request);
  }
  Exchange<beast::tcp_stream> exchange(timeout_ms_, nullptr);
  return exchange.run(host_, port_, request);
}

Result<std::string> AdminClient::checked(std::string_view method, const std::string& target,
                                         const std::string& body) const {
  HERALD_ASSIGN_OR_RETURN(HttpReply reply, request(method, target, body));
  if (reply.status < kFirstSuccess || reply.status >= kFirstNonSuccess) {
    return status_of_reply(reply);
  }
  return std::move(reply.body);
}

Result<std::string> AdminClient::get(const std::string& target) const {
  return checked("GET", target);
}

Status AdminClient::create_user(const std::string& user_id, const std::string& display_name,
                                const std::string& email) const {
  json::object body{{"user_id", user_id}};
  if (!display_name.empty()) body["display_name"] = display_name;
  if (!email.empty()) body["email"] = email;
  return checked("POST", "/v1/admin/users", json::serialize(body)).status();
}

Result<UserInfo> AdminClient::get_user(const std::string& user_id) const {
  HERALD_ASSIGN_OR_RETURN(std::string body,
                          checked("GET", "/v1/admin/users/" + encode_path_segment(user_id)));
  return parse_user_info(body);
}

Result<std::string> AdminClient::create_device(const std::string& user_id,
                                               const std::string& device_id,
                                               const std::string& platform) const {
  const json::object request{{"device_id", device_id}, {"platform", platform}};
  HERALD_ASSIGN_OR_RETURN(
      std::string body,
      checked("POST", fmt::format("/v1/admin/users/{}/devices", encode_path_segment(user_id)),
              json::serialize(request)));
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(body));
  std::string token;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "token", token));
  return token;
}

Result<std::int64_t> AdminClient::revoke_user(const std::string& user_id) const {
  HERALD_ASSIGN_OR_RETURN(
      std::string body,
      checked("POST", fmt::format("/v1/admin/users/{}/revoke", encode_path_segment(user_id))));
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(body));
  std::int64_t revoked_at_ms = 0;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "revoked_at_ms", revoked_at_ms));
  return revoked_at_ms;
}

Status AdminClient::set_push_token(const std::string& user_id, const std::string& device_id,
                                   const std::string& provider, const std::string& token) const {
  const json::object request{{"provider", provider}, {"token", token}};
  return checked("PUT",
                 fmt::format("/v1/admin/users/{}/devices/{}/push", encode_path_segment(user_id),
                             encode_path_segment(device_id)),
                 json::serialize(request))
      .status();
}

Result<Conversation> AdminClient::create_conversation(const AdminConversation& spec) const {
  json::array members;
  for (const std::string& m : spec.members) members.emplace_back(m);
  json::object request{{"creator", spec.creator}, {"kind", spec.kind}, {"members", members}};
  if (!spec.conversation_id.empty()) request["conversation_id"] = spec.conversation_id;
  if (!spec.title.empty()) request["title"] = spec.title;
  HERALD_ASSIGN_OR_RETURN(std::string body,
                          checked("POST", "/v1/admin/conversations", json::serialize(request)));
  HERALD_ASSIGN_OR_RETURN(json::value conversation, member(body, "conversation"));
  return parse_conversation(conversation);
}

Result<SendResult> AdminClient::system_message(const std::string& conversation_id,
                                               const std::string& body,
                                               const std::string& client_message_id) const {
  const json::object request{{"body", body}, {"client_message_id", client_message_id}};
  HERALD_ASSIGN_OR_RETURN(std::string answer,
                          checked("POST",
                                  fmt::format("/v1/admin/conversations/{}/messages",
                                              encode_path_segment(conversation_id)),
                                  json::serialize(request)));
  HERALD_ASSIGN_OR_RETURN(json::object o, parse_object(answer));
  SendResult sent;
  HERALD_RETURN_IF_ERROR(read_json_field(o, "seq", sent.seq));
  HERALD_RETURN_IF_ERROR(read_json_field(o, "existed", sent.existed));
  return sent;
}

Result<MessageTimeline> AdminClient::timeline(const std::string& conversation_id,
                                              std::uint64_t seq) const {
  HERALD_ASSIGN_OR_RETURN(std::string body,
                          checked("GET", fmt::format("/v1/admin/conversations/{}/messages/{}",
                                                     encode_path_segment(conversation_id), seq)));
  return parse_timeline(body);
}

}  // namespace herald::client
