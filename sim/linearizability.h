// Linearizability checker for histories of Herald's key-value register API.
//
// A history is the list of operations that clients issued against the store, each with the time
// its client invoked it and the time it saw the response. The history is linearizable when every
// operation can be given a single instant between its invocation and its response such that
// executing the operations one at a time, in the order of those instants, against a plain map
// produces exactly the responses the clients saw.
//
// The search is Wing & Gong's backtracking algorithm with Lowe's memoization of
// (set of linearized operations, register state) pairs. Keys are independent registers, so the
// history is split by key and each key is checked on its own (P-compositionality). See
// docs/linearizability.md for the model and the bounds.
//
// Contract:
//  - Times are int64 in any unit (simulated milliseconds, sequence numbers). Operation A precedes
//    operation B only when A.return_time < B.invoke_time; equal times count as concurrent.
//  - An operation whose outcome the client never learned (timeout, lost connection) has
//    return_time == kUnknownReturnTime. A write (Put, Delete, CompareAndSet) of unknown outcome may
//    take effect at any instant after its invocation, or never. A Get of unknown outcome tells
//    nothing and is ignored.
//  - Every key starts absent.
//  - The search of one key is bounded by CheckOptions::max_search_steps_per_key and the memory of
//    its memo by CheckOptions::max_memo_bytes_per_key; past either bound the verdict is kUnknown,
//    never a guess.
// Preconditions (asserted): invoke_time <= return_time for every operation.
// Thread-safety: check_kv_history() is a pure function of its input; concurrent calls are safe.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace herald::sim {

// The return time of an operation whose outcome the client never learned.
inline constexpr std::int64_t kUnknownReturnTime = std::numeric_limits<std::int64_t>::max();

// Search steps (one step = one attempt to linearize or to backtrack) allowed per key by default.
inline constexpr std::int64_t kMaxSearchSteps = 5'000'000;
// Memory allowed per key by default for the memo of visited (linearized set, state) pairs.
inline constexpr std::int64_t kMaxMemoBytes = 512LL * 1024 * 1024;
// At most this many operations are listed in the explanation of an illegal history.
inline constexpr int kMaxExplainedOps = 8;

enum class KvOpKind : std::uint8_t {
  kPut,     // key := value.
  kGet,     // Observes the value of key, or its absence.
  kDelete,  // key := absent. Deleting an absent key is not an error.
  kCas,     // If key's value equals `expected` (nullopt: key absent), key := value and ok.
};

struct KvOp {
  KvOpKind kind = KvOpKind::kGet;
  std::int64_t client_id = 0;  // Used only to describe operations in explanations.
  std::int64_t invoke_time = 0;
  std::int64_t return_time = kUnknownReturnTime;
  std::string key;
  // Put and Cas: the value written. Unused for Get and Delete.
  std::string value;
  // Cas: the value the key must hold for the swap to happen; nullopt means "key absent".
  std::optional<std::string> expected;
  // Get with a known outcome: the value the client read; nullopt means the key was absent.
  std::optional<std::string> observed;
  // Cas with a known outcome: whether the client was told the swap happened.
  bool cas_ok = false;

  [[nodiscard]] bool outcome_known() const { return return_time != kUnknownReturnTime; }

  // Builders. Pass kUnknownReturnTime as `ret` for an operation of unknown outcome.
  [[nodiscard]] static KvOp put(std::int64_t client, std::int64_t invoke, std::int64_t ret,
                                std::string key, std::string value);
  [[nodiscard]] static KvOp get(std::int64_t client, std::int64_t invoke, std::int64_t ret,
                                std::string key, std::optional<std::string> observed);
  [[nodiscard]] static KvOp del(std::int64_t client, std::int64_t invoke, std::int64_t ret,
                                std::string key);
  [[nodiscard]] static KvOp cas(std::int64_t client, std::int64_t invoke, std::int64_t ret,
                                std::string key, std::optional<std::string> expected,
                                std::string value, bool ok);
};

struct CheckOptions {
  std::int64_t max_search_steps_per_key = kMaxSearchSteps;
  std::int64_t max_memo_bytes_per_key = kMaxMemoBytes;
  // Drop writes of unknown outcome whose value no operation observes before searching (sound;
  // see prune_unobserved_lost_writes in the implementation). Off only to cross-check the search.
  bool prune_unobserved_lost_writes = true;
};

struct CheckResult {
  enum Verdict : std::uint8_t {
    kOk,       // Every key's history is linearizable.
    kIllegal,  // Some key's history is not linearizable; see illegal_key and explanation.
    kUnknown,  // No key is illegal, but some key's search exceeded a bound.
  };
  Verdict verdict = kOk;
  // kOk: a summary. kIllegal: the key, the longest linearizable prefix found and the operations
  // that could not be linearized after it. kUnknown: the key whose search hit which bound.
  std::string explanation;
  // kIllegal: the first key (in byte order) whose history is not linearizable. Empty otherwise.
  std::string illegal_key;
  // Search steps taken over all keys checked.
  std::int64_t search_steps = 0;
};

// Checks `history` (in any order) for linearizability against a map of independent registers.
[[nodiscard]] CheckResult check_kv_history(const std::vector<KvOp>& history);
[[nodiscard]] CheckResult check_kv_history(const std::vector<KvOp>& history,
                                           const CheckOptions& options);

// One line describing `op`, e.g. `client 3 Get("k") -> "v1" @[10, 15]`.
[[nodiscard]] std::string describe_op(const KvOp& op);

}  // namespace herald::sim
