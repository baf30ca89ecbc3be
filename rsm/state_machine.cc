#include "rsm/state_machine.h"

#include <fmt/format.h>

namespace herald::rsm {

Status StateMachineRouter::add_module(std::string name, StateMachine* module) {
  HERALD_ASSERT(module != nullptr, "a module needs a state machine");
  if (!modules_.emplace(name, module).second) {
    return Status::already_exists(fmt::format("module \"{}\" is registered twice", name));
  }
  return Status::ok_status();
}

rsmpb::CommandResult StateMachineRouter::apply(raft::Index index, const rsmpb::Command& command,
                                               ApplyBatch& batch) {
  if (command.op_case() != rsmpb::Command::kModule) {
    return kv_->apply(index, command, batch);
  }
  const auto it = modules_.find(command.module().name());
  if (it == modules_.end()) {
    rsmpb::CommandResult r;
    r.set_code(static_cast<std::uint32_t>(Code::kInvalidArgument));
    r.set_message(fmt::format("no state-machine module named \"{}\"", command.module().name()));
    return r;
  }
  return it->second->apply(index, command, batch);
}

bool StateMachineRouter::allowed_when_disk_low(const rsmpb::Command& command) const {
  if (command.op_case() != rsmpb::Command::kModule) {
    return kv_->allowed_when_disk_low(command);
  }
  const auto it = modules_.find(command.module().name());
  return it != modules_.end() && it->second->allowed_when_disk_low(command);
}

}  // namespace herald::rsm
