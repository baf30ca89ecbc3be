// ResultsLedger: the measurements of the results scenario (docs/results.md), computed one way for
// every design it compares: Herald, and the stateless-queue baselines (sim/stateless_baseline.h).
//
// A design reports what happened, in any order, as events stamped with simulated time: the world
// (devices and their users, conversations and their members), messages accepted, messages a
// device received, push attempts and whether the provider accepted them, reads a device made and
// the read position each device shows, devices going online and offline, crashes of the processes
// that do delivery work and the delivery steps they take. figures() then sorts the events by time
// and computes, with the same definitions for every design:
//
//  - push attempts per delivered message: provider calls, over the (message, recipient user other
//    than the sender) pairs that at least one device of the recipient received;
//  - duplicate notifications: per (message, device), the provider's acceptances beyond the first;
//  - lost messages: accepted messages that some device of a member (the sender's other devices
//    included) never received by the end;
//  - read-state divergence: a user's read position in a conversation is the highest seq one of its
//    devices read (a read that took effect) or the user sent, from the moment the device read or
//    sent it; a device shows the highest position it was told (read receipts, and its user's own
//    messages it received). A (device, conversation) diverges while the device is online and
//    shows less than its user's position; an episode counts when it lasts longer than
//    kReadDivergenceGraceMs, with its whole length. Episodes still open at the end are closed
//    there and also counted as diverged at the end;
//  - time from a crash to the first resumed delivery: for each crash of a process that held
//    delivery work (units it had started and not finished), the time until another process (a
//    later incarnation counts as another) takes the first step on one of those units; a crash
//    whose units never see a step again counts as never resumed.
//
// Pure: no clock, no I/O, no randomness. Thread-safety: none.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"

namespace herald::sim {

// A read-state lag shorter than this is propagation, not divergence.
inline constexpr MonoMs kReadDivergenceGraceMs = 1'000;

// The figures of one design over one seed, or summed over seeds (add()).
struct ResultFigures {
  std::uint64_t messages = 0;              // accepted messages
  std::uint64_t recipient_deliveries = 0;  // (message, recipient other than the sender) pairs
  std::uint64_t delivered = 0;             // of them, received by a device of the recipient
  std::uint64_t push_attempts = 0;         // provider calls
  std::uint64_t pushes_accepted = 0;       // of them, accepted by the provider
  std::uint64_t duplicate_notifications = 0;
  std::uint64_t lost_messages = 0;
  std::uint64_t missing_receipts = 0;  // (message, member device) pairs never received
  std::uint64_t reads = 0;             // reads that took effect
  std::uint64_t diverged_devices = 0;  // devices with at least one counted episode
  std::uint64_t divergence_episodes = 0;
  MonoMs divergence_total_ms = 0;
  MonoMs divergence_max_ms = 0;
  std::uint64_t diverged_at_end = 0;  // (device, conversation) pairs behind at the end
  std::uint64_t crashes = 0;
  std::uint64_t crashes_with_work = 0;
  std::uint64_t never_resumed = 0;
  std::vector<MonoMs> resume_ms;  // per crash with work that resumed: crash to first step

  // Sums `other` into this (the longest episode is the longer one).
  void add(const ResultFigures& other);
  // Push attempts per delivered message; 0 when nothing was delivered.
  [[nodiscard]] double pushes_per_delivered() const;
  // The p-quantile (0..1) of resume_ms, nearest rank; -1 when there is no sample.
  [[nodiscard]] MonoMs resume_quantile_ms(double p) const;
  // Empty when the counts agree with each other (delivered <= recipient deliveries, duplicates
  // <= acceptances <= attempts, every crash with work resumed or not), else what disagrees.
  [[nodiscard]] std::string check_consistent() const;
};

class ResultsLedger {
 public:
  // ---- The world (before or after the events; figures() reads it at the end) ----
  void add_device(const std::string& device_id, const std::string& user_id);
  void add_member(const std::string& conversation_id, const std::string& user_id);

  // ---- Events ----
  // The sender was told the message is accepted. Only the first call per message counts.
  void message_accepted(MonoMs t_ms, const std::string& conversation_id, std::uint64_t seq,
                        const std::string& sender_user_id);
  // The device holds the message (the first call per (device, message) counts).
  void message_received(MonoMs t_ms, const std::string& device_id,
                        const std::string& conversation_id, std::uint64_t seq);
  // One call of the push provider for the device, about the message; accepted: the provider took
  // it (the notification reaches the device).
  void push_attempt(MonoMs t_ms, const std::string& conversation_id, std::uint64_t seq,
                    const std::string& device_id, bool accepted);
  // A read of the device up to seq took effect; t_ms is when the device made it. It moves the
  // user's position and what the reading device shows.
  void read_done(MonoMs t_ms, const std::string& device_id, const std::string& conversation_id,
                 std::uint64_t seq);
  // The device was told its user's read position in the conversation.
  void read_view(MonoMs t_ms, const std::string& device_id, const std::string& conversation_id,
                 std::uint64_t seq);
  void device_online(MonoMs t_ms, const std::string& device_id, bool online);
  // `process` crashed holding `units` of delivery work (may be empty).
  void crash(MonoMs t_ms, const std::string& process, std::vector<std::string> units);
  // `process` took a step on a unit of delivery work (a provider call, a job taken up).
  void work_step(MonoMs t_ms, const std::string& process, const std::string& unit);

  // The figures of the run, which ended at end_ms.
  [[nodiscard]] ResultFigures figures(MonoMs end_ms) const;

 private:
  using MessageKey = std::pair<std::string, std::uint64_t>;  // (conversation, seq)
  struct Accepted {
    MonoMs t_ms = 0;
    std::string sender_user_id;
  };
  struct Push {
    std::string device_id;
    MessageKey message;
    bool accepted = false;
  };
  struct Crash {
    MonoMs t_ms = 0;
    std::string process;
    std::vector<std::string> units;
  };
  struct Step {
    MonoMs t_ms = 0;
    std::string process;
    std::string unit;
  };
  enum class ReadKind : std::uint8_t { kOnline, kOffline, kView, kTruth };
  // One change of the read-state picture; device is a device id, conversation empty for online.
  struct ReadEvent {
    MonoMs t_ms = 0;
    std::uint64_t order = 0;  // insertion order, for events at the same time
    ReadKind kind = ReadKind::kView;
    std::string device_id;  // kOnline, kOffline, kView; kTruth: the reading device, if any
    std::string user_id;    // kTruth: whose position (from device_id when empty)
    std::string conversation_id;
    std::uint64_t seq = 0;
  };

  void count_messages(ResultFigures& f) const;
  void count_pushes(ResultFigures& f) const;
  void count_divergence(ResultFigures& f, MonoMs end_ms) const;
  void count_crashes(ResultFigures& f) const;
  [[nodiscard]] std::vector<ReadEvent> read_timeline() const;
  [[nodiscard]] bool is_member(const std::string& conversation_id,
                               const std::string& user_id) const;

  std::map<std::string, std::string> user_of_;                     // device -> user
  std::map<std::string, std::set<std::string>> members_;           // conversation -> users
  std::map<MessageKey, Accepted> accepted_;                        // first acceptance
  std::map<std::pair<std::string, MessageKey>, MonoMs> received_;  // (device, message) -> first
  std::vector<Push> pushes_;
  std::vector<ReadEvent> read_events_;
  std::vector<Crash> crashes_;
  std::vector<Step> steps_;
  std::uint64_t reads_ = 0;
  std::uint64_t next_order_ = 0;
};

}  // namespace herald::sim
