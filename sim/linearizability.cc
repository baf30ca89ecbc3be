#include "sim/linearizability.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <map>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/assert.h"

namespace herald::sim {

KvOp KvOp::put(std::int64_t client, std::int64_t invoke, std::int64_t ret, std::string key,
               std::string value) {
  KvOp op;
  op.kind = KvOpKind::kPut;
  op.client_id = client;
  op.invoke_time = invoke;
  op.return_time = ret;
  op.key = std::move(key);
  op.value = std::move(value);
  return op;
}

KvOp KvOp::get(std::int64_t client, std::int64_t invoke, std::int64_t ret, std::string key,
               std::optional<std::string> observed) {
  KvOp op;
  op.kind = KvOpKind::kGet;
  op.client_id = client;
  op.invoke_time = invoke;
  op.return_time = ret;
  op.key = std::move(key);
  op.observed = std::move(observed);
  return op;
}

KvOp KvOp::del(std::int64_t client, std::int64_t invoke, std::int64_t ret, std::string key) {
  KvOp op;
  op.kind = KvOpKind::kDelete;
  op.client_id = client;
  op.invoke_time = invoke;
  op.return_time = ret;
  op.key = std::move(key);
  return op;
}

KvOp KvOp::cas(std::int64_t client, std::int64_t invoke, std::int64_t ret, std::string key,
               std::optional<std::string> expected, std::string value, bool ok) {
  KvOp op;
  op.kind = KvOpKind::kCas;
  op.client_id = client;
  op.invoke_time = invoke;
  op.return_time = ret;
  op.key = std::move(key);
  op.expected = std::move(expected);
  op.value = std::move(value);
  op.cas_ok = ok;
  return op;
}

namespace {

// Values longer than this are cut in explanations.
constexpr std::size_t kMaxQuotedValueBytes = 40;

std::string quote(const std::optional<std::string>& value) {
  if (!value) return "<absent>";
  std::string out = "\"";
  out += value->size() <= kMaxQuotedValueBytes ? *value : value->substr(0, kMaxQuotedValueBytes);
  out += value->size() <= kMaxQuotedValueBytes ? "\"" : "\"...";
  return out;
}

std::string describe_body(const KvOp& op) {
  const std::string key = quote(op.key);
  switch (op.kind) {
    case KvOpKind::kPut: return "Put(" + key + ", " + quote(op.value) + ")";
    case KvOpKind::kDelete: return "Delete(" + key + ")";
    case KvOpKind::kGet:
      return "Get(" + key + ")" + (op.outcome_known() ? " -> " + quote(op.observed) : "");
    case KvOpKind::kCas:
      return "Cas(" + key + ", " + quote(op.expected) + ", " + quote(op.value) + ")" +
             (op.outcome_known() ? (op.cas_ok ? " -> ok" : " -> failed") : "");
  }
  HERALD_ASSERT(false, "unknown KvOpKind");
}

}  // namespace

std::string describe_op(const KvOp& op) {
  const std::string ret = op.outcome_known() ? std::to_string(op.return_time) : "?";
  return "client " + std::to_string(op.client_id) + " " + describe_body(op) + " @[" +
         std::to_string(op.invoke_time) + ", " + ret + "]";
}

namespace {

// A register value interned to a small integer so that search states are cheap to copy and
// hash. kAbsent stands for "key absent".
using StateId = std::int32_t;
constexpr StateId kAbsent = 0;

// Interns the values seen on one key.
class ValueTable {
 public:
  StateId intern(const std::optional<std::string>& value) {
    if (!value) return kAbsent;
    auto [it, inserted] = ids_.try_emplace(*value, static_cast<StateId>(names_.size() + 1));
    if (inserted) names_.push_back(*value);
    return it->second;
  }
  [[nodiscard]] std::optional<std::string> name(StateId id) const {
    if (id == kAbsent) return std::nullopt;
    return names_.at(static_cast<std::size_t>(id - 1));
  }

 private:
  std::unordered_map<std::string, StateId> ids_;
  std::vector<std::string> names_;
};

// One operation of a single-key history, with its values interned.
struct RegisterOp {
  KvOpKind kind = KvOpKind::kGet;
  bool known = true;
  StateId written = kAbsent;   // Put, Cas: the value written. Delete: kAbsent.
  StateId expected = kAbsent;  // Cas.
  StateId observed = kAbsent;  // Get.
  bool cas_ok = false;
  std::size_t history_index = 0;  // Position in the caller's history.
};

// Applies `op` to a register holding `state`. Returns the new state, or nullopt when the
// response the client saw is impossible from `state`.
std::optional<StateId> step(StateId state, const RegisterOp& op) {
  switch (op.kind) {
    case KvOpKind::kPut: return op.written;
    case KvOpKind::kDelete: return kAbsent;
    case KvOpKind::kGet:
      if (op.observed != state) return std::nullopt;
      return state;
    case KvOpKind::kCas: {
      const bool matches = op.expected == state;
      if (op.known && op.cas_ok != matches) return std::nullopt;
      return matches ? op.written : state;
    }
  }
  HERALD_ASSERT(false, "unknown KvOpKind");
}

// A set of operation indices of one key, as a bitset.
class OpSet {
 public:
  explicit OpSet(std::size_t size) : words_((size + 63) / 64, 0) {}
  void set(std::size_t i) { words_[i / 64] |= bit(i); }
  void reset(std::size_t i) { words_[i / 64] &= ~bit(i); }
  [[nodiscard]] std::size_t byte_size() const { return words_.size() * sizeof(std::uint64_t); }
  [[nodiscard]] std::size_t hash() const {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (const std::uint64_t w : words_) {
      h ^= w + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    }
    return static_cast<std::size_t>(h);
  }
  bool operator==(const OpSet& other) const = default;

 private:
  static std::uint64_t bit(std::size_t i) { return std::uint64_t{1} << (i % 64); }
  std::vector<std::uint64_t> words_;
};

struct MemoEntry {
  OpSet linearized;
  StateId state;
  bool operator==(const MemoEntry& other) const = default;
};
struct MemoHash {
  std::size_t operator()(const MemoEntry& e) const {
    return e.linearized.hash() ^ (static_cast<std::size_t>(e.state) * 0xff51afd7ed558ccdULL);
  }
};

// The history of one key as a time-ordered, doubly linked list of call and return events. Node 0
// is the head sentinel; nodes 1..2n are the events. lift() unlinks an operation's call and return
// events and unlift() relinks them; unlifts must come in reverse order of lifts.
class EventList {
 public:
  static constexpr int kNil = -1;
  static constexpr int kHead = 0;

  explicit EventList(const std::vector<std::pair<std::int64_t, std::int64_t>>& intervals);

  [[nodiscard]] int first() const { return next_[kHead]; }
  [[nodiscard]] int next(int node) const { return next_[node]; }
  [[nodiscard]] bool is_call(int node) const { return is_call_[node]; }
  [[nodiscard]] std::size_t op(int node) const { return op_[node]; }

  void lift(int call) {
    unlink(call);
    unlink(match_[call]);
  }
  void unlift(int call) {
    relink(match_[call]);
    relink(call);
  }

 private:
  void unlink(int node) {
    next_[prev_[node]] = next_[node];
    if (next_[node] != kNil) prev_[next_[node]] = prev_[node];
  }
  void relink(int node) {
    next_[prev_[node]] = node;
    if (next_[node] != kNil) prev_[next_[node]] = node;
  }

  std::vector<int> next_, prev_, match_;
  std::vector<std::size_t> op_;
  std::vector<bool> is_call_;
};

EventList::EventList(const std::vector<std::pair<std::int64_t, std::int64_t>>& intervals) {
  struct Event {
    std::int64_t time;
    bool is_call;
    std::size_t op;
  };
  constexpr std::size_t kMaxOpsPerKey = std::numeric_limits<int>::max() / 2 - 1;
  HERALD_ASSERT(intervals.size() <= kMaxOpsPerKey, "too many operations on one key");
  std::vector<Event> events;
  events.reserve(intervals.size() * 2);
  for (std::size_t i = 0; i < intervals.size(); ++i) {
    events.push_back({intervals[i].first, true, i});
    events.push_back({intervals[i].second, false, i});
  }
  // At equal times calls sort before returns, so that touching operations count as concurrent.
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.time != b.time) return a.time < b.time;
    return a.is_call && !b.is_call;
  });
  const std::size_t nodes = events.size() + 1;
  next_.assign(nodes, kNil);
  prev_.assign(nodes, kNil);
  match_.assign(nodes, kNil);
  op_.assign(nodes, 0);
  is_call_.assign(nodes, false);
  std::vector<int> call_node(intervals.size(), kNil);
  for (std::size_t i = 0; i < events.size(); ++i) {
    const int node = static_cast<int>(i) + 1;
    prev_[node] = node - 1;
    next_[node - 1] = node;
    op_[node] = events[i].op;
    is_call_[node] = events[i].is_call;
    if (events[i].is_call) {
      call_node[events[i].op] = node;
    } else {
      match_[call_node[events[i].op]] = node;
    }
  }
}

// What the search knew when it got furthest before an operation's return forced backtracking.
struct Failure {
  std::size_t depth = 0;                // Operations linearized at that point.
  StateId state = kAbsent;              // Register value at that point.
  std::size_t blocked_op = 0;           // The operation whose return was reached unlinearized.
  std::vector<std::size_t> candidates;  // Operations pending then (including blocked_op).
};

enum class SearchOutcome : std::uint8_t { kLinearizable, kIllegal, kStepBound, kMemoBound };

// Wing & Gong's search with Lowe's memo over the events of one key.
class KeySearch {
 public:
  KeySearch(const std::vector<RegisterOp>& ops, EventList& events, const CheckOptions& options)
      : ops_(ops), events_(events), options_(options), linearized_(ops.size()) {}

  [[nodiscard]] SearchOutcome run();
  [[nodiscard]] std::int64_t steps() const { return steps_; }
  [[nodiscard]] const Failure& failure() const { return failure_; }

 private:
  struct Frame {
    int call;
    StateId state_before;
  };
  // Tries to linearize the operation called at `node` next. Returns true when it did.
  bool try_linearize(int node);
  void note_failure(int return_node);

  const std::vector<RegisterOp>& ops_;
  EventList& events_;
  const CheckOptions& options_;
  OpSet linearized_;
  StateId state_ = kAbsent;
  std::vector<Frame> stack_;
  std::unordered_set<MemoEntry, MemoHash> memo_;
  std::int64_t memo_bytes_ = 0;
  std::int64_t steps_ = 0;
  Failure failure_;
  bool failed_once_ = false;
};

bool KeySearch::try_linearize(int node) {
  const std::size_t op = events_.op(node);
  const std::optional<StateId> next_state = step(state_, ops_[op]);
  if (!next_state) return false;
  linearized_.set(op);
  if (!memo_.insert(MemoEntry{linearized_, *next_state}).second) {
    // This (linearized set, state) pair was explored before and led nowhere.
    linearized_.reset(op);
    return false;
  }
  // Rough footprint of a memo entry: the bitset, the entry and the hash node around it.
  constexpr std::int64_t kMemoNodeOverheadBytes = 48;
  memo_bytes_ += static_cast<std::int64_t>(linearized_.byte_size() + sizeof(MemoEntry)) +
                 kMemoNodeOverheadBytes;
  stack_.push_back({node, state_});
  state_ = *next_state;
  events_.lift(node);
  return true;
}

void KeySearch::note_failure(int return_node) {
  if (failed_once_ && stack_.size() <= failure_.depth) return;
  failed_once_ = true;
  failure_.depth = stack_.size();
  failure_.state = state_;
  failure_.blocked_op = events_.op(return_node);
  failure_.candidates.clear();
  for (int n = events_.first(); n != return_node; n = events_.next(n)) {
    if (events_.is_call(n)) failure_.candidates.push_back(events_.op(n));
  }
}

SearchOutcome KeySearch::run() {
  int node = events_.first();
  while (events_.first() != EventList::kNil) {
    if (++steps_ > options_.max_search_steps_per_key) return SearchOutcome::kStepBound;
    if (memo_bytes_ > options_.max_memo_bytes_per_key) return SearchOutcome::kMemoBound;
    HERALD_ASSERT(node != EventList::kNil, "a call event is always followed by its return");
    if (events_.is_call(node)) {
      node = try_linearize(node) ? events_.first() : events_.next(node);
      continue;
    }
    // An operation returned before being linearized: undo the most recent choice.
    note_failure(node);
    if (stack_.empty()) return SearchOutcome::kIllegal;
    const Frame frame = stack_.back();
    stack_.pop_back();
    state_ = frame.state_before;
    linearized_.reset(events_.op(frame.call));
    events_.unlift(frame.call);
    node = events_.next(frame.call);
  }
  return SearchOutcome::kLinearizable;
}

// The operations of one key, ready to search.
struct KeyHistory {
  std::string key;
  std::vector<RegisterOp> ops;
  std::vector<std::pair<std::int64_t, std::int64_t>> intervals;
  ValueTable values;
};

KeyHistory build_key_history(const std::string& key, const std::vector<KvOp>& history,
                             const std::vector<std::size_t>& indices) {
  KeyHistory out;
  out.key = key;
  for (const std::size_t i : indices) {
    const KvOp& op = history[i];
    // A Get whose answer never arrived constrains nothing.
    if (op.kind == KvOpKind::kGet && !op.outcome_known()) continue;
    RegisterOp r;
    r.kind = op.kind;
    r.known = op.outcome_known();
    r.history_index = i;
    if (op.kind == KvOpKind::kPut || op.kind == KvOpKind::kCas)
      r.written = out.values.intern(op.value);
    if (op.kind == KvOpKind::kCas) {
      r.expected = out.values.intern(op.expected);
      r.cas_ok = op.cas_ok;
    }
    if (op.kind == KvOpKind::kGet) r.observed = out.values.intern(op.observed);
    out.ops.push_back(r);
    out.intervals.emplace_back(op.invoke_time, op.return_time);
  }
  return out;
}

// Removes the writes of unknown outcome whose effect no operation can observe. Such a write W
// leaves the key at a value w that no Get reads and no Cas expects. If a linearization places W
// somewhere, then up to the next write nothing reads w, so dropping W (and moving any unknown-
// outcome Cas that failed against w to the end) leaves a linearization without W; conversely W
// may always go last, with no effect. The argument breaks when a Cas is known to have failed (it
// may have failed because of w), so keys with one are left whole. Fewer pending writes make the
// search far smaller: a lost write otherwise stays a candidate at every later step.
void prune_unobserved_lost_writes(KeyHistory& kh) {
  std::unordered_set<StateId> observed;
  for (const RegisterOp& op : kh.ops) {
    if (op.kind == KvOpKind::kCas && op.known && !op.cas_ok) return;
    if (op.kind == KvOpKind::kGet) observed.insert(op.observed);
    if (op.kind == KvOpKind::kCas) observed.insert(op.expected);
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < kh.ops.size(); ++i) {
    const RegisterOp& op = kh.ops[i];
    const bool unobserved_lost_write =
        !op.known && op.kind != KvOpKind::kGet && !observed.contains(op.written);
    if (unobserved_lost_write) continue;
    kh.ops[kept] = op;
    kh.intervals[kept] = kh.intervals[i];
    ++kept;
  }
  kh.ops.resize(kept);
  kh.intervals.resize(kept);
}

// Returns the first operation that observes a value no operation of the key ever writes: a
// completed Get of it, or a Cas reported ok that expected it. Such a history is illegal whatever
// the order, so it needs no search (which could be exponential when many writes overlap).
std::optional<std::size_t> find_read_of_unwritten_value(const KeyHistory& kh) {
  std::unordered_set<StateId> written = {kAbsent};
  for (const RegisterOp& op : kh.ops) {
    if (op.kind == KvOpKind::kPut || op.kind == KvOpKind::kCas) written.insert(op.written);
  }
  for (std::size_t i = 0; i < kh.ops.size(); ++i) {
    const RegisterOp& op = kh.ops[i];
    const bool reads_get = op.kind == KvOpKind::kGet && !written.contains(op.observed);
    const bool reads_cas =
        op.kind == KvOpKind::kCas && op.known && op.cas_ok && !written.contains(op.expected);
    if (reads_get || reads_cas) return i;
  }
  return std::nullopt;
}

std::string explain_failure(const KeyHistory& kh, const Failure& f,
                            const std::vector<KvOp>& history) {
  std::string out = "key " + quote(kh.key) + " is not linearizable: the longest linearizable " +
                    "prefix found orders " + std::to_string(f.depth) + " of " +
                    std::to_string(kh.ops.size()) + " operations and leaves the key at " +
                    quote(kh.values.name(f.state)) + "; from there no pending operation can " +
                    "take effect before #" + std::to_string(kh.ops[f.blocked_op].history_index) +
                    " returns. Pending operations:";
  int listed = 0;
  for (const std::size_t op : f.candidates) {
    if (listed == kMaxExplainedOps) {
      out += "\n  ... and " + std::to_string(f.candidates.size() - listed) + " more";
      break;
    }
    const std::size_t index = kh.ops[op].history_index;
    out += "\n  #" + std::to_string(index) + " " + describe_op(history[index]);
    ++listed;
  }
  return out;
}

std::string explain_bound(const std::string& key, SearchOutcome outcome,
                          const CheckOptions& options) {
  const std::string bound =
      outcome == SearchOutcome::kStepBound
          ? "search step bound (" + std::to_string(options.max_search_steps_per_key) + " steps)"
          : "memo memory bound (" + std::to_string(options.max_memo_bytes_per_key) + " bytes)";
  return "key " + quote(key) + " exceeded the " + bound + "; its history was not decided";
}

struct KeyVerdict {
  SearchOutcome outcome = SearchOutcome::kLinearizable;
  std::string explanation;  // Empty when linearizable.
  std::int64_t search_steps = 0;
};

KeyVerdict check_key(const std::string& key, const std::vector<KvOp>& history,
                     const std::vector<std::size_t>& indices, const CheckOptions& options) {
  KeyHistory kh = build_key_history(key, history, indices);
  if (const std::optional<std::size_t> op = find_read_of_unwritten_value(kh)) {
    const std::size_t index = kh.ops[*op].history_index;
    return {SearchOutcome::kIllegal,
            "key " + quote(key) + " is not linearizable: #" + std::to_string(index) + " " +
                describe_op(history[index]) + " observes a value no operation on the key writes",
            0};
  }
  if (options.prune_unobserved_lost_writes) prune_unobserved_lost_writes(kh);
  EventList events(kh.intervals);
  KeySearch search(kh.ops, events, options);
  KeyVerdict v;
  v.outcome = search.run();
  v.search_steps = search.steps();
  if (v.outcome == SearchOutcome::kIllegal) {
    v.explanation = explain_failure(kh, search.failure(), history);
  } else if (v.outcome != SearchOutcome::kLinearizable) {
    v.explanation = explain_bound(key, v.outcome, options);
  }
  return v;
}

}  // namespace

CheckResult check_kv_history(const std::vector<KvOp>& history) {
  return check_kv_history(history, CheckOptions{});
}

CheckResult check_kv_history(const std::vector<KvOp>& history, const CheckOptions& options) {
  HERALD_ASSERT(options.max_search_steps_per_key > 0, "step bound must be positive");
  std::map<std::string, std::vector<std::size_t>> by_key;  // Ordered: verdicts are deterministic.
  for (std::size_t i = 0; i < history.size(); ++i) {
    HERALD_ASSERT(history[i].invoke_time <= history[i].return_time,
                  "operation returns before it is invoked");
    by_key[history[i].key].push_back(i);
  }
  CheckResult result;
  std::string unknown;
  for (const auto& [key, indices] : by_key) {
    KeyVerdict v = check_key(key, history, indices, options);
    result.search_steps += v.search_steps;
    if (v.outcome == SearchOutcome::kIllegal) {
      result.verdict = CheckResult::kIllegal;
      result.illegal_key = key;
      result.explanation = std::move(v.explanation);
      return result;
    }
    if (v.outcome != SearchOutcome::kLinearizable && unknown.empty()) {
      unknown = std::move(v.explanation);
    }
  }
  if (!unknown.empty()) {
    result.verdict = CheckResult::kUnknown;
    result.explanation = unknown;
    return result;
  }
  result.explanation = std::to_string(history.size()) + " operations over " +
                       std::to_string(by_key.size()) + " keys are linearizable";
  return result;
}

}  // namespace herald::sim
