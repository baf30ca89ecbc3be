// The Herald driver: devices over the client WebSocket (docs/protocol.md) through
// client/herald_client.h, set up through the admin API (client/admin_client.h).
//
// Each device is its own user with one device. A sender pipelines `send` requests (send_raw) and
// matches answers as they come (receive_raw + parse_server_frame), so that the frame that frees a
// slot is handled the moment it arrives; the change events its own stream carries are read and
// dropped. A recipient handles each frame as it arrives too: a `message_new` change is a receipt,
// and is acknowledged with its own `ack` request; at most kAcksInFlight acknowledgements wait for
// their answer, the others queue in the client (one `ack` per message all the same).
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/loadgen/driver.h"
#include "client/admin_client.h"
#include "client/herald_client.h"

namespace herald::bench {
namespace {

namespace json = boost::json;
using client::HeraldClient;

// Unanswered `ack` requests of one recipient, at most; well under the server's 64 per connection.
constexpr int kAcksInFlight = 32;
// Members one conversation.create or members.add may name (messaging/domain.h).
constexpr std::size_t kMembersPerCommand = 64;

// The error code of a failed answer or call: the protocol code, or the client's own.
std::string code_of(const Status& status) {
  const std::string_view code = client::protocol_error_code(status);
  return code.empty() ? "client_" + std::string(code_name(status.code())) : std::string(code);
}

class HeraldDriver final : public Driver {
 public:
  explicit HeraldDriver(Options options) : o_(std::move(options)) {}

  Status prepare() override {
    client::AdminClient admin(o_.admin->host, o_.admin->port, o_.admin_token);
    const int devices = o_.senders() + o_.recipients();
    std::vector<std::string> users;
    users.reserve(static_cast<std::size_t>(devices));
    for (int d = 0; d < devices; ++d) users.push_back(fmt::format("{}-u{}", o_.name_prefix, d));
    std::vector<std::unique_ptr<HeraldClient>> clients;
    for (int d = 0; d < devices; ++d) {
      HERALD_RETURN_IF_ERROR(admin.create_user(users[d]));
      // Device ids are unique across users and never reused.
      const std::string device = users[d] + "-d";
      HERALD_ASSIGN_OR_RETURN(std::string token, admin.create_device(users[d], device));
      // Direct mode: sender i on endpoint i, its recipient on the next one (so, on several
      // nodes, a message crosses nodes); group mode: member d on endpoint d.
      const int recipient_shift = o_.group_mode() || d < o_.senders() ? 0 : 1;
      const Endpoint& e = o_.endpoints[(d + recipient_shift) % o_.endpoints.size()];
      HERALD_ASSIGN_OR_RETURN(std::unique_ptr<HeraldClient> c,
                              HeraldClient::connect(e.host, e.port));
      HERALD_RETURN_IF_ERROR(c->auth(users[d], device, token).status());
      clients.push_back(std::move(c));
    }
    if (o_.group_mode()) {
      HERALD_RETURN_IF_ERROR(create_group(admin, users, *clients[0]));
    } else {
      for (int i = 0; i < o_.pairs; ++i) {
        HERALD_ASSIGN_OR_RETURN(
            client::Conversation c,
            admin.create_conversation({users[i], "direct", {users[o_.pairs + i]}, "", ""}));
        conversations_.push_back(c.conversation_id);
      }
    }
    for (int d = 0; d < devices; ++d) {
      (d < o_.senders() ? senders_ : recipients_).push_back(std::move(clients[d]));
    }
    return Status::ok_status();
  }

  void run_sender(int index, const RunClock& clock, ThreadStats& stats) override {
    HeraldClient& c = *senders_[index];
    const std::string& conversation = conversations_[o_.group_mode() ? 0 : index];
    const std::string id_prefix = fmt::format("{}-s{}-", o_.name_prefix, index);
    int in_flight = 0;
    std::uint64_t seq = 0;
    while (!clock.stopping() || (in_flight > 0 && !clock.drain_over())) {
      while (!clock.stopping() && in_flight < o_.window) {
        const std::string id = id_prefix + std::to_string(seq);
        const json::object fields{{"conversation_id", conversation},
                                  {"client_message_id", id},
                                  {"body", encode_body(index, seq, now_ns(), o_.body_bytes)}};
        if (Status s = c.send_raw(client::encode_request("send", id, fields)); !s.ok()) {
          stats.count_error("connection", code_of(s));
          return;
        }
        ++in_flight;
        ++seq;
      }
      std::optional<client::ServerFrame> frame;
      if (!receive(c, stats, frame)) return;
      if (!frame.has_value() || !frame->is_answer) continue;  // its own stream's changes
      --in_flight;
      if (frame->answer.status.ok()) {
        stats.count_send_ok(clock);
      } else {
        stats.count_error("send", code_of(frame->answer.status));
      }
    }
  }

  void run_recipient(int index, const RunClock& clock, ThreadStats& stats) override {
    HeraldClient& c = *recipients_[index];
    std::deque<std::pair<std::string, std::uint64_t>> to_ack;  // (conversation, seq)
    int acks_in_flight = 0;
    std::uint64_t next_id = 0;
    std::int64_t last_activity = now_ns();
    while (clock.keep_receiving(last_activity) || acks_in_flight > 0 || !to_ack.empty()) {
      if (clock.drain_over()) break;
      while (!to_ack.empty() && acks_in_flight < kAcksInFlight) {
        const auto& [conversation, seq] = to_ack.front();
        const json::object fields{{"conversation_id", conversation}, {"seq", seq}};
        const std::string id = "a" + std::to_string(next_id++);
        if (Status s = c.send_raw(client::encode_request("ack", id, fields)); !s.ok()) {
          stats.count_error("connection", code_of(s));
          return;
        }
        to_ack.pop_front();
        ++acks_in_flight;
      }
      std::optional<client::ServerFrame> frame;
      if (!receive(c, stats, frame)) return;
      if (!frame.has_value()) continue;
      last_activity = now_ns();
      if (frame->is_answer) {
        --acks_in_flight;
        if (frame->answer.status.ok()) {
          ++stats.acks_ok;
        } else {
          stats.count_error("ack", code_of(frame->answer.status));
        }
        continue;
      }
      const auto* change = std::get_if<client::Change>(&*frame->event);
      if (change == nullptr || change->kind != "message_new" || !change->message.has_value()) {
        continue;
      }
      record_receipt(stats, clock, change->message->body);
      to_ack.emplace_back(change->conversation_id, change->seq);
    }
  }

 private:
  // One frame within kPollMs into `frame` (nullopt on a quiet poll). False when the connection
  // failed (counted); a frame that is not the protocol's is counted and skipped.
  static bool receive(HeraldClient& c, ThreadStats& stats,
                      std::optional<client::ServerFrame>& frame) {
    Result<std::string> text = c.receive_raw(kPollMs);
    if (!text.ok()) {
      if (text.status().code() == Code::kTimeout) return true;
      stats.count_error("connection", code_of(text.status()));
      return false;
    }
    Result<client::ServerFrame> parsed = client::parse_server_frame(*text);
    if (!parsed.ok()) {
      stats.count_error("receive", "corrupt_frame");
      return true;
    }
    frame = std::move(*parsed);
    return true;
  }

  // One group of every device, created by member 0: at most kMembersPerCommand members by the
  // admin API, the rest added by the creator's device.
  Status create_group(const client::AdminClient& admin, const std::vector<std::string>& users,
                      HeraldClient& creator) {
    const std::string id = o_.name_prefix + "-group";
    const std::vector<std::string> others(users.begin() + 1, users.end());
    const std::size_t first = std::min(others.size(), kMembersPerCommand);
    HERALD_RETURN_IF_ERROR(
        admin
            .create_conversation(
                {users[0], "group", {others.begin(), others.begin() + first}, id, "bench"})
            .status());
    for (std::size_t at = first; at < others.size(); at += kMembersPerCommand) {
      const std::size_t end = std::min(others.size(), at + kMembersPerCommand);
      HERALD_RETURN_IF_ERROR(creator.members_add(id, {others.begin() + at, others.begin() + end}));
    }
    conversations_.push_back(id);
    return Status::ok_status();
  }

  Options o_;
  std::vector<std::unique_ptr<HeraldClient>> senders_;
  std::vector<std::unique_ptr<HeraldClient>> recipients_;
  std::vector<std::string> conversations_;  // direct: one per pair; group: the one group
};

}  // namespace

std::unique_ptr<Driver> make_herald_driver(const Options& options) {
  return std::make_unique<HeraldDriver>(options);
}

}  // namespace herald::bench
