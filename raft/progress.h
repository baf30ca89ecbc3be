// Leader-side replication bookkeeping: per-peer Progress with flow control (Inflights), and the
// ProgressTracker that holds the membership and answers quorum questions.
//
// Progress states (as in etcd's raft):
//   probe      the leader does not know where the follower's log ends; at most one MSG_APP is
//              outstanding until a response (or a heartbeat response) arrives.
//   replicate  the follower is known to match up to `match`; the leader streams MSG_APPs and
//              advances `next` optimistically (pipelining), bounded by Inflights.
//   snapshot   a snapshot is being streamed; no MSG_APP until it completes.
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>

#include "raft/types.h"

namespace herald::raft {

// The MSG_APPs sent to one peer and not yet acknowledged, bounded by count and bytes.
class Inflights {
 public:
  Inflights(std::size_t max_msgs, std::uint64_t max_bytes);

  // Precondition: !full(). Records a message whose last entry is `last_index`.
  void add(Index last_index, std::uint64_t bytes);
  // Frees every message whose last entry is at or below `index` (it was acknowledged).
  void free_le(Index index);
  void free_first_one();
  void reset();
  // Full when the message count or the byte total reached its bound.
  [[nodiscard]] bool full() const;
  // Bytes that may still be sent before the byte bound is reached (0 when reached).
  [[nodiscard]] std::uint64_t bytes_budget() const;
  [[nodiscard]] std::size_t count() const { return records_.size(); }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }
  // Count <= max_msgs; every message but the newest fit under the byte bound when sent.
  void check_invariants() const;

 private:
  struct Record {
    Index last_index;
    std::uint64_t bytes;
  };
  std::size_t max_msgs_;
  std::uint64_t max_bytes_;
  std::deque<Record> records_;
  std::uint64_t bytes_ = 0;
};

enum class ProgressState : std::uint8_t { kProbe, kReplicate, kSnapshot };
[[nodiscard]] const char* progress_state_name(ProgressState state);

struct Progress {
  Progress(Index next_index, std::size_t max_inflight_msgs, std::uint64_t max_inflight_bytes,
           bool is_learner);

  // The peer restarted on a disk that may have lost what it acknowledged: match goes back to 0
  // (commitment only waits longer; the commit index never moves back) and a replicating peer
  // probes again from its next index.
  void forget_match();
  void become_probe();
  // The follower lost entries it had acknowledged (it was rebuilt empty): match falls to its
  // `last_index` and replication probes again from there. Precondition: last_index < match.
  void regress_to(Index last_index);
  void become_replicate();
  void become_snapshot(Index snapshot_index);
  // A successful MSG_APP_RESP for `index`: returns true when match advanced.
  bool maybe_update(Index index);
  // A rejected MSG_APP_RESP for `rejected` with the leader-side probe hint; false when stale.
  bool maybe_decr_to(Index rejected, Index probe_hint);
  // Bookkeeping after sending a MSG_APP carrying `count` entries ending at `last_index`.
  void sent_entries(std::size_t count, Index last_index, std::uint64_t bytes);
  // No MSG_APP may be sent now (probe with one outstanding, full inflights, snapshot).
  [[nodiscard]] bool paused() const;
  void check_invariants() const;

  Index match = 0;
  Index next = 1;
  ProgressState state = ProgressState::kProbe;
  Index pending_snapshot = 0;
  bool probe_sent = false;     // probe state: one MSG_APP outstanding
  bool recent_active = false;  // heard from within the current election timeout (check-quorum)
  bool learner = false;
  Inflights inflights;
};

enum class VoteResult : std::uint8_t { kPending, kWon, kLost };

// Membership (voters and learners) plus each member's Progress and votes in an election.
class ProgressTracker {
 public:
  ProgressTracker(std::size_t max_inflight_msgs, std::uint64_t max_inflight_bytes);

  // Replaces the membership; new members start at `next_index`, existing ones keep progress.
  void set_config(const raftpb::ConfState& conf_state, Index next_index);
  [[nodiscard]] raftpb::ConfState conf_state() const;
  [[nodiscard]] bool is_voter(NodeId id) const { return voters_.contains(id); }
  [[nodiscard]] bool is_learner(NodeId id) const { return learners_.contains(id); }
  [[nodiscard]] const std::set<NodeId>& voters() const { return voters_; }
  [[nodiscard]] std::size_t quorum() const { return voters_.size() / 2 + 1; }

  [[nodiscard]] Progress& at(NodeId id);
  [[nodiscard]] const Progress& at(NodeId id) const;
  [[nodiscard]] Progress* find(NodeId id);
  [[nodiscard]] std::map<NodeId, Progress>& progress() { return progress_; }
  [[nodiscard]] const std::map<NodeId, Progress>& progress() const { return progress_; }
  // Resets every member to probe at `next_index`, match 0.
  void reset_progress(Index next_index);

  // Largest index replicated on a quorum of voters (0 when there are no voters).
  [[nodiscard]] Index quorum_match() const;
  // A quorum of voters was recently active (`self` always counts).
  [[nodiscard]] bool quorum_active(NodeId self) const;
  void reset_recent_active(NodeId self);
  [[nodiscard]] bool is_quorum(const std::set<NodeId>& ids) const;

  void reset_votes() { votes_.clear(); }
  void record_vote(NodeId id, bool granted);
  [[nodiscard]] VoteResult tally() const;

 private:
  std::size_t max_inflight_msgs_;
  std::uint64_t max_inflight_bytes_;
  std::set<NodeId> voters_;
  std::set<NodeId> learners_;
  std::map<NodeId, Progress> progress_;
  std::map<NodeId, bool> votes_;
};

}  // namespace herald::raft
