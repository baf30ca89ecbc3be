#include "rsm/kv_state_machine.h"

#include <fmt/format.h>

#include "base/encoding.h"

namespace herald::rsm {

namespace {

constexpr char kKvPrefix = 'k';

rsmpb::CommandResult error_result(const Status& status) {
  rsmpb::CommandResult r;
  r.set_code(static_cast<std::uint32_t>(status.code()));
  r.set_message(status.message());
  return r;
}

Result<std::optional<rsmpb::KvValue>> decode_value(const std::optional<std::string>& raw,
                                                   std::string_view key) {
  if (!raw) {
    return std::optional<rsmpb::KvValue>();
  }
  std::string_view payload;
  rsmpb::KvValue value;
  if (!open_record(*raw, payload) ||
      !value.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption(
        fmt::format("kv record for key of {} bytes fails its checksum", key.size()));
  }
  return std::optional<rsmpb::KvValue>(std::move(value));
}

Result<std::optional<rsmpb::KvValue>> load_current(const ApplyBatch& batch, const std::string& skey,
                                                   std::string_view key) {
  HERALD_ASSIGN_OR_RETURN(auto raw, batch.get(storage::Space::kState, skey));
  return decode_value(raw, key);
}

// Checks a compare-and-set precondition against the key's current state.
std::optional<rsmpb::CommandResult> check_expected(bool has_expected, std::uint64_t expected,
                                                   const std::optional<rsmpb::KvValue>& current) {
  if (!has_expected) {
    return std::nullopt;
  }
  const std::uint64_t found = current ? current->revision() : 0;
  if (found == expected) {
    return std::nullopt;
  }
  auto r = error_result(
      Status::failed_precondition(fmt::format("revision is {}, expected {}", found, expected)));
  r.set_current_revision(found);
  return r;
}

}  // namespace

Status validate_kv(std::string_view key, std::string_view value) {
  if (key.empty()) {
    return Status::invalid_argument("key is empty");
  }
  if (key.size() > kMaxKvKeyBytes) {
    return Status::invalid_argument(
        fmt::format("key is {} bytes; the bound is {}", key.size(), kMaxKvKeyBytes));
  }
  if (value.size() > kMaxKvValueBytes) {
    return Status::invalid_argument(
        fmt::format("value is {} bytes; the bound is {}", value.size(), kMaxKvValueBytes));
  }
  return Status::ok_status();
}

std::string KvStateMachine::state_key(std::string_view key) {
  std::string out;
  out.reserve(key.size() + 1);
  out.push_back(kKvPrefix);
  out.append(key);
  return out;
}

Result<std::optional<rsmpb::KvValue>> KvStateMachine::read(const storage::Reader& reader,
                                                           std::string_view key) {
  HERALD_ASSIGN_OR_RETURN(auto raw, reader.get(storage::Space::kState, state_key(key)));
  return decode_value(raw, key);
}

rsmpb::CommandResult KvStateMachine::apply(raft::Index index, const rsmpb::Command& command,
                                           ApplyBatch& batch) {
  switch (command.op_case()) {
    case rsmpb::Command::kKvPut: return put(index, command.kv_put(), batch);
    case rsmpb::Command::kKvDelete: return del(command.kv_delete(), batch);
    default: return error_result(Status::invalid_argument("not a key-value command"));
  }
}

rsmpb::CommandResult KvStateMachine::put(raft::Index index, const rsmpb::KvPut& op,
                                         ApplyBatch& batch) {
  // Validation is repeated here: the log may hold a command from a proposer with other bounds.
  if (Status s = validate_kv(op.key(), op.value()); !s.ok()) {
    return error_result(s);
  }
  const std::string skey = state_key(op.key());
  rsmpb::CommandResult r;
  if (op.has_expected_revision()) {
    // Only a compare-and-set reads the current value; a plain put overwrites it unread.
    auto current = load_current(batch, skey, op.key());
    if (!current.ok()) {
      return error_result(current.status());
    }
    if (auto failed = check_expected(true, op.expected_revision(), *current)) {
      return *failed;
    }
    r.set_existed(current->has_value());
  }
  rsmpb::KvValue value;
  value.set_revision(index);
  value.set_value(op.value());
  batch.put(storage::Space::kState, skey, seal_record(value.SerializeAsString()));
  r.set_revision(index);
  return r;
}

rsmpb::CommandResult KvStateMachine::del(const rsmpb::KvDelete& op, ApplyBatch& batch) {
  if (Status s = validate_kv(op.key(), {}); !s.ok()) {
    return error_result(s);
  }
  const std::string skey = state_key(op.key());
  auto current = load_current(batch, skey, op.key());
  if (!current.ok()) {
    return error_result(current.status());
  }
  if (auto failed = check_expected(op.has_expected_revision(), op.expected_revision(), *current)) {
    return *failed;
  }
  rsmpb::CommandResult r;
  r.set_existed(current->has_value());
  if (current->has_value()) {
    r.set_revision((*current)->revision());
    batch.del(storage::Space::kState, skey);
  }
  return r;
}

}  // namespace herald::rsm
