// Fuzz target: the messaging domain as the replicated state machine applies it
// (messaging/domain.h, messaging/host.h, workflow/engine.h; docs/messaging.md).
//
// Wires a replica's state machines as server/node_host.cc does — a StateMachineRouter over the
// KV state machine, the workflow engine (module "workflow", with the messaging workflow types)
// and the messaging domain (module "messaging", starting and signalling delivery workflows
// through messaging::Host's sink) — on an empty storage::MemEngine, then applies the input as a
// sequence of committed commands, each [u8 selector][u16 BE length][payload]: the payload is a
// serialized MessagingCommand (selector even) or WorkflowCommand (selector odd), and the command's
// wall time advances by (selector >> 1) * kStepMs. Each command is applied as rsm::Node applies
// one (a failed result rolls its writes back) and its writes are committed to the engine. Then
// the domain's readers run over the state for the seed corpus's users and conversation.
// The replica's wiring is fuzz/messaging_fixture.h. Asserts: no crash, leak or undefined behaviour,
// no failed HERALD_ASSERT; invalid commands are refused with an error result and no effect; a state
// built only by applying commands never reads as damaged (no kCorruption or kIOError from apply or
// from a reader).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "base/status.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/messaging_fixture.h"
#include "messaging/domain.h"
#include "messaging/host.h"
#include "messaging/providers.h"
#include "rsm/apply_batch.h"
#include "rsm/kv_state_machine.h"
#include "rsm/state_machine.h"
#include "storage/mem_engine.h"
#include "workflow/definition.h"
#include "workflow/engine.h"

namespace {

namespace messaging = herald::messaging;
namespace fixture = herald::fuzz::messaging_seed;
using herald::Code;
using herald::Status;

constexpr std::size_t kPageSize = 16;
using fixture::kStartMs;
using fixture::Replica;

// Damage can only come from a broken invariant here: nothing but applied commands wrote the state.
void check_not_damaged(Code code, const std::string& message) {
  if (code == Code::kCorruption || code == Code::kIOError) {
    std::fprintf(stderr, "damage reported: %s\n", message.c_str());
    HERALD_ASSERT(false, "a state built only by applying commands never reads as damaged");
  }
}

void apply(Replica& replica, herald::raft::Index index, const herald::rsmpb::Command& command) {
  herald::rsm::ApplyBatch batch(&replica.engine);
  const herald::rsm::ApplyBatch::Savepoint before = batch.savepoint();
  const herald::rsmpb::CommandResult result = replica.router.apply(index, command, batch);
  const auto code = static_cast<Code>(result.code());
  check_not_damaged(code, result.message());
  if (code != Code::kOk) {
    batch.rollback(before);
  }
  HERALD_ASSERT(replica.engine.write(batch.writes(), /*sync=*/false).ok(), "MemEngine writes");
  // The hints are not needed; taking them keeps their memory bounded.
  static_cast<void>(replica.host.domain()->take_changes());
  static_cast<void>(replica.workflows.take_dispatchable());
  static_cast<void>(replica.workflows.take_applied_fires());
}

void read_back(const Replica& replica) {
  const herald::storage::Reader& r = replica.engine;
  const auto check = [](const Status& status) {
    check_not_damaged(status.code(), status.message());
  };
  for (const std::string_view user : fixture::kUsers) {
    check(messaging::Domain::get_user(r, user).status());
    check(messaging::Domain::chat_index(r, user, kPageSize, "").status());
    check(messaging::Domain::sync(r, user, 0, kPageSize).status());
    check(messaging::Domain::preferences(r, user, fixture::kConversation).status());
    check(messaging::Domain::device_marks(r, user, fixture::kConversation).status());
  }
  check(messaging::Domain::get_conversation(r, fixture::kConversation).status());
  check(messaging::Domain::get_conversation(r, fixture::kGroup).status());
  check(messaging::Domain::get_message(r, fixture::kConversation, 1).status());
  check(herald::workflow::Engine::dispatchable_activities(r, kPageSize).status());
  check(herald::workflow::Engine::due_timers(r, kStartMs, kPageSize).status());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  herald::fuzz::FuzzInput in(data, size);
  Replica replica;
  std::int64_t now_ms = kStartMs;
  herald::raft::Index index = 0;
  while (!in.empty()) {
    const std::uint8_t selector = in.u8();
    const std::string_view payload = in.long_string();
    apply(replica, ++index, fixture::command_of(selector, payload, now_ms));
  }
  read_back(replica);
  return 0;
}
