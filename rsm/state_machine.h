// StateMachine: the deterministic application state that committed commands are applied to.
//
// Every replica applies the same commands in the same order and must reach the same state and
// the same results: an implementation reads only the ApplyBatch (engine state) and the command,
// never a clock, a random source or any other input. Its data lives in storage::Space::kState
// under its own key prefix (docs/storage-format.md), so it is part of every snapshot.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "raft/types.h"
#include "rsm/apply_batch.h"
#include "rsm/rsm.pb.h"

namespace herald::rsm {

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies `command`, committed at log `index`, staging its writes in `batch`. Returns the
  // result for the proposer. A result with a non-ok code has no effect: the caller undoes the
  // command's writes. kCorruption or kIOError in the result stops the replica (the caller
  // checks): state that failed its checksum is never built upon.
  [[nodiscard]] virtual rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                                   ApplyBatch& batch) = 0;
  // Whether `command` may still be proposed while a disk alarm stands (rsmpb::DiskAlarm): true
  // for commands that delete data or carry work already accepted to its end, false for new
  // content. Pure: decided from the command alone.
  [[nodiscard]] virtual bool allowed_when_disk_low(const rsmpb::Command& command) const {
    return false;
  }
};

// Routes each command to the state machine that owns it: key-value operations to the KV state
// machine, ModuleCommands to the module registered under their name. A command for an unknown
// module is refused with kInvalidArgument on every replica alike, so every replica must register
// the same modules. Not thread-safe; modules are borrowed and must outlive the router.
class StateMachineRouter final : public StateMachine {
 public:
  explicit StateMachineRouter(StateMachine* kv) : kv_(kv) {}
  // kAlreadyExists when `name` is taken.
  [[nodiscard]] Status add_module(std::string name, StateMachine* module);
  [[nodiscard]] rsmpb::CommandResult apply(raft::Index index, const rsmpb::Command& command,
                                           ApplyBatch& batch) override;
  // Asks the state machine the command would be routed to; false for an unknown module.
  [[nodiscard]] bool allowed_when_disk_low(const rsmpb::Command& command) const override;

 private:
  StateMachine* kv_;
  std::map<std::string, StateMachine*, std::less<>> modules_;
};

}  // namespace herald::rsm
