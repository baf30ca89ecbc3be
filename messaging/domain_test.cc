#include "messaging/domain.h"

#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <set>

#include "messaging/delivery.pb.h"
#include "messaging/keys.h"
#include "messaging/providers.h"
#include "storage/mem_engine.h"
#include "workflow/engine.h"

namespace herald::messaging {
namespace {

using messagingpb::ChangeKind;
using messagingpb::MessagingCommand;

constexpr std::int64_t kT0 = 1'700'000'000'000;  // the test clock's start, ms
constexpr std::int64_t kTickMs = 1000;           // the clock's step per applied command

// Records what the domain asks of the workflow engine. A start writes a marker key under "w" (as
// the engine writes its records) so that a rolled-back command's starts vanish with it; a signal
// to a workflow that was never started is kNotFound, as the engine answers.
class FakeSink final : public WorkflowSink {
 public:
  struct Call {
    std::string workflow_id;
    std::string name;  // the type of a start, the name of a signal
    std::string payload;
  };

  Status start(rsm::ApplyBatch& batch, std::int64_t /*now_ms*/, std::string_view workflow_id,
               std::string_view type, std::string input) override {
    if (workflow_id == fail_start_of) {
      return Status::resource_exhausted("the fake sink refuses this start");
    }
    starts.push_back({std::string(workflow_id), std::string(type), std::move(input)});
    batch.put(storage::Space::kState, marker(workflow_id), "started");
    return Status::ok_status();
  }

  Status signal(rsm::ApplyBatch& batch, std::int64_t /*now_ms*/, std::string_view workflow_id,
                std::string_view name, std::string payload) override {
    auto started = batch.get(storage::Space::kState, marker(workflow_id));
    if (!started.ok()) {
      return started.status();
    }
    if (!started->has_value()) {
      return Status::not_found("no such workflow");
    }
    signals.push_back({std::string(workflow_id), std::string(name), std::move(payload)});
    return Status::ok_status();
  }

  Status cancel(rsm::ApplyBatch& batch, std::int64_t /*now_ms*/, std::string_view workflow_id,
                std::string_view reason) override {
    auto started = batch.get(storage::Space::kState, marker(workflow_id));
    if (!started.ok()) {
      return started.status();
    }
    if (!started->has_value()) {
      return Status::not_found("no such workflow");
    }
    cancels.push_back({std::string(workflow_id), "cancel", std::string(reason)});
    return Status::ok_status();
  }

  static std::string marker(std::string_view workflow_id) {
    return "wfake/" + std::string(workflow_id);
  }

  std::vector<Call> starts;
  std::vector<Call> signals;
  std::vector<Call> cancels;
  std::string fail_start_of;
};

// ---- Command builders ----

MessagingCommand user_cmd(const std::string& user, const std::string& email = {}) {
  MessagingCommand c;
  c.mutable_create_user()->set_user_id(user);
  c.mutable_create_user()->set_display_name("User " + user);
  c.mutable_create_user()->set_email(email);
  return c;
}

MessagingCommand device_cmd(const std::string& user, const std::string& device) {
  MessagingCommand c;
  auto* d = c.mutable_create_device();
  d->set_user_id(user);
  d->set_device_id(device);
  d->set_platform("ios");
  d->set_credential_sha256(std::string(kCredentialBytes, '\x5a'));
  return c;
}

MessagingCommand direct_cmd(const std::string& user, const std::string& peer) {
  MessagingCommand c;
  auto* cc = c.mutable_create_conversation();
  cc->set_user_id(user);
  cc->set_kind(messagingpb::DIRECT);
  cc->add_member_user_ids(peer);
  return c;
}

MessagingCommand group_cmd(const std::string& owner, const std::string& conv,
                           const std::vector<std::string>& members) {
  MessagingCommand c;
  auto* cc = c.mutable_create_conversation();
  cc->set_user_id(owner);
  cc->set_kind(messagingpb::GROUP);
  cc->set_conversation_id(conv);
  cc->set_title("Group " + conv);
  for (const auto& m : members) {
    cc->add_member_user_ids(m);
  }
  return c;
}

MessagingCommand add_cmd(const std::string& actor, const std::string& conv,
                         const std::vector<std::string>& members) {
  MessagingCommand c;
  c.mutable_add_members()->set_user_id(actor);
  c.mutable_add_members()->set_conversation_id(conv);
  for (const auto& m : members) {
    c.mutable_add_members()->add_member_user_ids(m);
  }
  return c;
}

MessagingCommand remove_cmd(const std::string& actor, const std::string& conv,
                            const std::string& member) {
  MessagingCommand c;
  c.mutable_remove_member()->set_user_id(actor);
  c.mutable_remove_member()->set_conversation_id(conv);
  c.mutable_remove_member()->set_member_user_id(member);
  return c;
}

MessagingCommand leave_cmd(const std::string& user, const std::string& conv) {
  MessagingCommand c;
  c.mutable_leave_conversation()->set_user_id(user);
  c.mutable_leave_conversation()->set_conversation_id(conv);
  return c;
}

MessagingCommand role_cmd(const std::string& actor, const std::string& conv,
                          const std::string& member, messagingpb::Role role) {
  MessagingCommand c;
  c.mutable_set_role()->set_user_id(actor);
  c.mutable_set_role()->set_conversation_id(conv);
  c.mutable_set_role()->set_member_user_id(member);
  c.mutable_set_role()->set_role(role);
  return c;
}

MessagingCommand send_cmd(const std::string& conv, const std::string& user,
                          const std::string& device, const std::string& client_id,
                          const std::string& body) {
  MessagingCommand c;
  auto* s = c.mutable_send_message();
  s->set_conversation_id(conv);
  s->set_sender_user_id(user);
  s->set_sender_device_id(device);
  s->set_client_message_id(client_id);
  s->set_body(body);
  return c;
}

MessagingCommand edit_cmd(const std::string& user, const std::string& conv, std::uint64_t seq,
                          const std::string& body) {
  MessagingCommand c;
  c.mutable_edit_message()->set_user_id(user);
  c.mutable_edit_message()->set_conversation_id(conv);
  c.mutable_edit_message()->set_seq(seq);
  c.mutable_edit_message()->set_body(body);
  return c;
}

MessagingCommand delete_cmd(const std::string& user, const std::string& conv, std::uint64_t seq) {
  MessagingCommand c;
  c.mutable_delete_message()->set_user_id(user);
  c.mutable_delete_message()->set_conversation_id(conv);
  c.mutable_delete_message()->set_seq(seq);
  return c;
}

MessagingCommand ack_cmd(const std::string& user, const std::string& device,
                         const std::string& conv, std::uint64_t seq) {
  MessagingCommand c;
  auto* a = c.mutable_ack_delivery();
  a->set_user_id(user);
  a->set_device_id(device);
  a->set_conversation_id(conv);
  a->set_seq(seq);
  return c;
}

MessagingCommand marker_cmd(const std::string& user, const std::string& device,
                            const std::string& conv, std::uint64_t seq) {
  MessagingCommand c;
  auto* m = c.mutable_set_read_marker();
  m->set_user_id(user);
  m->set_device_id(device);
  m->set_conversation_id(conv);
  m->set_seq(seq);
  return c;
}

MessagingCommand restore_cmd(const std::string& user, const std::string& device,
                             const std::string& conv, std::uint64_t previous,
                             std::uint64_t marker) {
  MessagingCommand c;
  auto* r = c.mutable_restore_read_marker();
  r->set_user_id(user);
  r->set_device_id(device);
  r->set_conversation_id(conv);
  r->set_previous(previous);
  r->set_marker(marker);
  return c;
}

MessagingCommand cursor_cmd(const std::string& user, const std::string& conv, std::uint64_t seq) {
  MessagingCommand c;
  c.mutable_advance_read_cursor()->set_user_id(user);
  c.mutable_advance_read_cursor()->set_conversation_id(conv);
  c.mutable_advance_read_cursor()->set_seq(seq);
  return c;
}

MessagingCommand receipts_cmd(const std::string& user, const std::string& conv,
                              std::uint64_t up_to) {
  MessagingCommand c;
  c.mutable_publish_read_receipts()->set_user_id(user);
  c.mutable_publish_read_receipts()->set_conversation_id(conv);
  c.mutable_publish_read_receipts()->set_up_to_seq(up_to);
  return c;
}

std::string phone(const std::string& user) {
  return user + "-phone";
}

template <typename Message>
Message payload_of(const rsmpb::CommandResult& r) {
  Message m;
  EXPECT_TRUE(m.ParseFromString(r.payload()));
  return m;
}

Code code_of(const rsmpb::CommandResult& r) {
  return static_cast<Code>(r.code());
}

class DomainTest : public ::testing::Test {
 protected:
  // Applies one command the way rsm::Node does: a failed command's writes are rolled back.
  rsmpb::CommandResult apply(const MessagingCommand& mc) {
    now_ += kTickMs;
    rsmpb::Command c;
    c.set_wall_ms(now_);
    c.mutable_module()->set_name(kModuleName);
    c.mutable_module()->set_payload(mc.SerializeAsString());
    rsm::ApplyBatch batch(&store_);
    const rsm::ApplyBatch::Savepoint before = batch.savepoint();
    rsmpb::CommandResult result = domain_->apply(++index_, c, batch);
    if (result.code() != 0) {
      batch.rollback(before);
    }
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    if (check_invariants_) {
      check_invariants();
    }
    return result;
  }

  void ok(const MessagingCommand& mc) {
    const auto r = apply(mc);
    ASSERT_EQ(r.code(), 0U) << r.message();
  }

  // A user with one device, "<user>-phone".
  void make_user(const std::string& user) {
    ok(user_cmd(user, user + "@example.com"));
    ok(device_cmd(user, phone(user)));
  }

  std::uint64_t send(const std::string& conv, const std::string& user, const std::string& body) {
    const auto r =
        apply(send_cmd(conv, user, phone(user), "c" + std::to_string(++client_id_), body));
    EXPECT_EQ(r.code(), 0U) << r.message();
    return payload_of<messagingpb::SendResult>(r).seq();
  }

  // Alice, bob and carol, and the group "g" of the three (alice owns it).
  void make_trio() {
    make_user("alice");
    make_user("bob");
    make_user("carol");
    ok(group_cmd("alice", "g", {"bob", "carol"}));
  }

  messagingpb::ConversationRecord conversation(const std::string& id) {
    auto r = Domain::get_conversation(store_, id);
    EXPECT_TRUE(r.ok() && r->has_value()) << id;
    return r.ok() && r->has_value() ? **r : messagingpb::ConversationRecord();
  }

  messagingpb::MessageRecord message(const std::string& conv, std::uint64_t seq) {
    auto r = Domain::get_message(store_, conv, seq);
    EXPECT_TRUE(r.ok() && r->has_value()) << conv << "#" << seq;
    return r.ok() && r->has_value() ? **r : messagingpb::MessageRecord();
  }

  messagingpb::Role role_of(const std::string& conv, const std::string& user) {
    const messagingpb::ConversationRecord record = conversation(conv);
    for (const auto& m : record.members()) {
      if (m.user_id() == user) {
        return m.role();
      }
    }
    return messagingpb::ROLE_UNSPECIFIED;
  }

  std::vector<messagingpb::SyncEntry> changes(const std::string& user, std::uint64_t after = 0) {
    auto page = Domain::sync(store_, user, after, kMaxReadLimit);
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->entries : std::vector<messagingpb::SyncEntry>();
  }

  // The DELIVERY_RECEIPT changes in the user's stream, oldest first.
  std::vector<messagingpb::ChangeRecord> delivery_receipts(const std::string& user) {
    std::vector<messagingpb::ChangeRecord> out;
    for (const auto& entry : changes(user)) {
      if (entry.change().kind() == messagingpb::DELIVERY_RECEIPT) out.push_back(entry.change());
    }
    return out;
  }

  std::vector<ChangeKind> change_kinds(const std::string& user, std::uint64_t after = 0) {
    std::vector<ChangeKind> kinds;
    for (const auto& e : changes(user, after)) {
      kinds.push_back(e.change().kind());
    }
    return kinds;
  }

  std::uint64_t last_change(const std::string& user) {
    auto r = Domain::get_user(store_, user);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? (*r)->last_change_seq() : 0;
  }

  // The delivery workflows started for (conv, seq), by recipient.
  std::map<std::string, messagingpb::DeliveryInput> deliveries(const std::string& conv,
                                                               std::uint64_t seq) {
    std::map<std::string, messagingpb::DeliveryInput> out;
    for (const auto& call : sink_.starts) {
      messagingpb::DeliveryInput input;
      EXPECT_EQ(call.name, kDeliveryType);
      EXPECT_TRUE(input.ParseFromString(call.payload));
      if (input.conversation_id() == conv && input.seq() == seq) {
        EXPECT_EQ(call.workflow_id, delivery_workflow_id(conv, seq, input.recipient_user_id()));
        out[input.recipient_user_id()] = input;
      }
    }
    return out;
  }

  std::vector<std::string> signaled(std::string_view name) {
    std::vector<std::string> ids;
    for (const auto& call : sink_.signals) {
      if (call.name == name) {
        ids.push_back(call.workflow_id);
      }
    }
    return ids;
  }

  std::map<std::string, std::string> dump() {
    std::map<std::string, std::string> out;
    auto it = store_.scan(storage::Space::kState, "", "");
    for (; it->valid(); it->next()) {
      out.emplace(std::string(it->key()), std::string(it->value()));
    }
    return out;
  }

  template <typename Message>
  std::vector<Message> scan_sub(char sub) {
    const std::string prefix{keys::kKeyPrefix, sub};
    std::vector<Message> out;
    auto it = store_.scan(storage::Space::kState, prefix, keys::prefix_end(prefix));
    for (; it->valid(); it->next()) {
      auto m = keys::open<Message>(it->value(), "test");
      EXPECT_TRUE(m.ok());
      out.push_back(m.ok() ? *m : Message());
    }
    return out;
  }

  // The domain's invariants, after every command.
  void check_invariants() {
    check_devices();
    check_message_queue();
    std::size_t memberships = 0;
    for (const auto& conv : scan_sub<messagingpb::ConversationRecord>(keys::kConversationSub)) {
      check_conversation(conv);
      memberships += conv.members_size();
    }
    EXPECT_EQ(scan_sub<messagingpb::MemberState>(keys::kMemberSub).size(), memberships);
    EXPECT_EQ(scan_sub<messagingpb::ChatEntry>(keys::kChatSub).size(), memberships);
    // The stream-trim queue holds one entry per user marked trim_queued, and no other.
    std::multiset<std::string> queued_streams;
    for (const auto& entry : scan_sub<messagingpb::StreamTrim>(keys::kStreamTrimSub)) {
      queued_streams.insert(entry.user_id());
    }
    std::multiset<std::string> marked_streams;
    for (const auto& user : scan_sub<messagingpb::UserRecord>(keys::kUserSub)) {
      if (user.trim_queued()) marked_streams.insert(user.user_id());
    }
    EXPECT_EQ(queued_streams, marked_streams);
    for (const auto& user : scan_sub<messagingpb::UserRecord>(keys::kUserSub)) {
      // Retention trims from the front, never the newest entry.
      const std::uint64_t first = std::max<std::uint64_t>(user.first_change_seq(), 1);
      EXPECT_LE(first, std::max<std::uint64_t>(user.last_change_seq(), 1)) << user.user_id();
      EXPECT_EQ(count_keys(keys::user_prefix(keys::kChangeSub, user.user_id())),
                user.last_change_seq() + 1 - first)
          << "the stream from first_change_seq on, without gaps: " << user.user_id();
      // Sync shows it in order, each message change with its message, but those of expired
      // messages (which it passes over).
      auto all = Domain::sync(store_, user.user_id(), first - 1, kMaxReadLimit);
      ASSERT_TRUE(all.ok());
      EXPECT_FALSE(all->resync_required);
      if (!all->has_more) {
        EXPECT_EQ(all->next_cursor, user.last_change_seq()) << user.user_id();
      }
      std::uint64_t previous = first - 1;
      for (const auto& entry : all->entries) {
        EXPECT_GT(entry.change().change_seq(), previous);
        previous = entry.change().change_seq();
        const ChangeKind kind = entry.change().kind();
        EXPECT_EQ(entry.has_message(), kind == messagingpb::MESSAGE_NEW ||
                                           kind == messagingpb::MESSAGE_EDITED ||
                                           kind == messagingpb::MESSAGE_DELETED);
      }
    }
  }

  // Every tombstone is queued exactly once and every queued device is a tombstone; the marks
  // left are those of active devices and of removed ones the sweep has not passed yet.
  void check_devices() {
    const messagingpb::DeviceQueue queue = device_queue();
    ASSERT_LE(queue.head(), queue.marks_swept());
    ASSERT_LE(queue.marks_swept(), queue.tail());
    std::vector<std::string> live_prefixes;
    std::map<std::string, std::int64_t> queued;  // device -> removed_ms
    for (std::uint64_t n = queue.head(); n < queue.tail(); ++n) {
      auto raw = store_.get(storage::Space::kState, keys::device_expiry_key(n));
      ASSERT_TRUE(raw.ok() && raw->has_value()) << "queue entry " << n;
      auto entry = keys::open<messagingpb::DeviceExpiry>(**raw, "test");
      ASSERT_TRUE(entry.ok());
      EXPECT_TRUE(queued.emplace(entry->device_id(), entry->removed_ms()).second);
      const std::string prefix = keys::device_marks_prefix(entry->user_id(), entry->device_id());
      if (n < queue.marks_swept()) {
        EXPECT_EQ(count_keys(prefix), 0U) << "swept marks of " << entry->device_id();
      } else {
        live_prefixes.push_back(prefix);
      }
    }
    EXPECT_EQ(scan_sub<messagingpb::DeviceExpiry>(keys::kDeviceExpirySub).size(), queued.size());
    for (const auto& device : scan_sub<messagingpb::DeviceRecord>(keys::kDeviceSub)) {
      if (device.removed()) {
        EXPECT_EQ(queued[device.device_id()], device.removed_ms()) << device.device_id();
        queued.erase(device.device_id());
      } else {
        live_prefixes.push_back(keys::device_marks_prefix(device.user_id(), device.device_id()));
      }
    }
    EXPECT_TRUE(queued.empty()) << "a queued device that is no tombstone";
    for (const auto& entry : dump()) {
      const std::string& key = entry.first;
      if (key.size() < 2 || key[0] != keys::kKeyPrefix || key[1] != keys::kMarksSub) continue;
      EXPECT_TRUE(std::any_of(live_prefixes.begin(), live_prefixes.end(),
                              [&key](const std::string& p) { return key.starts_with(p); }))
          << "marks of a device that is gone";
    }
  }

  messagingpb::DeviceQueue device_queue() {
    auto raw = store_.get(storage::Space::kState, keys::device_queue_key());
    EXPECT_TRUE(raw.ok());
    if (!raw.ok() || !raw->has_value()) return {};
    auto queue = keys::open<messagingpb::DeviceQueue>(**raw, "test");
    EXPECT_TRUE(queue.ok());
    return queue.ok() ? *queue : messagingpb::DeviceQueue();
  }

  std::size_t count_keys(const std::string& prefix) {
    std::size_t n = 0;
    auto it = store_.scan(storage::Space::kState, prefix, keys::prefix_end(prefix));
    for (; it->valid(); it->next()) ++n;
    EXPECT_TRUE(it->status().ok());
    return n;
  }

  std::size_t marks_of(const std::string& user, const std::string& device) {
    return count_keys(keys::device_marks_prefix(user, device));
  }

  // The device's record, tombstone or not, as stored.
  std::optional<messagingpb::DeviceRecord> device_record(const std::string& device) {
    auto raw = store_.get(storage::Space::kState, keys::device_key(device));
    EXPECT_TRUE(raw.ok());
    if (!raw.ok() || !raw->has_value()) return std::nullopt;
    auto record = keys::open<messagingpb::DeviceRecord>(**raw, "test");
    EXPECT_TRUE(record.ok());
    return record.ok() ? std::optional(*record) : std::nullopt;
  }

  void check_conversation(const messagingpb::ConversationRecord& conv) {
    ASSERT_LE(conv.members_size(), static_cast<int>(kMaxGroupMembers));
    std::set<std::string> seen;
    int owners = 0;
    for (const auto& m : conv.members()) {
      EXPECT_TRUE(seen.insert(m.user_id()).second) << "a member twice";
      owners += m.role() == messagingpb::OWNER ? 1 : 0;
      auto state =
          store_.get(storage::Space::kState, keys::member_key(m.user_id(), conv.conversation_id()));
      ASSERT_TRUE(state.ok() && state->has_value()) << m.user_id();
      auto s = keys::open<messagingpb::MemberState>(**state, "member");
      ASSERT_TRUE(s.ok());
      EXPECT_LE(s->read_cursor(), conv.last_seq());
      EXPECT_LE(s->receipted_up_to(), s->read_cursor());
      // The user's delivered mark is within the conversation and never behind any of its
      // devices' marks.
      EXPECT_LE(s->delivered_up_to(), conv.last_seq());
      auto device_marks = Domain::device_marks(store_, m.user_id(), conv.conversation_id());
      ASSERT_TRUE(device_marks.ok());
      for (const auto& view : *device_marks) {
        EXPECT_LE(view.delivered_up_to, s->delivered_up_to()) << view.device_id;
      }
      auto entry = store_.get(storage::Space::kState,
                              keys::chat_key(m.user_id(), s->index_ms(), conv.conversation_id()));
      EXPECT_TRUE(entry.ok() && entry->has_value()) << "chat entry of " << m.user_id();
    }
    if (conv.kind() == messagingpb::DIRECT) {
      EXPECT_EQ(conv.members_size(), 2);
      EXPECT_EQ(owners, 0);
    } else {
      EXPECT_EQ(owners, conv.members().empty() ? 0 : 1) << conv.conversation_id();
    }
    // Expired messages are a prefix of the seqs; every later one is stored.
    ASSERT_LE(conv.expired_up_to(), conv.last_seq());
    for (std::uint64_t seq = 1; seq <= conv.last_seq() + 1; ++seq) {
      auto m = store_.get(storage::Space::kState, keys::message_key(conv.conversation_id(), seq));
      ASSERT_TRUE(m.ok());
      EXPECT_EQ(m->has_value(), seq > conv.expired_up_to() && seq <= conv.last_seq())
          << "message " << seq;
    }
  }

  // Every stored message is queued exactly once, in send order, with its time.
  void check_message_queue() {
    const messagingpb::MessageQueue queue = message_queue();
    ASSERT_LE(queue.head(), queue.tail());
    std::int64_t previous_ms = 0;
    std::set<std::pair<std::string, std::uint64_t>> queued;
    for (std::uint64_t n = queue.head(); n < queue.tail(); ++n) {
      auto raw = store_.get(storage::Space::kState, keys::message_expiry_key(n));
      ASSERT_TRUE(raw.ok() && raw->has_value()) << "queue entry " << n;
      auto entry = keys::open<messagingpb::MessageExpiry>(**raw, "test");
      ASSERT_TRUE(entry.ok());
      EXPECT_GE(entry->wall_ms(), previous_ms);
      previous_ms = entry->wall_ms();
      EXPECT_TRUE(queued.emplace(entry->conversation_id(), entry->seq()).second);
      EXPECT_EQ(message(entry->conversation_id(), entry->seq()).wall_ms(), entry->wall_ms());
    }
    EXPECT_EQ(scan_sub<messagingpb::MessageExpiry>(keys::kMessageExpirySub).size(), queued.size());
    EXPECT_EQ(stored_messages(), queued.size());
  }

  messagingpb::MessageQueue message_queue() {
    auto raw = store_.get(storage::Space::kState, keys::message_queue_key());
    EXPECT_TRUE(raw.ok());
    if (!raw.ok() || !raw->has_value()) return {};
    auto queue = keys::open<messagingpb::MessageQueue>(**raw, "test");
    EXPECT_TRUE(queue.ok());
    return queue.ok() ? *queue : messagingpb::MessageQueue();
  }

  std::size_t stored_messages() {
    return count_keys(std::string{keys::kKeyPrefix, keys::kMessageSub});
  }

  bool stored(const std::string& conv, std::uint64_t seq) {
    auto r = Domain::get_message(store_, conv, seq);
    EXPECT_TRUE(r.ok());
    return r.ok() && r->has_value();
  }

  storage::MemEngine store_;
  FakeSink sink_;
  Domain first_domain_{&sink_};
  Domain* domain_ = &first_domain_;  // the replica's domain object; a test may restart it
  raft::Index index_ = 0;
  std::int64_t now_ = kT0;
  int client_id_ = 0;
  bool check_invariants_ = true;
};

// ---------------------------------------------------------------- messages

TEST_F(DomainTest, SendAssignsStrictlyIncreasingSeqsWithoutGaps) {
  make_trio();
  for (std::uint64_t expected = 1; expected <= 5; ++expected) {
    EXPECT_EQ(send("g", expected % 2 == 0 ? "bob" : "alice", "hi"), expected);
  }
  EXPECT_EQ(conversation("g").last_seq(), 5U);
  EXPECT_EQ(message("g", 3).sender_user_id(), "alice");
  EXPECT_EQ(message("g", 4).sender_device_id(), "bob-phone");
  EXPECT_EQ(message("g", 4).kind(), messagingpb::USER_MESSAGE);
}

TEST_F(DomainTest, ResendReturnsTheOriginalSeqAndStartsNoSecondWorkflow) {
  make_trio();
  const auto first = apply(send_cmd("g", "alice", "alice-phone", "m-1", "hello"));
  ASSERT_EQ(first.code(), 0U);
  EXPECT_FALSE(first.existed());
  send("g", "bob", "in between");
  const std::size_t starts = sink_.starts.size();
  const std::uint64_t changes_before = last_change("carol");

  const auto again = apply(send_cmd("g", "alice", "alice-phone", "m-1", "hello"));
  ASSERT_EQ(again.code(), 0U);
  EXPECT_TRUE(again.existed());
  EXPECT_EQ(payload_of<messagingpb::SendResult>(again).seq(), 1U);
  EXPECT_EQ(sink_.starts.size(), starts);
  EXPECT_EQ(last_change("carol"), changes_before);
  EXPECT_EQ(conversation("g").last_seq(), 2U);
}

TEST_F(DomainTest, ARetransmissionAfterLeavingStillGetsItsSeq) {
  make_trio();
  ok(send_cmd("g", "carol", "carol-phone", "bye-1", "bye"));
  ok(leave_cmd("carol", "g"));
  const auto again = apply(send_cmd("g", "carol", "carol-phone", "bye-1", "bye"));
  ASSERT_EQ(again.code(), 0U) << again.message();
  EXPECT_TRUE(again.existed());
  EXPECT_EQ(payload_of<messagingpb::SendResult>(again).seq(), 1U);
  EXPECT_EQ(code_of(apply(send_cmd("g", "carol", "carol-phone", "bye-2", "bye"))),
            Code::kFailedPrecondition);
}

TEST_F(DomainTest, BodiesOutsideTheirBoundsAreRefused) {
  make_trio();
  const std::string huge(kMaxMessageBodyBytes + 1, 'x');
  EXPECT_EQ(code_of(apply(send_cmd("g", "alice", "alice-phone", "m-1", huge))),
            Code::kResourceExhausted);
  EXPECT_EQ(code_of(apply(send_cmd("g", "alice", "alice-phone", "m-2", ""))),
            Code::kInvalidArgument);
  EXPECT_EQ(send("g", "alice", std::string(kMaxMessageBodyBytes, 'x')), 1U);
  EXPECT_EQ(code_of(apply(edit_cmd("alice", "g", 1, huge))), Code::kResourceExhausted);
}

TEST_F(DomainTest, NonMemberCannotSend) {
  make_trio();
  make_user("mallory");
  const auto r = apply(send_cmd("g", "mallory", "mallory-phone", "m-1", "let me in"));
  EXPECT_EQ(code_of(r), Code::kFailedPrecondition);
  EXPECT_NE(r.message().find("permission denied"), std::string::npos) << r.message();
  EXPECT_EQ(conversation("g").last_seq(), 0U);
}

TEST_F(DomainTest, SendFromAnotherUsersDeviceIsRefused) {
  make_trio();
  EXPECT_EQ(code_of(apply(send_cmd("g", "alice", "bob-phone", "m-1", "hi"))),
            Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(send_cmd("g", "alice", "nobody-phone", "m-1", "hi"))), Code::kNotFound);
  EXPECT_EQ(code_of(apply(send_cmd("g", "alice", "alice-phone", "", "hi"))),
            Code::kInvalidArgument);
}

TEST_F(DomainTest, OnlyTheSenderEditsOrDeletesAMessage) {
  make_trio();
  send("g", "alice", "original");
  EXPECT_EQ(code_of(apply(edit_cmd("bob", "g", 1, "forged"))), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(delete_cmd("bob", "g", 1))), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(edit_cmd("", "g", 1, "admin edit"))), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(edit_cmd("alice", "g", 9, "nothing there"))), Code::kNotFound);
  ok(edit_cmd("alice", "g", 1, "edited"));
  const auto m = message("g", 1);
  EXPECT_EQ(m.body(), "edited");
  EXPECT_TRUE(m.edited());
  EXPECT_EQ(m.edited_ms(), now_);
}

TEST_F(DomainTest, SystemMessagesComeFromTheAdminApiAndReachEveryMember) {
  make_trio();
  const auto r = apply(send_cmd("g", "", "", "", "carol joined"));
  ASSERT_EQ(r.code(), 0U) << r.message();
  EXPECT_EQ(message("g", 1).kind(), messagingpb::SYSTEM_MESSAGE);
  EXPECT_EQ(deliveries("g", 1).size(), 3U);
  EXPECT_EQ(code_of(apply(edit_cmd("alice", "g", 1, "mine now"))), Code::kFailedPrecondition);
  ok(edit_cmd("", "g", 1, "carol joined the group"));
  ok(delete_cmd("", "g", 1));
  EXPECT_EQ(code_of(apply(send_cmd("g", "", "alice-phone", "", "half system"))),
            Code::kInvalidArgument);
}

TEST_F(DomainTest, DeletedMessageKeepsItsSeqAndLosesItsBody) {
  make_trio();
  send("g", "alice", "one");
  send("g", "alice", "two");
  ok(delete_cmd("alice", "g", 1));
  const auto m = message("g", 1);
  EXPECT_TRUE(m.deleted());
  EXPECT_TRUE(m.body().empty());
  EXPECT_EQ(m.seq(), 1U);
  EXPECT_EQ(send("g", "bob", "three"), 3U);
  ok(delete_cmd("alice", "g", 1));  // twice is ok
  EXPECT_EQ(code_of(apply(edit_cmd("alice", "g", 1, "revived"))), Code::kFailedPrecondition);
}

TEST_F(DomainTest, DeletingAMessageCancelsItsPendingDeliveries) {
  make_trio();
  send("g", "alice", "oops");
  ok(delete_cmd("alice", "g", 1));
  std::set<std::string> canceled;
  for (const auto& call : sink_.cancels) {
    EXPECT_EQ(call.payload, kMessageDeletedReason);
    canceled.insert(call.workflow_id);
  }
  // Every recipient's delivery, not the sender's (she has none).
  EXPECT_EQ(canceled, (std::set<std::string>{delivery_workflow_id("g", 1, "bob"),
                                             delivery_workflow_id("g", 1, "carol")}));
  // Deleting again finds nothing left to cancel and is no error.
  const std::size_t before = sink_.cancels.size();
  ok(delete_cmd("alice", "g", 1));
  EXPECT_EQ(sink_.cancels.size(), before);
}

// ---------------------------------------------------------------- sync and the chat index

TEST_F(DomainTest, SyncAfterACursorSeesEditsAndDeletesWithCurrentContent) {
  make_trio();
  send("g", "alice", "first");
  send("g", "alice", "second");
  const std::uint64_t cursor = last_change("bob");
  ok(edit_cmd("alice", "g", 1, "first, edited"));
  ok(delete_cmd("alice", "g", 2));

  const auto entries = changes("bob", cursor);
  ASSERT_EQ(entries.size(), 2U);
  EXPECT_EQ(entries[0].change().kind(), messagingpb::MESSAGE_EDITED);
  EXPECT_EQ(entries[0].change().change_seq(), cursor + 1);
  EXPECT_EQ(entries[0].message().body(), "first, edited");
  EXPECT_EQ(entries[1].change().kind(), messagingpb::MESSAGE_DELETED);
  EXPECT_TRUE(entries[1].message().deleted());
  // The older MESSAGE_NEW entry is joined with the message as it is now.
  const auto all = changes("bob");
  const auto new_first = std::find_if(all.begin(), all.end(), [](const auto& e) {
    return e.change().kind() == messagingpb::MESSAGE_NEW && e.change().seq() == 1;
  });
  ASSERT_NE(new_first, all.end());
  EXPECT_EQ(new_first->message().body(), "first, edited");
}

TEST_F(DomainTest, SyncPagesAfterItsCursor) {
  make_trio();
  for (int i = 0; i < 5; ++i) {
    send("g", "alice", "m");
  }
  const std::uint64_t total = last_change("bob");  // created + 5 messages
  ASSERT_EQ(total, 6U);
  auto page = Domain::sync(store_, "bob", 0, 4);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries.size(), 4U);
  EXPECT_TRUE(page->has_more);
  EXPECT_EQ(page->next_cursor, 4U);
  page = Domain::sync(store_, "bob", page->next_cursor, 4);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries.size(), 2U);
  EXPECT_FALSE(page->has_more);
  EXPECT_EQ(page->next_cursor, total);
  page = Domain::sync(store_, "bob", total, 4);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->entries.empty());
  EXPECT_EQ(page->next_cursor, total);
}

TEST_F(DomainTest, ChatIndexOrdersByRecentActivityWithUnreadCounts) {
  make_trio();
  ok(direct_cmd("alice", "bob"));
  const std::string direct = direct_conversation_id("alice", "bob");
  send("g", "carol", "group 1");
  send("g", "carol", "group 2");
  send(direct, "bob", "direct 1");
  send("g", "alice", "group 3");  // alice's own message: her cursor moves to 3

  auto alice = Domain::chat_index(store_, "alice", 10, "");
  ASSERT_TRUE(alice.ok());
  ASSERT_EQ(alice->entries.size(), 2U);
  EXPECT_EQ(alice->entries[0].entry.conversation_id(), "g");
  EXPECT_EQ(alice->entries[0].unread, 0U);
  EXPECT_EQ(alice->entries[0].entry.preview(), "group 3");
  EXPECT_EQ(alice->entries[0].title, "Group g");
  EXPECT_EQ(alice->entries[1].entry.conversation_id(), direct);
  EXPECT_EQ(alice->entries[1].unread, 1U);
  EXPECT_EQ(alice->entries[1].kind, messagingpb::DIRECT);

  auto bob = Domain::chat_index(store_, "bob", 10, "");
  ASSERT_TRUE(bob.ok());
  ASSERT_EQ(bob->entries.size(), 2U);
  EXPECT_EQ(bob->entries[0].entry.conversation_id(), "g");
  EXPECT_EQ(bob->entries[0].unread, 3U);
  EXPECT_EQ(bob->entries[1].unread, 0U);  // bob sent the direct message

  ok(cursor_cmd("bob", "g", 2));
  bob = Domain::chat_index(store_, "bob", 10, "");
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->entries[0].unread, 1U);
}

TEST_F(DomainTest, ChatIndexPagesWithItsToken) {
  make_user("alice");
  for (int i = 0; i < 5; ++i) {
    ok(group_cmd("alice", "g" + std::to_string(i), {}));
  }
  send("g2", "alice", "bump");
  auto page = Domain::chat_index(store_, "alice", 3, "");
  ASSERT_TRUE(page.ok());
  std::vector<std::string> order;
  for (const auto& s : page->entries) {
    order.push_back(s.entry.conversation_id());
  }
  ASSERT_FALSE(page->next_page_token.empty());
  page = Domain::chat_index(store_, "alice", 3, page->next_page_token);
  ASSERT_TRUE(page.ok());
  for (const auto& s : page->entries) {
    order.push_back(s.entry.conversation_id());
  }
  EXPECT_TRUE(page->next_page_token.empty());
  EXPECT_EQ(order, (std::vector<std::string>{"g2", "g4", "g3", "g1", "g0"}));
  EXPECT_EQ(Domain::chat_index(store_, "bob", 3, "6d78").status().code(), Code::kInvalidArgument);
}

TEST_F(DomainTest, PreviewIsCutAtAUtf8Boundary) {
  // 119 ASCII bytes, then a 3-byte character that would end past the bound.
  const std::string body = std::string(kMaxPreviewBytes - 1, 'a') + "\xE2\x82\xAC" + "tail";
  EXPECT_EQ(preview_of(body), std::string(kMaxPreviewBytes - 1, 'a'));
  EXPECT_EQ(preview_of("short"), "short");
  make_trio();
  send("g", "alice", body);
  EXPECT_EQ(deliveries("g", 1).at("bob").preview(), std::string(kMaxPreviewBytes - 1, 'a'));
}

TEST_F(DomainTest, EditingTheLastMessageRefreshesThePreview) {
  make_trio();
  send("g", "alice", "tpyo");
  ok(edit_cmd("alice", "g", 1, "typo"));
  auto page = Domain::chat_index(store_, "carol", 10, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries.at(0).entry.preview(), "typo");
  ok(delete_cmd("alice", "g", 1));
  page = Domain::chat_index(store_, "carol", 10, "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->entries.at(0).entry.preview(), "");
}

// ---------------------------------------------------------------- conversations and roles

TEST_F(DomainTest, DirectConversationIsCreatedOnce) {
  make_user("alice");
  make_user("bob");
  const auto first = apply(direct_cmd("bob", "alice"));
  ASSERT_EQ(first.code(), 0U) << first.message();
  EXPECT_FALSE(first.existed());
  const auto conv = payload_of<messagingpb::ConversationRecord>(first);
  EXPECT_EQ(conv.conversation_id(), "direct:alice:bob");
  const auto again = apply(direct_cmd("alice", "bob"));
  ASSERT_EQ(again.code(), 0U);
  EXPECT_TRUE(again.existed());
  EXPECT_EQ(payload_of<messagingpb::ConversationRecord>(again).conversation_id(),
            "direct:alice:bob");
  EXPECT_EQ(change_kinds("alice"), std::vector<ChangeKind>{messagingpb::CONVERSATION_CREATED});
  EXPECT_EQ(code_of(apply(direct_cmd("alice", "alice"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(direct_cmd("alice", "nobody"))), Code::kNotFound);
  EXPECT_EQ(code_of(apply(leave_cmd("alice", "direct:alice:bob"))), Code::kFailedPrecondition);
}

TEST_F(DomainTest, GroupIdsAreUniqueAndNeverLookDirect) {
  make_trio();
  EXPECT_EQ(code_of(apply(group_cmd("bob", "g", {}))), Code::kAlreadyExists);
  EXPECT_EQ(code_of(apply(group_cmd("bob", "direct:bob:carol", {}))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(group_cmd("bob", "h", {"ghost"}))), Code::kNotFound);
  EXPECT_EQ(code_of(apply(group_cmd("bob", "a/b", {}))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(group_cmd("bob", std::string(kMaxConversationIdBytes + 1, 'h'), {}))),
            Code::kInvalidArgument);
  ok(group_cmd("bob", "team:blue", {}));
}

TEST_F(DomainTest, AdminCannotRemoveTheOwner) {
  make_trio();
  ok(role_cmd("alice", "g", "bob", messagingpb::ADMIN));
  EXPECT_EQ(code_of(apply(remove_cmd("bob", "g", "alice"))), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(remove_cmd("carol", "g", "bob"))), Code::kFailedPrecondition);
  ok(remove_cmd("bob", "g", "carol"));
  EXPECT_EQ(conversation("g").members_size(), 2);
  EXPECT_EQ(change_kinds("carol").back(), messagingpb::MEMBER_REMOVED);
  EXPECT_EQ(code_of(apply(send_cmd("g", "carol", "carol-phone", "x", "still here?"))),
            Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(remove_cmd("bob", "g", "carol"))), Code::kNotFound);
}

TEST_F(DomainTest, OnlyTheOwnerSetsRolesAndHandingOverDemotesToAdmin) {
  make_trio();
  ok(role_cmd("alice", "g", "bob", messagingpb::ADMIN));
  EXPECT_EQ(code_of(apply(role_cmd("bob", "g", "carol", messagingpb::ADMIN))),
            Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(role_cmd("alice", "g", "alice", messagingpb::MEMBER))),
            Code::kFailedPrecondition);
  ok(role_cmd("alice", "g", "carol", messagingpb::OWNER));
  EXPECT_EQ(role_of("g", "carol"), messagingpb::OWNER);
  EXPECT_EQ(role_of("g", "alice"), messagingpb::ADMIN);
  const auto entries = changes("bob");
  ASSERT_GE(entries.size(), 2U);
  EXPECT_EQ(entries.back().change().kind(), messagingpb::ROLE_CHANGED);
  EXPECT_EQ(entries.back().change().user_ids(0), "alice");
  EXPECT_EQ(entries.back().change().role(), messagingpb::ADMIN);
}

TEST_F(DomainTest, OwnerLeavingPromotesTheLongestStandingAdminElseMember) {
  make_trio();
  make_user("dave");
  ok(add_cmd("alice", "g", {"dave"}));
  ok(role_cmd("alice", "g", "dave", messagingpb::ADMIN));
  ok(leave_cmd("alice", "g"));
  EXPECT_EQ(role_of("g", "dave"), messagingpb::OWNER);  // the only admin beats older members
  ok(leave_cmd("dave", "g"));
  EXPECT_EQ(role_of("g", "bob"), messagingpb::OWNER);  // no admin: the longest-standing member
  EXPECT_EQ(change_kinds("carol").back(), messagingpb::ROLE_CHANGED);
  EXPECT_EQ(code_of(apply(leave_cmd("alice", "g"))), Code::kFailedPrecondition);
  ok(leave_cmd("carol", "g"));
  ok(leave_cmd("bob", "g"));
  EXPECT_TRUE(conversation("g").members().empty());
}

TEST_F(DomainTest, AddingMembersIsForManagersAndBounded) {
  make_trio();
  make_user("dave");
  EXPECT_EQ(code_of(apply(add_cmd("bob", "g", {"dave"}))), Code::kFailedPrecondition);
  const auto r = apply(add_cmd("alice", "g", {"dave", "bob", "dave"}));
  ASSERT_EQ(r.code(), 0U) << r.message();
  EXPECT_EQ(payload_of<messagingpb::ConversationRecord>(r).members_size(), 4);
  const auto added = changes("carol").back().change();
  EXPECT_EQ(added.kind(), messagingpb::MEMBERS_ADDED);
  EXPECT_EQ(added.user_ids_size(), 1);
  EXPECT_EQ(change_kinds("dave"), std::vector<ChangeKind>{messagingpb::MEMBERS_ADDED});

  std::vector<std::string> too_many(kMaxMembersPerCommand + 1, "dave");
  EXPECT_EQ(code_of(apply(add_cmd("alice", "g", too_many))), Code::kInvalidArgument);
}

TEST_F(DomainTest, GroupMembershipStopsAtItsBound) {
  check_invariants_ = false;  // 512 users: checked once at the end
  make_user("owner");
  ok(group_cmd("owner", "big", {}));
  std::vector<std::string> batch;
  for (std::size_t i = 1; i <= kMaxGroupMembers; ++i) {
    const std::string user = "u" + std::to_string(i);
    ok(user_cmd(user));
    batch.push_back(user);
    if (batch.size() == kMaxMembersPerCommand) {
      const auto r = apply(add_cmd("owner", "big", batch));
      if (i < kMaxGroupMembers) {
        ASSERT_EQ(r.code(), 0U) << r.message();
      } else {
        EXPECT_EQ(code_of(r), Code::kResourceExhausted);
      }
      batch.clear();
    }
  }
  EXPECT_EQ(conversation("big").members_size(), static_cast<int>(kMaxGroupMembers) - 63);
  check_invariants();
}

TEST_F(DomainTest, RenamingIsForManagersOfGroups) {
  make_trio();
  MessagingCommand rename;
  rename.mutable_rename_conversation()->set_user_id("bob");
  rename.mutable_rename_conversation()->set_conversation_id("g");
  rename.mutable_rename_conversation()->set_title("Bob's");
  EXPECT_EQ(code_of(apply(rename)), Code::kFailedPrecondition);
  rename.mutable_rename_conversation()->set_user_id("alice");
  ok(rename);
  EXPECT_EQ(conversation("g").title(), "Bob's");
  const auto last = changes("carol").back().change();
  EXPECT_EQ(last.kind(), messagingpb::CONVERSATION_RENAMED);
  EXPECT_EQ(last.title(), "Bob's");
}

// ---------------------------------------------------------------- delivery

TEST_F(DomainTest, SendStartsOneDeliveryWorkflowPerRecipient) {
  make_trio();
  ok(device_cmd("bob", "bob-laptop"));
  send("g", "alice", "hello");
  const auto started = deliveries("g", 1);
  ASSERT_EQ(started.size(), 2U);
  const auto& bob = started.at("bob");
  EXPECT_EQ(bob.sender_user_id(), "alice");
  EXPECT_EQ(bob.sender_device_id(), "alice-phone");
  EXPECT_EQ(std::vector<std::string>(bob.device_ids().begin(), bob.device_ids().end()),
            (std::vector<std::string>{"bob-phone", "bob-laptop"}));
  EXPECT_EQ(bob.preview(), "hello");
  EXPECT_EQ(bob.push_after_ms(), kPushAfterMs);
  EXPECT_EQ(bob.escalate_after_ms(), kDefaultEmailDelayMs);
  EXPECT_EQ(bob.close_after_ms(), kDefaultDeliveryLifetimeMs);
  EXPECT_TRUE(bob.push_enabled());
  EXPECT_FALSE(bob.email_fallback());
}

TEST_F(DomainTest, DeliveryLifetimeFollowsTheRetentionSetting) {
  make_trio();
  MessagingCommand c;
  c.mutable_set_retention()->mutable_settings()->set_delivery_lifetime_ms(kMinRetentionMs);
  ok(c);
  send("g", "alice", "short");
  // Shorter than the escalation delay: the workflow waits for its escalation (delivery.h).
  EXPECT_EQ(deliveries("g", 1).at("bob").close_after_ms(), kMinRetentionMs);
  c.mutable_set_retention()->mutable_settings()->set_delivery_lifetime_ms(2 * kDefaultEmailDelayMs);
  ok(c);
  send("g", "alice", "long");
  EXPECT_EQ(deliveries("g", 2).at("bob").close_after_ms(), 2 * kDefaultEmailDelayMs);
  c.mutable_set_retention()->mutable_settings()->set_delivery_lifetime_ms(kMaxRetentionMs + 1);
  EXPECT_EQ(code_of(apply(c)), Code::kInvalidArgument);
  auto settings = Domain::retention(store_);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->delivery_lifetime_ms(), 2 * kDefaultEmailDelayMs);
}

TEST_F(DomainTest, TheLongestDeliveryWorkflowIdFitsTheWorkflowEngine) {
  const std::string user_a(kMaxIdBytes, 'a');
  const std::string user_b(kMaxIdBytes, 'b');
  const std::string conv = direct_conversation_id(user_a, user_b);
  EXPECT_EQ(conv.size(), kMaxConversationIdBytes);
  const std::string id =
      delivery_workflow_id(conv, std::numeric_limits<std::uint64_t>::max(), user_b);
  EXPECT_LE(id.size(), workflow::kMaxWorkflowIdBytes) << id;
}

TEST_F(DomainTest, PreferencesShapeTheDeliveryInput) {
  make_trio();
  MessagingCommand user_prefs;
  auto* p = user_prefs.mutable_set_preferences();
  p->set_user_id("bob");
  p->set_email_fallback(true);
  p->set_email_delay_ms(60'000);
  ok(user_prefs);
  MessagingCommand conv_prefs;
  auto* q = conv_prefs.mutable_set_preferences();
  q->set_user_id("carol");
  q->set_conversation_id("g");
  q->set_push_enabled(false);
  q->set_email_delay_ms(120'000);
  ok(conv_prefs);
  send("g", "alice", "hi");
  const auto started = deliveries("g", 1);
  EXPECT_TRUE(started.at("bob").email_fallback());
  EXPECT_TRUE(started.at("bob").push_enabled());
  EXPECT_EQ(started.at("bob").escalate_after_ms(), 60'000);
  EXPECT_FALSE(started.at("carol").push_enabled());
  EXPECT_EQ(started.at("carol").escalate_after_ms(), 120'000);
  auto prefs = Domain::preferences(store_, "carol", "g");
  ASSERT_TRUE(prefs.ok());
  EXPECT_FALSE(prefs->push_enabled);
  EXPECT_EQ(change_kinds("bob").back(), messagingpb::MESSAGE_NEW);
  EXPECT_EQ(changes("bob").at(1).change().kind(), messagingpb::PREFERENCES_CHANGED);

  p->set_email_delay_ms(0);
  EXPECT_EQ(code_of(apply(user_prefs)), Code::kInvalidArgument);
  p->clear_email_delay_ms();
  p->set_muted(true);
  EXPECT_EQ(code_of(apply(user_prefs)), Code::kInvalidArgument);
}

TEST_F(DomainTest, HiddenPreviewsReplaceTheTextInPushesAndEmailsOfThatUserOnly) {
  make_trio();
  MessagingCommand hide;
  hide.mutable_set_preferences()->set_user_id("bob");
  hide.mutable_set_preferences()->set_hide_previews(true);
  ok(hide);
  auto prefs = Domain::preferences(store_, "bob", "");
  ASSERT_TRUE(prefs.ok());
  EXPECT_TRUE(prefs->hide_previews);
  send("g", "alice", "the launch code is 1234");
  const auto started = deliveries("g", 1);
  EXPECT_EQ(started.at("bob").preview(), kHiddenPreviewText);
  EXPECT_EQ(started.at("carol").preview(), "the launch code is 1234");
  // The chat index keeps the words: it is the user's own view, not a notification.
  EXPECT_EQ(changes("bob").back().change().kind(), messagingpb::MESSAGE_NEW);

  // A conversation cannot override it; turning it off brings the text back.
  MessagingCommand per_conversation = hide;
  per_conversation.mutable_set_preferences()->set_conversation_id("g");
  EXPECT_EQ(code_of(apply(per_conversation)), Code::kInvalidArgument);
  hide.mutable_set_preferences()->set_hide_previews(false);
  ok(hide);
  send("g", "alice", "never mind");
  EXPECT_EQ(deliveries("g", 2).at("bob").preview(), "never mind");
}

TEST_F(DomainTest, MutingDisablesPushAndEmail) {
  make_trio();
  MessagingCommand prefs;
  prefs.mutable_set_preferences()->set_user_id("bob");
  prefs.mutable_set_preferences()->set_email_fallback(true);
  ok(prefs);
  MessagingCommand mute;
  mute.mutable_set_preferences()->set_user_id("bob");
  mute.mutable_set_preferences()->set_conversation_id("g");
  mute.mutable_set_preferences()->set_muted(true);
  mute.mutable_set_preferences()->set_push_enabled(true);
  ok(mute);
  send("g", "alice", "psst");
  const auto bob = deliveries("g", 1).at("bob");
  EXPECT_FALSE(bob.push_enabled());
  EXPECT_FALSE(bob.email_fallback());
  EXPECT_EQ(bob.escalate_after_ms(), kDefaultEmailDelayMs);  // always set
  EXPECT_TRUE(deliveries("g", 1).at("carol").push_enabled());

  MessagingCommand unmute;
  unmute.mutable_set_preferences()->set_user_id("bob");
  unmute.mutable_set_preferences()->set_conversation_id("g");
  unmute.mutable_set_preferences()->set_muted(false);
  unmute.mutable_set_preferences()->set_clear_overrides(true);
  ok(unmute);
  send("g", "alice", "louder");
  EXPECT_TRUE(deliveries("g", 2).at("bob").push_enabled());
  EXPECT_TRUE(deliveries("g", 2).at("bob").email_fallback());
}

TEST_F(DomainTest, AckDeliveryIsMonotonicAndSignalsTheNewlyCoveredMessages) {
  make_trio();
  send("g", "alice", "1");
  send("g", "bob", "2");  // bob's own: no workflow for bob, no signal
  send("g", "carol", "3");
  const auto r = apply(ack_cmd("bob", "bob-phone", "g", 3));
  ASSERT_EQ(r.code(), 0U) << r.message();
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), 3U);
  EXPECT_EQ(signaled(kDeliveredSignal),
            (std::vector<std::string>{delivery_workflow_id("g", 1, "bob"),
                                      delivery_workflow_id("g", 3, "bob")}));
  messagingpb::DeviceSignal payload;
  ASSERT_TRUE(payload.ParseFromString(sink_.signals.front().payload));
  EXPECT_EQ(payload.device_id(), "bob-phone");
  EXPECT_EQ(payload.time_ms(), now_);

  const auto lower = apply(ack_cmd("bob", "bob-phone", "g", 2));
  ASSERT_EQ(lower.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(lower).mark(), 3U);
  EXPECT_EQ(sink_.signals.size(), 2U);
  EXPECT_EQ(code_of(apply(ack_cmd("bob", "bob-phone", "g", 4))), Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(ack_cmd("bob", "alice-phone", "g", 1))), Code::kFailedPrecondition);
  auto marks = Domain::device_marks(store_, "bob", "g");
  ASSERT_TRUE(marks.ok());
  ASSERT_EQ(marks->size(), 1U);
  EXPECT_EQ(marks->front().delivered_up_to, 3U);
}

TEST_F(DomainTest, AckDeliveryIsBoundedPerCommand) {
  check_invariants_ = false;
  make_trio();
  const std::uint64_t total = kMaxSignalsPerCommand + 10;
  for (std::uint64_t i = 0; i < total; ++i) {
    send("g", "alice", "m");
  }
  auto r = apply(ack_cmd("bob", "bob-phone", "g", total));
  ASSERT_EQ(r.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), kMaxSignalsPerCommand);
  EXPECT_EQ(sink_.signals.size(), kMaxSignalsPerCommand);
  r = apply(ack_cmd("bob", "bob-phone", "g", total));
  ASSERT_EQ(r.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), total);
  EXPECT_EQ(sink_.signals.size(), total);
  check_invariants();
}

TEST_F(DomainTest, AckDeliveryTellsTheSenderOnceWhenTheUsersFirstDeviceAcknowledges) {
  make_user("alice");
  make_user("bob");
  ok(device_cmd("bob", "bob-laptop"));
  ok(direct_cmd("alice", "bob"));
  const std::string conv = "direct:alice:bob";
  send(conv, "alice", "1");
  send(conv, "alice", "2");
  ok(ack_cmd("bob", "bob-phone", conv, 1));
  auto receipts = delivery_receipts("alice");
  ASSERT_EQ(receipts.size(), 1U);
  EXPECT_EQ(receipts[0].conversation_id(), conv);
  EXPECT_EQ(receipts[0].actor_user_id(), "bob");
  EXPECT_EQ(receipts[0].seq(), 1U);
  EXPECT_TRUE(delivery_receipts("bob").empty()) << "the acknowledging user hears nothing";

  ok(ack_cmd("bob", "bob-phone", conv, 1));   // retransmitted
  ok(ack_cmd("bob", "bob-laptop", conv, 1));  // another device, behind the user's mark
  EXPECT_EQ(delivery_receipts("alice").size(), 1U);
  ok(ack_cmd("bob", "bob-laptop", conv, 2));  // the laptop is the first to reach #2
  receipts = delivery_receipts("alice");
  ASSERT_EQ(receipts.size(), 2U);
  EXPECT_EQ(receipts[1].seq(), 2U);
  ok(ack_cmd("bob", "bob-phone", conv, 2));
  EXPECT_EQ(delivery_receipts("alice").size(), 2U);
  auto marks = Domain::device_marks(store_, "bob", conv);
  ASSERT_TRUE(marks.ok());
  EXPECT_EQ(marks->size(), 2U);
}

TEST_F(DomainTest, AckDeliveryReceiptsGoOnlyToTheSendersOfTheNewlyCoveredMessages) {
  make_trio();
  make_user("dave");
  ok(add_cmd("alice", "g", {"dave"}));
  send("g", "alice", "1");
  send("g", "carol", "2");
  send("g", "alice", "3");
  ok(ack_cmd("bob", "bob-phone", "g", 3));
  for (const std::string sender : {"alice", "carol"}) {
    const auto receipts = delivery_receipts(sender);
    ASSERT_EQ(receipts.size(), 1U) << sender << ": one per ack, however many of its messages";
    EXPECT_EQ(receipts[0].seq(), 3U);
    EXPECT_EQ(receipts[0].actor_user_id(), "bob");
  }
  EXPECT_TRUE(delivery_receipts("dave").empty()) << "a member who sent nothing";
  send("g", "alice", "4");
  ok(ack_cmd("bob", "bob-phone", "g", 4));
  EXPECT_EQ(delivery_receipts("alice").size(), 2U);
  EXPECT_EQ(delivery_receipts("carol").size(), 1U) << "#4 is not carol's";
}

TEST_F(DomainTest, AckDeliveryOfTheUsersOwnMessagesAppendsNoReceipt) {
  make_trio();
  send("g", "bob", "mine");
  send("g", "bob", "mine too");
  ok(ack_cmd("bob", "bob-phone", "g", 2));
  for (const std::string user : {"alice", "bob", "carol"}) {
    EXPECT_TRUE(delivery_receipts(user).empty()) << user;
  }
  EXPECT_TRUE(signaled(kDeliveredSignal).empty());
}

TEST_F(DomainTest, AckDeliveryBeforeAJoinAppendsNoReceiptForEarlierMessages) {
  make_trio();
  send("g", "alice", "before dave");
  make_user("dave");
  ok(add_cmd("alice", "g", {"dave"}));
  ok(ack_cmd("dave", "dave-phone", "g", 1));
  EXPECT_TRUE(delivery_receipts("alice").empty());
  send("g", "alice", "after");
  ok(ack_cmd("dave", "dave-phone", "g", 2));
  const auto receipts = delivery_receipts("alice");
  ASSERT_EQ(receipts.size(), 1U);
  EXPECT_EQ(receipts[0].seq(), 2U);
}

TEST_F(DomainTest, AckDeliveryStopsShortOfTheSenderBeyondTheReceiptBound) {
  check_invariants_ = false;  // many users: checked at the end
  make_user("reader");
  std::vector<std::string> senders;
  for (std::size_t i = 0; i < kMaxDeliveryReceiptsPerAck + 2; ++i) {
    senders.push_back("s" + std::to_string(i));
    make_user(senders.back());
  }
  std::vector<std::string> members = senders;
  members.push_back("reader");
  ok(group_cmd(senders[0], "big", std::vector<std::string>(members.begin() + 1, members.end())));
  for (const std::string& sender : senders) {
    send("big", sender, "hi");
    send("big", sender, "again");  // a sender's second message costs no more receipts
  }
  const std::uint64_t total = 2 * senders.size();
  auto r = apply(ack_cmd("reader", "reader-phone", "big", total));
  ASSERT_EQ(r.code(), 0U) << r.message();
  const std::uint64_t first = 2 * kMaxDeliveryReceiptsPerAck;
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), first);
  std::size_t told = 0;
  for (const std::string& sender : senders) told += delivery_receipts(sender).size();
  EXPECT_EQ(told, kMaxDeliveryReceiptsPerAck);
  r = apply(ack_cmd("reader", "reader-phone", "big", total));  // the caller repeats
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), total);
  for (const std::string& sender : senders) {
    const auto receipts = delivery_receipts(sender);
    ASSERT_EQ(receipts.size(), 1U) << sender;
    EXPECT_GE(receipts[0].seq(), 2 * (std::stoull(sender.substr(1)) + 1));
  }
  EXPECT_EQ(signaled(kDeliveredSignal).size(), total);
  check_invariants();
}

// ---------------------------------------------------------------- read state

TEST_F(DomainTest, SetReadMarkerReturnsThePreviousAndRestoreIsIdempotent) {
  make_trio();
  for (int i = 0; i < 4; ++i) {
    send("g", "alice", "m");
  }
  auto r = apply(marker_cmd("bob", "bob-phone", "g", 2));
  ASSERT_EQ(r.code(), 0U);
  auto set = payload_of<messagingpb::ReadMarkerResult>(r);
  EXPECT_EQ(set.previous(), 0U);
  EXPECT_EQ(set.marker(), 2U);
  r = apply(marker_cmd("bob", "bob-phone", "g", 4));
  set = payload_of<messagingpb::ReadMarkerResult>(r);
  EXPECT_EQ(set.previous(), 2U);
  EXPECT_EQ(set.marker(), 4U);

  ok(restore_cmd("bob", "bob-phone", "g", set.previous(), set.marker()));
  EXPECT_EQ(Domain::device_marks(store_, "bob", "g")->front().read_marker, 2U);
  ok(restore_cmd("bob", "bob-phone", "g", set.previous(), set.marker()));  // again: no effect
  EXPECT_EQ(Domain::device_marks(store_, "bob", "g")->front().read_marker, 2U);
  // A restore whose step was overtaken by a later marker leaves it alone.
  ok(marker_cmd("bob", "bob-phone", "g", 3));
  ok(restore_cmd("bob", "bob-phone", "g", 0, 2));
  EXPECT_EQ(Domain::device_marks(store_, "bob", "g")->front().read_marker, 3U);

  // Beyond the last message: recorded as reported (the cursor step refuses it; this is undone).
  r = apply(marker_cmd("bob", "bob-phone", "g", 5));
  ASSERT_EQ(r.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::ReadMarkerResult>(r).marker(), 5U);
  make_user("mallory");
  EXPECT_EQ(code_of(apply(marker_cmd("mallory", "mallory-phone", "g", 1))),
            Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(restore_cmd("bob", "bob-phone", "g", 3, 2))), Code::kInvalidArgument);
}

TEST_F(DomainTest, SetReadMarkerRunAgainWithItsKeyAnswersItsFirstResult) {
  make_trio();
  for (int i = 0; i < 4; ++i) {
    send("g", "alice", "m");
  }
  ok(marker_cmd("bob", "bob-phone", "g", 1));
  MessagingCommand step = marker_cmd("bob", "bob-phone", "g", 3);
  step.mutable_set_read_marker()->set_idempotency_key("saga-1/step-0");
  auto first = payload_of<messagingpb::ReadMarkerResult>(apply(step));
  EXPECT_EQ(first.previous(), 1U);
  EXPECT_EQ(first.marker(), 3U);
  // The same step after a failover: its first answer, so its compensation restores 1, not 3.
  auto again = payload_of<messagingpb::ReadMarkerResult>(apply(step));
  EXPECT_EQ(again.previous(), 1U);
  EXPECT_EQ(again.marker(), 3U);
  ok(restore_cmd("bob", "bob-phone", "g", again.previous(), again.marker()));
  EXPECT_EQ(Domain::device_marks(store_, "bob", "g")->front().read_marker, 1U);
  // The remembered answers are bounded: the oldest key is forgotten first.
  for (std::size_t i = 0; i <= kMaxRecentMarkAnswers; ++i) {
    MessagingCommand other = marker_cmd("bob", "bob-phone", "g", 2);
    other.mutable_set_read_marker()->set_idempotency_key("other-" + std::to_string(i));
    ok(other);
  }
  EXPECT_EQ(payload_of<messagingpb::ReadMarkerResult>(apply(step)).previous(), 2U);
}

TEST_F(DomainTest, AdvanceReadCursorIsMonotonic) {
  make_trio();
  for (int i = 0; i < 3; ++i) {
    send("g", "alice", "m");
  }
  MessagingCommand advance = cursor_cmd("bob", "g", 2);
  advance.mutable_advance_read_cursor()->set_device_id("bob-phone");
  auto r = apply(advance);
  ASSERT_EQ(r.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), 2U);
  const auto last = changes("bob").back().change();
  EXPECT_EQ(last.kind(), messagingpb::READ_CURSOR);
  EXPECT_EQ(last.seq(), 2U);
  EXPECT_EQ(last.device_id(), "bob-phone");
  const std::uint64_t before = last_change("bob");

  r = apply(cursor_cmd("bob", "g", 1));
  ASSERT_EQ(r.code(), 0U);
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(r).mark(), 2U);
  EXPECT_EQ(last_change("bob"), before);
  EXPECT_EQ(*Domain::read_cursor(store_, "bob", "g"), 2U);
}

TEST_F(DomainTest, AdvanceReadCursorBeyondTheLastMessageIsRefused) {
  make_trio();
  send("g", "alice", "m");
  EXPECT_EQ(code_of(apply(cursor_cmd("bob", "g", 2))), Code::kFailedPrecondition);
  EXPECT_EQ(*Domain::read_cursor(store_, "bob", "g"), 0U);
}

TEST_F(DomainTest, AdvanceReadCursorOfANonMemberIsRefused) {
  make_trio();
  send("g", "alice", "m");
  ok(leave_cmd("carol", "g"));
  const auto r = apply(cursor_cmd("carol", "g", 1));
  EXPECT_EQ(code_of(r), Code::kFailedPrecondition);
  EXPECT_NE(r.message().find("permission denied"), std::string::npos);
  EXPECT_EQ(Domain::read_cursor(store_, "carol", "g").status().code(), Code::kNotFound);
}

TEST_F(DomainTest, PublishReadReceiptsSignalsReadAndTellsEachSender) {
  make_trio();
  send("g", "alice", "1");
  send("g", "carol", "2");
  send("g", "bob", "3");  // bob's own
  send("g", "alice", "4");
  ok(cursor_cmd("bob", "g", 4));
  const auto r = apply(receipts_cmd("bob", "g", 4));
  ASSERT_EQ(r.code(), 0U) << r.message();
  const auto result = payload_of<messagingpb::ReceiptResult>(r);
  EXPECT_EQ(result.receipted_up_to(), 4U);
  EXPECT_TRUE(result.complete());
  EXPECT_EQ(signaled(kReadSignal), (std::vector<std::string>{delivery_workflow_id("g", 1, "bob"),
                                                             delivery_workflow_id("g", 2, "bob"),
                                                             delivery_workflow_id("g", 4, "bob")}));
  for (const std::string sender : {"alice", "carol"}) {
    const auto receipt = changes(sender).back().change();
    EXPECT_EQ(receipt.kind(), messagingpb::READ_RECEIPT) << sender;
    EXPECT_EQ(receipt.actor_user_id(), "bob");
    EXPECT_EQ(receipt.seq(), 4U);
  }
  EXPECT_NE(change_kinds("bob").back(), messagingpb::READ_RECEIPT);
}

TEST_F(DomainTest, PublishReadReceiptsStopsAtTheReadCursorAndContinuesInBoundedSteps) {
  check_invariants_ = false;
  make_trio();
  const std::uint64_t total = kMaxSignalsPerCommand + 4;
  for (std::uint64_t i = 0; i < total; ++i) {
    send("g", "alice", "m");
  }
  ok(cursor_cmd("bob", "g", total - 1));
  auto r = apply(receipts_cmd("bob", "g", total));
  auto result = payload_of<messagingpb::ReceiptResult>(r);
  EXPECT_EQ(result.receipted_up_to(), kMaxSignalsPerCommand);
  EXPECT_FALSE(result.complete());
  EXPECT_EQ(changes("alice").back().change().seq(), kMaxSignalsPerCommand);
  r = apply(receipts_cmd("bob", "g", total));
  result = payload_of<messagingpb::ReceiptResult>(r);
  EXPECT_EQ(result.receipted_up_to(), total - 1);  // never past the read cursor
  EXPECT_TRUE(result.complete());
  EXPECT_EQ(signaled(kReadSignal).size(), total - 1);
  r = apply(receipts_cmd("bob", "g", total));
  EXPECT_TRUE(payload_of<messagingpb::ReceiptResult>(r).complete());
  EXPECT_EQ(signaled(kReadSignal).size(), total - 1);
  check_invariants();
}

// ---------------------------------------------------------------- users and devices

TEST_F(DomainTest, DevicesAreOwnedBoundedAndNeverReused) {
  make_user("alice");
  make_user("bob");
  EXPECT_EQ(code_of(apply(user_cmd("alice"))), Code::kAlreadyExists);
  EXPECT_EQ(code_of(apply(device_cmd("alice", "alice-phone"))), Code::kAlreadyExists);
  EXPECT_EQ(code_of(apply(device_cmd("nobody", "n-phone"))), Code::kNotFound);
  MessagingCommand bad = device_cmd("alice", "alice-watch");
  bad.mutable_create_device()->set_credential_sha256("short");
  EXPECT_EQ(code_of(apply(bad)), Code::kInvalidArgument);

  MessagingCommand token;
  auto* t = token.mutable_set_push_token();
  t->set_user_id("bob");
  t->set_device_id("alice-phone");
  t->set_push_provider("apns");
  t->set_push_token("abc123");
  EXPECT_EQ(code_of(apply(token)), Code::kFailedPrecondition);
  t->set_user_id("alice");
  ok(token);
  auto device = Domain::get_device(store_, "alice-phone");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->push_token(), "abc123");
  EXPECT_EQ((*device)->credential_sha256().size(), kCredentialBytes);

  MessagingCommand remove;
  remove.mutable_remove_device()->set_user_id("alice");
  remove.mutable_remove_device()->set_device_id("alice-phone");
  ok(remove);
  device = Domain::get_device(store_, "alice-phone");
  ASSERT_TRUE(device.ok());
  EXPECT_FALSE(device->has_value());
  EXPECT_TRUE((*Domain::get_user(store_, "alice"))->device_ids().empty());
  EXPECT_EQ(code_of(apply(device_cmd("alice", "alice-phone"))), Code::kAlreadyExists);

  for (std::size_t i = 0; i < kMaxDevicesPerUser; ++i) {
    ok(device_cmd("alice", "alice-" + std::to_string(i)));
  }
  EXPECT_EQ(code_of(apply(device_cmd("alice", "alice-extra"))), Code::kResourceExhausted);
}

TEST_F(DomainTest, RemovingADeviceTellsTheUsersStream) {
  make_user("alice");
  ok(device_cmd("alice", "alice-laptop"));
  MessagingCommand remove;
  remove.mutable_remove_device()->set_user_id("alice");
  remove.mutable_remove_device()->set_device_id("alice-laptop");
  ok(remove);
  const auto last = changes("alice").back().change();
  EXPECT_EQ(last.kind(), messagingpb::DEVICE_REMOVED);
  EXPECT_EQ(last.device_id(), "alice-laptop");
}

MessagingCommand revoke_cmd(const std::string& user) {
  MessagingCommand c;
  c.mutable_revoke_user()->set_user_id(user);
  return c;
}

TEST_F(DomainTest, RevokingAUserClearsEveryDeviceSecretAndStampsTheUser) {
  make_user("alice");
  ok(device_cmd("alice", "alice-laptop"));
  make_user("bob");
  const auto r = apply(revoke_cmd("alice"));
  ASSERT_EQ(r.code(), 0U) << r.message();
  const std::int64_t stamp = payload_of<messagingpb::RevokeResult>(r).revoked_at_ms();
  EXPECT_GT(stamp, kT0);
  const auto user = Domain::get_user(store_, "alice");
  ASSERT_TRUE(user.ok() && user->has_value());
  EXPECT_EQ((*user)->revoked_at_ms(), stamp);
  // The devices stay, without a secret that any token could match.
  EXPECT_EQ((*user)->device_ids_size(), 2);
  for (const std::string id : {"alice-phone", "alice-laptop"}) {
    const auto device = Domain::get_device(store_, id);
    ASSERT_TRUE(device.ok() && device->has_value()) << id;
    EXPECT_TRUE((*device)->credential_sha256().empty()) << id;
    EXPECT_FALSE((*device)->removed()) << id;
  }
  // Another user is untouched.
  EXPECT_EQ((*Domain::get_device(store_, "bob-phone"))->credential_sha256().size(),
            kCredentialBytes);
  EXPECT_EQ((*Domain::get_user(store_, "bob"))->revoked_at_ms(), 0);
}

TEST_F(DomainTest, RevokingAUserTellsTheUsersStream) {
  make_user("alice");
  const std::uint64_t before = (*Domain::get_user(store_, "alice"))->last_change_seq();
  ok(revoke_cmd("alice"));
  const auto last = changes("alice").back().change();
  EXPECT_EQ(last.kind(), messagingpb::USER_REVOKED);
  EXPECT_GT(last.change_seq(), before);
}

TEST_F(DomainTest, ASecondRevocationMovesTheStampForward) {
  make_user("alice");
  const auto first = payload_of<messagingpb::RevokeResult>(apply(revoke_cmd("alice")));
  const auto second = payload_of<messagingpb::RevokeResult>(apply(revoke_cmd("alice")));
  EXPECT_GT(second.revoked_at_ms(), first.revoked_at_ms());
}

TEST_F(DomainTest, RevokingAnUnknownUserIsNotFound) {
  EXPECT_EQ(code_of(apply(revoke_cmd("nobody"))), Code::kNotFound);
  EXPECT_EQ(code_of(apply(revoke_cmd(""))), Code::kInvalidArgument);
}

TEST_F(DomainTest, ADeviceCreatedAfterARevocationKeepsItsSecret) {
  make_user("alice");
  ok(revoke_cmd("alice"));
  ok(device_cmd("alice", "alice-tablet"));
  EXPECT_EQ((*Domain::get_device(store_, "alice-tablet"))->credential_sha256().size(),
            kCredentialBytes);
}

MessagingCommand push_token_cmd(const std::string& user, const std::string& device,
                                const std::string& token) {
  MessagingCommand c;
  auto* t = c.mutable_set_push_token();
  t->set_user_id(user);
  t->set_device_id(device);
  t->set_push_provider(token.empty() ? "" : "apns");
  t->set_push_token(token);
  return c;
}

MessagingCommand invalidate_cmd(const std::string& user, const std::string& device,
                                const std::string& token) {
  MessagingCommand c;
  auto* op = c.mutable_invalidate_push_target();
  op->set_user_id(user);
  op->set_device_id(device);
  op->set_push_provider("apns");
  op->set_push_token(token);
  op->set_error_type("push.unregistered");
  op->set_reason("APNs answered 410 Unregistered");
  return c;
}

TEST_F(DomainTest, AWebPushSubscriptionHasItsOwnTokenBound) {
  make_user("alice");
  ok(device_cmd("alice", "alice-laptop"));
  const auto set = [&](const char* provider, std::size_t bytes) {
    MessagingCommand c;
    auto* t = c.mutable_set_push_token();
    t->set_user_id("alice");
    t->set_device_id("alice-laptop");
    t->set_push_provider(provider);
    t->set_push_token(std::string(bytes, 'x'));
    return apply(c);
  };
  // A subscription (endpoint and keys) is longer than the bound of APNs and FCM tokens.
  ASSERT_GT(kMaxWebPushTokenBytes, kMaxPushTokenBytes);
  EXPECT_EQ(code_of(set(kApnsProvider, kMaxPushTokenBytes + 1)), Code::kResourceExhausted);
  EXPECT_EQ(code_of(set(kWebPushProvider, kMaxWebPushTokenBytes)), Code::kOk);
  auto device = Domain::get_device(store_, "alice-laptop");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->push_provider(), kWebPushProvider);
  EXPECT_EQ((*device)->push_token().size(), kMaxWebPushTokenBytes);
  EXPECT_EQ(code_of(set(kWebPushProvider, kMaxWebPushTokenBytes + 1)), Code::kResourceExhausted);
  EXPECT_EQ(code_of(set("webpushx", 10)), Code::kInvalidArgument);
}

TEST_F(DomainTest, APermanentTokenErrorMarksThePushTargetInvalidAndTellsTheUsersStream) {
  make_user("alice");
  ok(device_cmd("alice", "alice-ipad"));
  ok(push_token_cmd("alice", "alice-ipad", "tok-1"));
  const std::size_t before = changes("alice").size();
  ok(invalidate_cmd("alice", "alice-ipad", "tok-1"));
  auto device = Domain::get_device(store_, "alice-ipad");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_TRUE((*device)->push_target_invalid());
  EXPECT_EQ((*device)->push_invalid_error_type(), "push.unregistered");
  EXPECT_EQ((*device)->push_invalid_reason(), "APNs answered 410 Unregistered");
  EXPECT_EQ((*device)->push_invalid_ms(), now_);
  EXPECT_EQ((*device)->push_token(), "tok-1");  // kept: the mark says what was refused
  const auto all = changes("alice");
  ASSERT_EQ(all.size(), before + 1);
  EXPECT_EQ(all.back().change().kind(), messagingpb::PUSH_TARGET_INVALID);
  EXPECT_EQ(all.back().change().device_id(), "alice-ipad");
  EXPECT_EQ(all.back().change().title(), "push.unregistered");
  // A re-run after a failover changes nothing more.
  ok(invalidate_cmd("alice", "alice-ipad", "tok-1"));
  EXPECT_EQ(changes("alice").size(), before + 1);
}

TEST_F(DomainTest, RegisteringATokenClearsTheInvalidMark) {
  make_user("alice");
  ok(device_cmd("alice", "alice-ipad"));
  ok(push_token_cmd("alice", "alice-ipad", "tok-1"));
  ok(invalidate_cmd("alice", "alice-ipad", "tok-1"));
  ok(push_token_cmd("alice", "alice-ipad", "tok-2"));
  auto device = Domain::get_device(store_, "alice-ipad");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_FALSE((*device)->push_target_invalid());
  EXPECT_TRUE((*device)->push_invalid_reason().empty());
  EXPECT_EQ((*device)->push_token(), "tok-2");
}

TEST_F(DomainTest, AnInvalidationOfAnOlderTokenChangesNothing) {
  make_user("alice");
  ok(device_cmd("alice", "alice-ipad"));
  ok(push_token_cmd("alice", "alice-ipad", "tok-2"));
  const std::size_t before = changes("alice").size();
  ok(invalidate_cmd("alice", "alice-ipad", "tok-1"));  // refused before tok-2 was registered
  auto device = Domain::get_device(store_, "alice-ipad");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_FALSE((*device)->push_target_invalid());
  EXPECT_EQ(changes("alice").size(), before);
}

TEST_F(DomainTest, AnInvalidationForAnotherUsersOrAnUnknownDeviceIsRefused) {
  make_user("alice");
  make_user("bob");
  ok(device_cmd("alice", "alice-ipad"));
  ok(push_token_cmd("alice", "alice-ipad", "tok-1"));
  EXPECT_EQ(code_of(apply(invalidate_cmd("bob", "alice-ipad", "tok-1"))),
            Code::kFailedPrecondition);
  EXPECT_EQ(code_of(apply(invalidate_cmd("alice", "nope", "tok-1"))), Code::kNotFound);
  MessagingCommand long_reason = invalidate_cmd("alice", "alice-ipad", "tok-1");
  long_reason.mutable_invalidate_push_target()->set_reason(
      std::string(kMaxPushInvalidReasonBytes + 1, 'x'));
  EXPECT_EQ(code_of(apply(long_reason)), Code::kResourceExhausted);
}

TEST_F(DomainTest, CommandsOfARemovedOrForeignDeviceChangeNothing) {
  make_trio();
  const std::uint64_t seq = send("g", "alice", "first");
  MessagingCommand edit = edit_cmd("alice", "g", seq, "edited by a device");
  edit.set_acting_user_id("alice");
  edit.set_acting_device_id("bob-phone");  // not alice's
  EXPECT_EQ(code_of(apply(edit)), Code::kFailedPrecondition);
  edit.set_acting_device_id("alice-ghost");  // never existed
  EXPECT_EQ(code_of(apply(edit)), Code::kNotFound);
  edit.set_acting_device_id("");  // half of the pair
  EXPECT_EQ(code_of(apply(edit)), Code::kInvalidArgument);
  edit.set_acting_device_id("alice-phone");
  ok(edit);

  MessagingCommand remove;
  remove.mutable_remove_device()->set_user_id("alice");
  remove.mutable_remove_device()->set_device_id("alice-phone");
  ok(remove);
  // A command the removed device had in flight, applied after the removal, changes nothing.
  MessagingCommand late = edit_cmd("alice", "g", seq, "too late");
  late.set_acting_user_id("alice");
  late.set_acting_device_id("alice-phone");
  EXPECT_EQ(code_of(apply(late)), Code::kNotFound);
  EXPECT_EQ(message("g", seq).body(), "edited by a device");
  // Operator commands carry no acting device and still apply.
  ok(edit_cmd("alice", "g", seq, "by the operator"));
}

MessagingCommand retention_cmd(std::int64_t dedup_window_ms, std::int64_t change_retention_ms) {
  MessagingCommand c;
  c.mutable_set_retention()->mutable_settings()->set_dedup_window_ms(dedup_window_ms);
  c.mutable_set_retention()->mutable_settings()->set_change_retention_ms(change_retention_ms);
  return c;
}

TEST_F(DomainTest, RetentionWindowsHaveDefaultsAndBounds) {
  auto settings = Domain::retention(store_);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->dedup_window_ms(), kDefaultDedupWindowMs);
  EXPECT_EQ(settings->change_retention_ms(), kDefaultChangeRetentionMs);
  EXPECT_EQ(code_of(apply(retention_cmd(kMinRetentionMs - 1, 0))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(retention_cmd(0, kMaxRetentionMs + 1))), Code::kInvalidArgument);
  ok(retention_cmd(kMinRetentionMs, 0));
  settings = Domain::retention(store_);
  EXPECT_EQ(settings->dedup_window_ms(), kMinRetentionMs);
  EXPECT_EQ(settings->change_retention_ms(), kDefaultChangeRetentionMs);
}

TEST_F(DomainTest, ARetransmissionAfterTheDedupWindowIsANewMessage) {
  make_trio();
  ok(retention_cmd(5 * kTickMs, 0));
  const auto first = apply(send_cmd("g", "alice", "alice-phone", "once", "hello"));
  ASSERT_EQ(first.code(), 0U);
  const std::uint64_t seq = payload_of<messagingpb::SendResult>(first).seq();
  const auto retry = apply(send_cmd("g", "alice", "alice-phone", "once", "hello"));
  EXPECT_TRUE(retry.existed());
  EXPECT_EQ(payload_of<messagingpb::SendResult>(retry).seq(), seq);
  for (int i = 0; i < 5; ++i) send("g", "bob", "filler");  // time passes: one tick per command
  const auto late = apply(send_cmd("g", "alice", "alice-phone", "once", "hello"));
  ASSERT_EQ(late.code(), 0U);
  EXPECT_FALSE(late.existed());
  EXPECT_GT(payload_of<messagingpb::SendResult>(late).seq(), seq);
  // The new send is remembered again for the window.
  EXPECT_TRUE(apply(send_cmd("g", "alice", "alice-phone", "once", "hello")).existed());
}

TEST_F(DomainTest, ExpiredDedupRecordsAreSweptSoTheirNumberLevelsOff) {
  make_trio();
  ok(retention_cmd(10 * kTickMs, 0));
  check_invariants_ = false;  // a thousand sends: the full check is quadratic
  std::size_t most = 0;
  for (int i = 0; i < 1000; ++i) {
    send("g", "alice", "m");
    most = std::max(most, scan_sub<messagingpb::SendDedup>(keys::kDedupSub).size());
  }
  // At most the sends of one window (one per tick), plus what one sweep may leave behind.
  EXPECT_LE(most, 10U + kMaxDedupExpiriesPerSend);
  EXPECT_EQ(scan_sub<messagingpb::DedupExpiry>(keys::kDedupExpirySub).size(),
            scan_sub<messagingpb::SendDedup>(keys::kDedupSub).size());
}

TEST_F(DomainTest, ChangeStreamsAreTrimmedAndAReaderBehindThemMustResync) {
  make_trio();
  ok(retention_cmd(0, 10 * kTickMs));
  for (int i = 0; i < 200; ++i) send("g", "alice", "m" + std::to_string(i));
  const auto bob = Domain::get_user(store_, "bob");
  ASSERT_TRUE(bob.ok() && bob->has_value());
  const std::uint64_t first = (*bob)->first_change_seq();
  const std::uint64_t last = (*bob)->last_change_seq();
  EXPECT_GT(first, 150U);  // about one window of entries is left
  EXPECT_LE(last - first, 10U + kMaxChangeTrimsPerAppend);
  auto behind = Domain::sync(store_, "bob", 0, 100);
  ASSERT_TRUE(behind.ok());
  EXPECT_TRUE(behind->resync_required);
  EXPECT_TRUE(behind->entries.empty());
  EXPECT_EQ(behind->next_cursor, last);
  auto caught_up = Domain::sync(store_, "bob", first - 1, 100);
  ASSERT_TRUE(caught_up.ok());
  EXPECT_FALSE(caught_up->resync_required);
  EXPECT_EQ(caught_up->entries.size(), last - first + 1);
}

TEST_F(DomainTest, AStreamNothingIsAppendedToIsTrimmedToItsNewestEntryWithinTwoWindows) {
  make_trio();
  constexpr std::int64_t kWindowMs = 10 * kTickMs;
  ok(retention_cmd(0, kWindowMs));
  for (int i = 0; i < 50; ++i) send("g", "alice", "m" + std::to_string(i));
  const std::int64_t last_append_ms = now_;
  // Commands that append to no stream, for two windows plus the commands a backlog needs.
  while (now_ < last_append_ms + 2 * kWindowMs + 4 * kTickMs) ok(retention_cmd(0, kWindowMs));
  for (const std::string user : {"alice", "bob", "carol"}) {
    const auto record = Domain::get_user(store_, user);
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->first_change_seq(), (*record)->last_change_seq()) << user;
    EXPECT_FALSE((*record)->trim_queued()) << user;
  }
  EXPECT_TRUE(scan_sub<messagingpb::StreamTrim>(keys::kStreamTrimSub).empty());
  // A new append queues the stream again.
  send("g", "alice", "again");
  EXPECT_EQ(scan_sub<messagingpb::StreamTrim>(keys::kStreamTrimSub).size(), 3U);
}

TEST_F(DomainTest, ALongIdleBacklogIsTrimmedOverSeveralCommandsWithBoundedWork) {
  make_trio();
  // The default window: 300 entries pile up in bob's stream, untrimmed.
  for (int i = 0; i < 300; ++i) send("g", "alice", "m" + std::to_string(i));
  const auto before = Domain::get_user(store_, "bob");
  ASSERT_TRUE(before.ok() && before->has_value());
  ASSERT_LE((*before)->first_change_seq(), 1U);
  constexpr std::int64_t kWindowMs = 10 * kTickMs;
  ok(retention_cmd(0, kWindowMs));  // now shortened: the whole backlog is past it
  for (std::size_t n = 0; n < 300 / kMaxIdleStreamTrimsPerCommand + 1; ++n) {
    const std::size_t kept_before = scan_sub<messagingpb::ChangeRecord>(keys::kChangeSub).size();
    ok(retention_cmd(0, kWindowMs));
    EXPECT_LE(kept_before - scan_sub<messagingpb::ChangeRecord>(keys::kChangeSub).size(),
              kMaxIdleStreamTrimsPerCommand);
  }
  for (int n = 0; n < 3 * 300 / static_cast<int>(kMaxIdleStreamTrimsPerCommand) + 3; ++n) {
    ok(retention_cmd(0, kWindowMs));
  }
  EXPECT_EQ(scan_sub<messagingpb::ChangeRecord>(keys::kChangeSub).size(), 3U);
}

// ---------------------------------------------------------------- message history

MessagingCommand message_retention_cmd(std::int64_t message_retention_ms) {
  MessagingCommand c;
  c.mutable_set_retention()->mutable_settings()->set_message_retention_ms(message_retention_ms);
  return c;
}

// The retention windows these tests set, in ticks of the test clock (one per command).
constexpr std::int64_t kMessageWindowTicks = 5;

class MessageRetentionTest : public DomainTest {
 protected:
  // One command that changes nothing but lets the clock move and the sweep run.
  void tick() { ok(cursor_cmd("alice", "g", 0)); }

  // Commands until the clock reads `ms`.
  void tick_until(std::int64_t ms) {
    while (now_ < ms) tick();
  }

  std::vector<std::uint64_t> history_seqs(const std::string& user, const std::string& conv) {
    auto page = Domain::history(store_, user, conv, 0, kMaxReadLimit);
    EXPECT_TRUE(page.ok());
    std::vector<std::uint64_t> seqs;
    if (page.ok()) {
      for (const auto& m : page->messages) seqs.push_back(m.seq());
    }
    return seqs;
  }

  // The delivery cancels requested for `reason`, as "<workflow id>".
  std::set<std::string> canceled(std::string_view reason) {
    std::set<std::string> ids;
    for (const auto& call : sink_.cancels) {
      if (call.payload == reason) ids.insert(call.workflow_id);
    }
    return ids;
  }
};

TEST_F(MessageRetentionTest, MessageRetentionIsForeverByDefaultAndBounded) {
  auto settings = Domain::retention(store_);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->message_retention_ms(), 0);
  EXPECT_EQ(code_of(apply(message_retention_cmd(kMinRetentionMs - 1))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(message_retention_cmd(kMaxRetentionMs + 1))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(message_retention_cmd(-1))), Code::kInvalidArgument);
  ok(message_retention_cmd(kMaxRetentionMs));
  ok(message_retention_cmd(kMinRetentionMs));
  settings = Domain::retention(store_);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->message_retention_ms(), kMinRetentionMs);
  EXPECT_EQ(settings->dedup_window_ms(), kDefaultDedupWindowMs);  // the other windows: defaults
}

TEST_F(MessageRetentionTest, AMessageGoesOnceItsWindowHasPassedAndNotBefore) {
  make_trio();
  ok(message_retention_cmd(kMessageWindowTicks * kTickMs));
  const std::uint64_t seq = send("g", "alice", "short-lived");
  const std::int64_t sent_ms = now_;
  tick_until(sent_ms + (kMessageWindowTicks - 1) * kTickMs);
  EXPECT_TRUE(stored("g", seq)) << "one tick before the window has passed";
  EXPECT_EQ(conversation("g").expired_up_to(), 0U);
  tick();
  ASSERT_EQ(now_ - sent_ms, kMessageWindowTicks * kTickMs);
  EXPECT_FALSE(stored("g", seq));
  EXPECT_EQ(conversation("g").expired_up_to(), seq);
  EXPECT_EQ(message_queue().head(), message_queue().tail());
}

TEST_F(MessageRetentionTest, ExpiryIsBoundedPerCommandAndKeepsPaceWithSends) {
  make_trio();
  constexpr std::size_t kBacklog = 3 * kMaxMessageExpiriesPerCommand + 1;
  for (std::size_t i = 0; i < kBacklog; ++i) send("g", "alice", "kept until a window is set");
  ASSERT_EQ(stored_messages(), kBacklog);
  // Every queued message is due at once: each command deletes the bound, no more.
  ok(message_retention_cmd(kMinRetentionMs));
  EXPECT_EQ(stored_messages(), kBacklog - kMaxMessageExpiriesPerCommand);
  tick();
  EXPECT_EQ(stored_messages(), kBacklog - 2 * kMaxMessageExpiriesPerCommand);
  // A send adds one and deletes up to the bound, so the backlog still shrinks.
  send("g", "bob", "new");
  EXPECT_EQ(stored_messages(), kBacklog + 1 - 3 * kMaxMessageExpiriesPerCommand);
  tick();
  EXPECT_EQ(stored_messages(), 0U);
  EXPECT_EQ(conversation("g").expired_up_to(), kBacklog + 1);
  EXPECT_EQ(conversation("g").last_seq(), kBacklog + 1);

  // Under a steady stream of sends alone, what is stored levels off at one window's sends.
  ok(message_retention_cmd(10 * kTickMs));
  check_invariants_ = false;  // a thousand sends: the full check is quadratic
  std::size_t most = 0;
  for (int i = 0; i < 1000; ++i) {
    send("g", i % 2 == 0 ? "alice" : "bob", "m");
    most = std::max(most, stored_messages());
  }
  EXPECT_LE(most, 10U);
  check_invariants_ = true;
  check_invariants();
}

TEST_F(MessageRetentionTest, EachQueuedMessageIsJudgedByTheWindowInForceWhenTheSweepReachesIt) {
  make_trio();
  ok(message_retention_cmd(100 * kTickMs));
  const std::int64_t first_ms = now_ + kTickMs;
  for (int i = 0; i < 10; ++i) send("g", "alice", "m" + std::to_string(i));  // seqs 1..10
  // Shortened: the messages past the new window go, a bounded number per command.
  ok(message_retention_cmd(kMessageWindowTicks * kTickMs));
  const std::uint64_t due = (now_ - first_ms) / kTickMs - kMessageWindowTicks + 1;
  ASSERT_GT(due, kMaxMessageExpiriesPerCommand);
  EXPECT_EQ(conversation("g").expired_up_to(), kMaxMessageExpiriesPerCommand);
  tick();
  EXPECT_EQ(conversation("g").expired_up_to(), due + 1);  // one more came due meanwhile
  // Lengthened: what is still queued is kept for the new window, though the old one has passed.
  ok(message_retention_cmd(100 * kTickMs));
  const std::uint64_t kept_from = conversation("g").expired_up_to() + 1;
  for (int i = 0; i < 2 * kMessageWindowTicks; ++i) tick();
  EXPECT_EQ(conversation("g").expired_up_to(), kept_from - 1);
  EXPECT_EQ(history_seqs("bob", "g").back(), kept_from);
  EXPECT_EQ(history_seqs("bob", "g").size(), 10 - kept_from + 1);
}

TEST_F(MessageRetentionTest, WithoutAWindowEveryMessageStaysQueuedAndAWindowSetLaterReachesIt) {
  make_trio();
  for (int i = 0; i < 6; ++i) send("g", "alice", "m" + std::to_string(i));
  for (int i = 0; i < 20; ++i) tick();
  EXPECT_EQ(stored_messages(), 6U);
  EXPECT_EQ(message_queue().tail() - message_queue().head(), 6U);
  // A window and back to forever before the sweep finished: the rest stays.
  ok(message_retention_cmd(kMinRetentionMs));
  EXPECT_EQ(conversation("g").expired_up_to(), kMaxMessageExpiriesPerCommand);
  ok(message_retention_cmd(0));
  for (int i = 0; i < 20; ++i) tick();
  EXPECT_EQ(stored_messages(), 6U - kMaxMessageExpiriesPerCommand);
  // The messages sent before any window expire like the later ones, oldest first.
  ok(message_retention_cmd(kMinRetentionMs));
  EXPECT_EQ(stored_messages(), 0U);
  EXPECT_TRUE(history_seqs("bob", "g").empty());
}

TEST_F(MessageRetentionTest, AnExpiredMessagesOpenDeliveriesAreCanceled) {
  make_trio();
  ok(message_retention_cmd(kMessageWindowTicks * kTickMs));
  send("g", "alice", "never read");
  send("g", "alice", "deleted");
  ok(delete_cmd("alice", "g", 2));
  ASSERT_EQ(canceled(kMessageDeletedReason).size(), 2U);
  tick_until(now_ + kMessageWindowTicks * kTickMs);
  ASSERT_EQ(conversation("g").expired_up_to(), 2U);
  // Each recipient's delivery of the first (the sender has none); the deleted one's were
  // canceled when it was deleted, and are not asked again.
  EXPECT_EQ(canceled(kMessageExpiredReason),
            (std::set<std::string>{delivery_workflow_id("g", 1, "bob"),
                                   delivery_workflow_id("g", 1, "carol")}));
  EXPECT_EQ(canceled(kMessageDeletedReason).size(), 2U);
}

TEST_F(MessageRetentionTest, CommandsNamingAnExpiredMessageAnswerNotFoundOrPassOverIt) {
  make_trio();
  constexpr std::int64_t kWindowTicks = 2 * kMessageWindowTicks;  // "fresh" outlives the test
  ok(message_retention_cmd(kWindowTicks * kTickMs));
  send("g", "alice", "old");
  send("g", "alice", "old too");
  tick_until(now_ + kWindowTicks * kTickMs);
  ASSERT_EQ(conversation("g").expired_up_to(), 2U);
  const std::uint64_t fresh = send("g", "alice", "fresh");
  const auto edit = apply(edit_cmd("alice", "g", 1, "revived"));
  EXPECT_EQ(code_of(edit), Code::kNotFound) << edit.message();
  EXPECT_EQ(code_of(apply(delete_cmd("alice", "g", 2))), Code::kNotFound);
  // Acknowledging and reading across the expired seqs signals only the stored message.
  sink_.signals.clear();
  const auto ack = apply(ack_cmd("bob", "bob-phone", "g", fresh));
  ASSERT_EQ(ack.code(), 0U) << ack.message();
  EXPECT_EQ(payload_of<messagingpb::MarkResult>(ack).mark(), fresh);
  ok(cursor_cmd("bob", "g", fresh));
  const auto receipts = apply(receipts_cmd("bob", "g", fresh));
  ASSERT_EQ(receipts.code(), 0U) << receipts.message();
  EXPECT_TRUE(payload_of<messagingpb::ReceiptResult>(receipts).complete());
  EXPECT_EQ(signaled(kDeliveredSignal),
            std::vector<std::string>{delivery_workflow_id("g", fresh, "bob")});
  EXPECT_EQ(signaled(kReadSignal),
            std::vector<std::string>{delivery_workflow_id("g", fresh, "bob")});
}

TEST_F(MessageRetentionTest, ReadersSkipExpiredMessagesAndTheConversationKeepsItsCounters) {
  make_trio();
  ok(message_retention_cmd(kMessageWindowTicks * kTickMs));
  for (int i = 1; i <= 3; ++i) send("g", "alice", "old " + std::to_string(i));
  tick_until(now_ + (kMessageWindowTicks - 1) * kTickMs);
  send("g", "alice", "new 4");  // as seq 3's window passes: 1..3 are gone after this send
  send("g", "alice", "new 5");
  ASSERT_EQ(conversation("g").expired_up_to(), 3U);
  EXPECT_EQ(conversation("g").last_seq(), 5U);

  // History, backwards and forwards, holds what is stored and says nothing older is.
  EXPECT_EQ(history_seqs("bob", "g"), (std::vector<std::uint64_t>{5, 4}));
  auto back = Domain::history(store_, "bob", "g", 0, 1);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->next_before, 5U);
  back = Domain::history(store_, "bob", "g", 5, 10);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->messages.size(), 1U);
  EXPECT_EQ(back->next_before, 0U);
  back = Domain::history(store_, "bob", "g", 3, 10);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->messages.empty());
  EXPECT_EQ(back->next_before, 0U);
  auto forwards = Domain::history_after(store_, "bob", "g", 0, 1);
  ASSERT_TRUE(forwards.ok());
  ASSERT_EQ(forwards->messages.size(), 1U);
  EXPECT_EQ(forwards->messages[0].seq(), 4U);
  EXPECT_EQ(forwards->next_after, 4U);
  EXPECT_TRUE(forwards->has_more);

  // Sync passes over the expired messages' changes; a page of them alone is empty, not the end.
  const auto entries = changes("bob");
  std::vector<std::uint64_t> message_seqs;
  for (const auto& e : entries) {
    if (e.change().kind() == messagingpb::MESSAGE_NEW) message_seqs.push_back(e.message().seq());
  }
  EXPECT_EQ(message_seqs, (std::vector<std::uint64_t>{4, 5}));
  auto page = Domain::sync(store_, "bob", 1, 3);  // bob's changes 2..4: messages 1..3
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->entries.empty());
  EXPECT_TRUE(page->has_more);
  EXPECT_EQ(page->next_cursor, 4U);
  EXPECT_EQ(changes("bob", page->next_cursor).size(), 2U);

  // The counters and the chat index stay: unread counts every message, read or not.
  auto chats = Domain::chat_index(store_, "carol", 10, "");
  ASSERT_TRUE(chats.ok());
  ASSERT_EQ(chats->entries.size(), 1U);
  EXPECT_EQ(chats->entries[0].unread, 5U);
  EXPECT_EQ(chats->entries[0].entry.last_seq(), 5U);
  EXPECT_EQ(chats->entries[0].entry.preview(), "new 5");
  auto cursor = Domain::read_cursor(store_, "alice", "g");
  ASSERT_TRUE(cursor.ok());
  EXPECT_EQ(*cursor, 5U);
  EXPECT_EQ(send("g", "bob", "next"), 6U);
}

TEST_F(MessageRetentionTest, ARestartedDomainContinuesTheSweepFromTheStoredQueue) {
  make_trio();
  for (int i = 0; i < 10; ++i) send("g", "alice", "m" + std::to_string(i));
  ok(message_retention_cmd(kMinRetentionMs));
  ASSERT_EQ(conversation("g").expired_up_to(), kMaxMessageExpiriesPerCommand);
  // The domain keeps no state of its own: a replica restarted from its store (or from a
  // snapshot of it) carries on where the queue says.
  Domain restarted(&sink_);
  domain_ = &restarted;
  tick();
  EXPECT_EQ(conversation("g").expired_up_to(), 2 * kMaxMessageExpiriesPerCommand);
  tick();
  EXPECT_EQ(conversation("g").expired_up_to(), 10U);
  EXPECT_EQ(stored_messages(), 0U);
  domain_ = &first_domain_;
}

TEST_F(MessageRetentionTest, AQueueEntryThatIsNotItsConversationsOldestIsCorruption) {
  make_trio();
  send("g", "alice", "one");
  send("g", "alice", "two");
  // Swap the queue's two entries: the sweep would reach seq 2 while seq 1 is stored.
  auto first = store_.get(storage::Space::kState, keys::message_expiry_key(0));
  auto second = store_.get(storage::Space::kState, keys::message_expiry_key(1));
  ASSERT_TRUE(first.ok() && first->has_value() && second.ok() && second->has_value());
  storage::WriteBatch swap;
  swap.put(storage::Space::kState, keys::message_expiry_key(0), **second);
  swap.put(storage::Space::kState, keys::message_expiry_key(1), **first);
  ASSERT_TRUE(store_.write(swap, false).ok());
  check_invariants_ = false;
  EXPECT_EQ(code_of(apply(message_retention_cmd(kMinRetentionMs))), Code::kCorruption);
  EXPECT_TRUE(stored("g", 1));
  EXPECT_TRUE(stored("g", 2));
}

// ---------------------------------------------------------------- removed devices

MessagingCommand remove_device_cmd(const std::string& user, const std::string& device) {
  MessagingCommand c;
  c.mutable_remove_device()->set_user_id(user);
  c.mutable_remove_device()->set_device_id(device);
  return c;
}

// The tombstone window in these tests: max(dedup window, change retention).
constexpr std::int64_t kDeviceWindowTicks = 10;

TEST_F(DomainTest, ARemovedDevicesMarksGoAtOnceAndItsTombstoneAfterTheWindowNotBefore) {
  make_trio();
  ok(retention_cmd(4 * kTickMs, kDeviceWindowTicks * kTickMs));
  send("g", "alice", "hello");
  ok(ack_cmd("bob", "bob-phone", "g", 1));
  ok(device_cmd("bob", "bob-laptop"));
  ok(marker_cmd("bob", "bob-laptop", "g", 1));
  ASSERT_EQ(marks_of("bob", "bob-phone"), 1U);
  ok(remove_device_cmd("bob", "bob-phone"));
  const std::int64_t removed_ms = now_;
  EXPECT_EQ(marks_of("bob", "bob-phone"), 0U);
  EXPECT_EQ(marks_of("bob", "bob-laptop"), 1U);  // the other device's marks stay
  auto views = Domain::device_marks(store_, "bob", "g");
  ASSERT_TRUE(views.ok());
  ASSERT_EQ(views->size(), 1U);
  EXPECT_EQ((*views)[0].device_id, "bob-laptop");
  // A reclaiming command one tick before the window has passed leaves the tombstone.
  while (now_ < removed_ms + (kDeviceWindowTicks - 2) * kTickMs) send("g", "alice", "tick");
  ok(device_cmd("carol", "carol-tablet"));
  ASSERT_EQ(now_ - removed_ms, (kDeviceWindowTicks - 1) * kTickMs);
  ASSERT_TRUE(device_record("bob-phone").has_value());
  EXPECT_TRUE(device_record("bob-phone")->removed());
  ok(device_cmd("carol", "carol-watch"));  // the window has passed
  EXPECT_FALSE(device_record("bob-phone").has_value());
  EXPECT_EQ(device_queue().head(), device_queue().tail());
  EXPECT_TRUE(device_record("bob-laptop").has_value());
  EXPECT_EQ(marks_of("bob", "bob-laptop"), 1U);
}

TEST_F(DomainTest, ADeviceIdCanBeRegisteredAgainOnlyAfterItsTombstoneExpires) {
  make_trio();
  ok(retention_cmd(kDeviceWindowTicks * kTickMs, 2 * kTickMs));
  send("g", "alice", "hello");
  ok(ack_cmd("bob", "bob-phone", "g", 1));
  ok(remove_device_cmd("bob", "bob-phone"));
  const std::int64_t removed_ms = now_;
  while (now_ + kTickMs < removed_ms + kDeviceWindowTicks * kTickMs) {
    EXPECT_EQ(code_of(apply(device_cmd("bob", "bob-phone"))), Code::kAlreadyExists);
  }
  ok(device_cmd("bob", "bob-phone"));  // a new device under the old id
  const auto device = device_record("bob-phone");
  ASSERT_TRUE(device.has_value());
  EXPECT_FALSE(device->removed());
  EXPECT_EQ(device->created_ms(), now_);
  // The old device's DEVICE_REMOVED is before the new device's start in the stream.
  EXPECT_EQ(device->registered_after_change_seq(), last_change("bob"));
  auto removal = store_.get(storage::Space::kState, keys::change_key("bob", last_change("bob")));
  ASSERT_TRUE(removal.ok() && removal->has_value());
  EXPECT_EQ(keys::open<messagingpb::ChangeRecord>(**removal, "test")->kind(),
            messagingpb::DEVICE_REMOVED);
  // It starts with no marks of its namesake.
  auto views = Domain::device_marks(store_, "bob", "g");
  ASSERT_TRUE(views.ok());
  ASSERT_EQ(views->size(), 1U);
  EXPECT_EQ((*views)[0].delivered_up_to, 0U);
  EXPECT_EQ((*views)[0].read_marker, 0U);
  ok(ack_cmd("bob", "bob-phone", "g", 1));
  // An active id is still refused.
  EXPECT_EQ(code_of(apply(device_cmd("bob", "bob-phone"))), Code::kAlreadyExists);
}

TEST_F(DomainTest, ADevicesManyMarksGoInBoundedStepsAndItsTombstoneWaitsForThem) {
  make_user("alice");
  make_user("bob");
  constexpr std::size_t kGroups = 2 * kMaxDeviceMarksSweptPerCommand + 8;
  for (std::size_t i = 0; i < kGroups; ++i) {
    const std::string conv = "g" + std::to_string(i);
    ok(group_cmd("alice", conv, {"bob"}));
    ok(marker_cmd("bob", "bob-phone", conv, 0));
  }
  ASSERT_EQ(marks_of("bob", "bob-phone"), kGroups);
  ok(retention_cmd(kMinRetentionMs, kMinRetentionMs));  // one tick: only the marks hold it
  ok(remove_device_cmd("bob", "bob-phone"));
  EXPECT_EQ(marks_of("bob", "bob-phone"), kGroups - kMaxDeviceMarksSweptPerCommand);
  ok(device_cmd("alice", "alice-1"));
  EXPECT_EQ(marks_of("bob", "bob-phone"), kGroups - 2 * kMaxDeviceMarksSweptPerCommand);
  EXPECT_TRUE(device_record("bob-phone").has_value());  // its window passed; its marks remain
  ok(device_cmd("alice", "alice-2"));
  EXPECT_EQ(marks_of("bob", "bob-phone"), 0U);
  EXPECT_FALSE(device_record("bob-phone").has_value());
}

TEST_F(DomainTest, NewMarksRecordsPayForSweepingARemovedDevicesMarks) {
  make_trio();
  constexpr std::size_t kGroups = 3 * kMaxDeviceMarksSweptPerCommand;
  for (std::size_t i = 0; i < kGroups; ++i) {
    const std::string conv = "h" + std::to_string(i);
    ok(group_cmd("alice", conv, {"bob", "carol"}));
    ok(marker_cmd("bob", "bob-phone", conv, 0));
  }
  ok(remove_device_cmd("bob", "bob-phone"));
  EXPECT_EQ(marks_of("bob", "bob-phone"), kGroups - kMaxDeviceMarksSweptPerCommand);
  ok(marker_cmd("carol", "carol-phone", "h0", 0));  // a new record: sweeps
  EXPECT_EQ(marks_of("bob", "bob-phone"), kGroups - 2 * kMaxDeviceMarksSweptPerCommand);
  ok(marker_cmd("carol", "carol-phone", "h0", 0));  // an existing record: does not
  EXPECT_EQ(marks_of("bob", "bob-phone"), kGroups - 2 * kMaxDeviceMarksSweptPerCommand);
  send("h1", "alice", "hello");
  ok(ack_cmd("carol", "carol-phone", "h1", 1));  // a new record: sweeps
  EXPECT_EQ(marks_of("bob", "bob-phone"), 0U);
  EXPECT_EQ(device_queue().marks_swept(), device_queue().tail());
  EXPECT_TRUE(device_record("bob-phone").has_value());  // its window is the default: days
}

TEST_F(DomainTest, ManyRemovedDevicesExpireAFewPerCommand) {
  make_user("alice");
  make_user("bob");
  ok(direct_cmd("alice", "bob"));
  const std::string conv = direct_conversation_id("alice", "bob");
  constexpr std::size_t kRemoved = 100;
  const auto alice_tombstones = [&] {
    std::size_t n = 0;
    for (std::size_t i = 0; i < kRemoved; ++i) {
      n += device_record("alice-" + std::to_string(i)).has_value() ? 1 : 0;
    }
    return n;
  };
  check_invariants_ = false;  // three hundred commands: the full check is quadratic
  for (std::size_t i = 0; i < kRemoved; ++i) {
    const std::string id = "alice-" + std::to_string(i);
    ok(device_cmd("alice", id));
    ok(marker_cmd("alice", id, conv, 0));
    ok(remove_device_cmd("alice", id));
  }
  check_invariants_ = true;
  check_invariants();
  ASSERT_EQ(alice_tombstones(), kRemoved);
  EXPECT_EQ(scan_sub<messagingpb::DeviceMarks>(keys::kMarksSub).size(), 0U);
  ok(retention_cmd(kMinRetentionMs, kMinRetentionMs));
  std::size_t left = kRemoved;
  for (int i = 0; left > 0; ++i) {
    ASSERT_LT(i, static_cast<int>(kRemoved)) << "the tombstones should be gone by now";
    // Registrations and removals both reclaim; bob's own churn joins the queue behind.
    const std::string id = "bob-" + std::to_string(i);
    ok(i % 2 == 0 ? device_cmd("bob", id)
                  : remove_device_cmd("bob", "bob-" + std::to_string(i - 1)));
    const std::size_t now_left = alice_tombstones();
    EXPECT_LE(left - now_left, kMaxDeviceExpiriesPerCommand);
    EXPECT_LT(now_left, left);
    left = now_left;
  }
  EXPECT_TRUE(device_record("alice-phone").has_value());
  EXPECT_TRUE(device_record("bob-phone").has_value());
}

TEST_F(DomainTest, HistoryPagesBackwardsThroughAConversation) {
  make_trio();
  for (int i = 1; i <= 7; ++i) send("g", "alice", "m" + std::to_string(i));
  auto page = Domain::history(store_, "bob", "g", 0, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 3U);
  EXPECT_EQ(page->messages[0].seq(), 7U);
  EXPECT_EQ(page->messages[2].seq(), 5U);
  EXPECT_EQ(page->next_before, 5U);
  page = Domain::history(store_, "bob", "g", 5, 3);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->messages.front().seq(), 4U);
  page = Domain::history(store_, "bob", "g", 2, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 1U);
  EXPECT_EQ(page->messages[0].body(), "m1");
  EXPECT_EQ(page->next_before, 0U);
  EXPECT_EQ(Domain::history(store_, "mallory", "g", 0, 3).status().code(), Code::kNotFound);
}

TEST_F(DomainTest, HistoryPagesForwardsThroughAConversation) {
  make_trio();
  for (int i = 1; i <= 7; ++i) send("g", "alice", "m" + std::to_string(i));
  auto page = Domain::history_after(store_, "bob", "g", 0, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 3U);
  EXPECT_EQ(page->messages[0].body(), "m1");
  EXPECT_EQ(page->messages[2].seq(), 3U);
  EXPECT_EQ(page->next_after, 3U);
  EXPECT_TRUE(page->has_more);
  page = Domain::history_after(store_, "bob", "g", 5, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 2U);
  EXPECT_EQ(page->messages[0].seq(), 6U);
  EXPECT_EQ(page->next_after, 7U);
  EXPECT_FALSE(page->has_more);
  // At the newest message (or past it) the page is empty and the position stays.
  page = Domain::history_after(store_, "bob", "g", 7, 3);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(page->next_after, 7U);
  EXPECT_FALSE(page->has_more);
  page = Domain::history_after(store_, "bob", "g", std::numeric_limits<std::uint64_t>::max(), 3);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(Domain::history_after(store_, "mallory", "g", 0, 3).status().code(), Code::kNotFound);
}

TEST_F(DomainTest, ATitleOverItsBoundIsTooLargeAndAControlByteIsInvalid) {
  make_trio();
  MessagingCommand rename;
  rename.mutable_rename_conversation()->set_user_id("alice");
  rename.mutable_rename_conversation()->set_conversation_id("g");
  rename.mutable_rename_conversation()->set_title(std::string(kMaxTitleBytes + 1, 't'));
  EXPECT_EQ(code_of(apply(rename)), Code::kResourceExhausted);
  rename.mutable_rename_conversation()->set_title("tab\there");
  EXPECT_EQ(code_of(apply(rename)), Code::kInvalidArgument);
  rename.mutable_rename_conversation()->set_title(std::string(kMaxTitleBytes, 't'));
  ok(rename);
}

TEST_F(DomainTest, IdsAreValidated) {
  EXPECT_EQ(code_of(apply(user_cmd(""))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd("a:b"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd("a/b"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd("100%"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd("tab\there"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd(std::string(kMaxIdBytes + 1, 'x')))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(user_cmd("bad-email", "no-at-sign"))), Code::kInvalidArgument);
  ok(user_cmd(std::string(kMaxIdBytes, 'x')));
  // Text that is not UTF-8 does not decode (proto3 strings), whatever the field.
  EXPECT_EQ(code_of(apply(user_cmd("caf\xC3"))), Code::kInvalidArgument);
  EXPECT_EQ(code_of(apply(MessagingCommand())), Code::kInvalidArgument);
}

// ---------------------------------------------------------------- failure and corruption

TEST_F(DomainTest, ACorruptedRecordIsReportedAsCorruption) {
  make_trio();
  send("g", "alice", "m");
  ASSERT_TRUE(store_.corrupt(storage::Space::kState, keys::conversation_key("g")));
  check_invariants_ = false;
  const auto r = apply(send_cmd("g", "alice", "alice-phone", "m-2", "again"));
  EXPECT_EQ(code_of(r), Code::kCorruption);
  EXPECT_EQ(Domain::get_conversation(store_, "g").status().code(), Code::kCorruption);

  ASSERT_TRUE(store_.corrupt(storage::Space::kState, keys::member_key("bob", "g")));
  EXPECT_EQ(Domain::chat_index(store_, "bob", 10, "").status().code(), Code::kCorruption);
  ASSERT_TRUE(store_.corrupt(storage::Space::kState, keys::change_key("carol", 1)));
  EXPECT_EQ(Domain::sync(store_, "carol", 0, 10).status().code(), Code::kCorruption);
}

TEST_F(DomainTest, AFailedCommandLeavesNoWritesAndNoNotices) {
  make_trio();
  send("g", "alice", "first");
  static_cast<void>(domain_->take_changes());
  const auto before = dump();
  sink_.fail_start_of = delivery_workflow_id("g", 2, "carol");  // the last recipient
  const auto r = apply(send_cmd("g", "alice", "alice-phone", "m-2", "second"));
  EXPECT_EQ(code_of(r), Code::kResourceExhausted);
  EXPECT_EQ(dump(), before);
  EXPECT_TRUE(domain_->take_changes().empty());
  sink_.fail_start_of.clear();
  EXPECT_EQ(send("g", "alice", "second"), 2U);
}

TEST_F(DomainTest, TakeChangesReportsEveryAppendedChangeOnce) {
  make_trio();
  static_cast<void>(domain_->take_changes());
  send("g", "alice", "hi");
  const auto notices = domain_->take_changes();
  ASSERT_EQ(notices.size(), 3U);
  std::set<std::string> users;
  for (const auto& n : notices) {
    users.insert(n.user_id);
    EXPECT_EQ(n.conversation_id, "g");
    EXPECT_EQ(n.change_seq, last_change(n.user_id));
  }
  EXPECT_EQ(users, (std::set<std::string>{"alice", "bob", "carol"}));
  EXPECT_TRUE(domain_->take_changes().empty());
}

// The gateway sends a notice's change without reading the stream: it must be the stored entry.
TEST_F(DomainTest, ANoticeCarriesTheChangeAsStoredInTheStream) {
  make_trio();
  static_cast<void>(domain_->take_changes());
  send("g", "alice", "hi");
  const auto notices = domain_->take_changes();
  ASSERT_EQ(notices.size(), 3U);
  for (const auto& n : notices) {
    auto page = Domain::sync(store_, n.user_id, n.change_seq - 1, 1);
    ASSERT_TRUE(page.ok()) << page.status().to_string();
    ASSERT_EQ(page->entries.size(), 1U) << n.user_id;
    EXPECT_EQ(n.change.SerializeAsString(), page->entries[0].change().SerializeAsString())
        << n.user_id;
    EXPECT_EQ(n.change.kind(), messagingpb::MESSAGE_NEW);
    EXPECT_TRUE(is_message_change(n.change.kind()));
  }
}

}  // namespace
}  // namespace herald::messaging
