// A replica's state machines for the messaging fuzz targets and their seed corpus: the wiring of
// server/node_host.cc (a StateMachineRouter over the KV state machine, the workflow engine with
// the messaging workflow types, and the messaging domain with messaging::Host's workflow sink) on
// an in-memory engine, and the encoding of one fuzzed command.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "messaging/domain.h"
#include "messaging/host.h"
#include "messaging/providers.h"
#include "rsm/kv_state_machine.h"
#include "rsm/rsm.pb.h"
#include "rsm/state_machine.h"
#include "server/recording_provider.h"
#include "storage/mem_engine.h"
#include "workflow/definition.h"
#include "workflow/engine.h"

namespace herald::fuzz::messaging_seed {

// The ids the seed corpus uses and the targets read back.
inline constexpr std::string_view kUsers[] = {"alice", "bob", "carol"};
inline constexpr std::string_view kConversation = "direct:alice:bob";
inline constexpr std::string_view kGroup = "team";

// A command's selector: bit 0 picks the module, the rest advances the wall time.
inline constexpr std::uint8_t kWorkflowBit = 0x01;
inline constexpr std::int64_t kStartMs = 1'700'000'000'000;
inline constexpr std::int64_t kStepMs = 1'000;

// The committed command that one [selector][payload] record of the input stands for; advances
// `now_ms` by (selector >> 1) * kStepMs first.
inline rsmpb::Command command_of(std::uint8_t selector, std::string_view payload,
                                 std::int64_t& now_ms) {
  now_ms += static_cast<std::int64_t>(selector >> 1U) * kStepMs;
  rsmpb::Command command;
  command.mutable_module()->set_name((selector & kWorkflowBit) != 0 ? workflow::kModuleName
                                                                    : messaging::kModuleName);
  command.mutable_module()->set_payload(std::string(payload));
  command.set_wall_ms(now_ms);
  return command;
}

inline const workflow::Registry& registry() {
  static const workflow::Registry* const kRegistry = [] {
    auto* r = new workflow::Registry();  // lives as long as the process
    for (auto& type : messaging::Host::types()) {
      HERALD_ASSERT(r->add(std::move(type)).ok(), "each workflow type registers once");
    }
    return r;
  }();
  return *kRegistry;
}

// One replica's state machines on an empty in-memory engine. Nothing is proposed or posted: the
// leader-side runtime does not run.
struct Replica {
  storage::MemEngine engine;
  rsm::KvStateMachine kv;
  workflow::Engine workflows{&registry()};
  server::RecordingPushProvider push;
  server::RecordingEmailProvider email;
  ManualClock clock;
  messaging::Host host{&engine,
                       [](rsmpb::Command, rsm::ProposeCallback) {},
                       [](std::function<void()>) {},
                       &push,
                       &email,
                       &clock};
  rsm::StateMachineRouter router{&kv};

  Replica() {
    host.bind_engine(&workflows);
    HERALD_ASSERT(router.add_module(workflow::kModuleName, &workflows).ok() &&
                      router.add_module(messaging::kModuleName, host.domain()).ok(),
                  "one module of each");
  }
};

}  // namespace herald::fuzz::messaging_seed
