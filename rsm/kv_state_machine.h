// KvStateMachine: the operator key-value namespace (PUT/GET/DELETE /v1/kv/{key}).
//
// Keys are arbitrary bytes up to kMaxKvKeyBytes; values up to kMaxKvValueBytes. Each key carries
// a revision: the log index of the command that last wrote it (like etcd's mod_revision).
// Compare-and-set compares that revision (0 = "the key must not exist").
// Stored as Space::kState key "k" + key → sealed KvValue (docs/storage-format.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "rsm/state_machine.h"
#include "storage/engine.h"

namespace herald::rsm {

inline constexpr std::size_t kMaxKvKeyBytes = 4096;
inline constexpr std::size_t kMaxKvValueBytes = 512 * 1024;

// Validates a key and value before they are proposed. kInvalidArgument with a reason.
[[nodiscard]] Status validate_kv(std::string_view key, std::string_view value);

class KvStateMachine final : public StateMachine {
 public:
  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           ApplyBatch& batch) override;
  // Deletions only.
  [[nodiscard]] bool allowed_when_disk_low(const rsmpb::Command& command) const override {
    return command.op_case() == rsmpb::Command::kKvDelete;
  }

  // Reads a key from applied state (any Reader: the engine or a snapshot). nullopt if absent;
  // kCorruption if the record fails its checksum.
  [[nodiscard]] static Result<std::optional<rsmpb::KvValue>> read(const storage::Reader& reader,
                                                                  std::string_view key);
  [[nodiscard]] static std::string state_key(std::string_view key);

 private:
  [[nodiscard]] static rsmpb::CommandResult put(raft::Index index, const rsmpb::KvPut& op,
                                                ApplyBatch& batch);
  [[nodiscard]] static rsmpb::CommandResult del(const rsmpb::KvDelete& op, ApplyBatch& batch);
};

}  // namespace herald::rsm
