#include "storage/log_store.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "base/assert.h"
#include "base/encoding.h"

namespace herald::storage {
namespace {

constexpr std::size_t kFixed64Bytes = 8;
constexpr std::size_t kLogKeyBytes = kFixed64Bytes;
// No real log reaches this index (2^62: a million entries a second for 146,000 years); a larger
// last index is a damaged key, and would overflow the index arithmetic after it.
constexpr raft::Index kMaxLogIndex = raft::Index{1} << 62U;
constexpr std::size_t kTruncatedPayloadBytes = 2 * kFixed64Bytes;  // index, term

std::string context(std::string_view what, raft::Index index) {
  return std::string(what) + " " + std::to_string(index);
}

// Opens a sealed protobuf record; kCorruption on a failed checksum or an undecodable payload.
template <typename Proto>
Status decode_sealed(std::string_view record, std::string_view what, Proto& out) {
  std::string_view payload;
  if (!open_record(record, payload)) {
    return Status::corruption(std::string(what) + ": checksum mismatch");
  }
  if (!out.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption(std::string(what) + ": undecodable record");
  }
  return Status::ok_status();
}

Result<raftpb::Entry> decode_entry(std::string_view record, raft::Index index) {
  raftpb::Entry entry;
  HERALD_RETURN_IF_ERROR(decode_sealed(record, context("log entry", index), entry));
  if (entry.index() != index) {
    return Status::corruption(context("log entry", index) + ": holds index " +
                              std::to_string(entry.index()));
  }
  return entry;
}

std::string encode_truncated(raft::Index index, raft::Term term) {
  std::string payload;
  put_fixed64_be(payload, index);
  put_fixed64_be(payload, term);
  return seal_record(payload);
}

// Admits entries into an entries() result: at least one, then while the total stays <= max.
class ByteBudget {
 public:
  explicit ByteBudget(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}
  [[nodiscard]] bool admit(std::uint64_t bytes) {
    if (count_ > 0 && used_ + bytes > max_bytes_) {
      return false;
    }
    used_ += bytes;
    ++count_;
    return true;
  }

 private:
  std::uint64_t max_bytes_;
  std::uint64_t used_ = 0;
  std::uint64_t count_ = 0;
};

// Appends the engine's entries in [lo, hi) to `out` while `budget` admits them. Every index in
// the range must be present and intact.
Status scan_log(const Engine& engine, raft::Index lo, raft::Index hi, ByteBudget& budget,
                std::vector<raftpb::Entry>& out) {
  const std::unique_ptr<Iterator> it = engine.scan(Space::kLog, log_key(lo), log_key(hi));
  raft::Index next = lo;
  for (; it->valid() && next < hi; it->next(), ++next) {
    if (it->key() != log_key(next)) {
      return Status::corruption(context("missing log entry", next));
    }
    HERALD_ASSIGN_OR_RETURN(raftpb::Entry entry, decode_entry(it->value(), next));
    if (!budget.admit(entry.ByteSizeLong())) {
      return Status::ok_status();
    }
    out.push_back(std::move(entry));
  }
  HERALD_RETURN_IF_ERROR(it->status());
  if (next < hi) {
    return Status::corruption(context("missing log entry", next));
  }
  return Status::ok_status();
}

}  // namespace

std::string log_key(raft::Index index) {
  std::string key;
  key.reserve(kLogKeyBytes);
  put_fixed64_be(key, index);
  return key;
}

LogStore::LogStore(Engine* engine, std::uint64_t entry_cache_bytes)
    : engine_(engine), entry_cache_bytes_max_(entry_cache_bytes) {}

Result<std::unique_ptr<LogStore>> LogStore::open(Engine* engine, std::uint64_t entry_cache_bytes) {
  HERALD_ASSERT(engine != nullptr, "LogStore needs an engine");
  std::unique_ptr<LogStore> store(new LogStore(engine, entry_cache_bytes));
  HERALD_RETURN_IF_ERROR(store->recover());
  return store;
}

Status LogStore::recover() {
  HERALD_ASSIGN_OR_RETURN(const auto hs_record, engine_->get(Space::kMeta, kHardStateKey));
  if (hs_record.has_value()) {
    HERALD_RETURN_IF_ERROR(decode_sealed(*hs_record, "hard state", hard_state_));
  }
  HERALD_ASSIGN_OR_RETURN(const auto truncated_record, engine_->get(Space::kMeta, kTruncatedKey));
  if (truncated_record.has_value()) {
    std::string_view payload;
    if (!open_record(*truncated_record, payload) || payload.size() != kTruncatedPayloadBytes) {
      return Status::corruption("compaction point: damaged record");
    }
    truncated_index_ = get_fixed64_be(payload);
    truncated_term_ = get_fixed64_be(payload.substr(kFixed64Bytes));
    if (truncated_index_ > kMaxLogIndex) {
      // No log reaches it; the first index after it would not even be representable.
      return Status::corruption("compaction point: index " + std::to_string(truncated_index_) +
                                " is beyond any log");
    }
  }
  HERALD_ASSIGN_OR_RETURN(last_index_, find_last_index());
  if (last_index_ > truncated_index_) {
    // The newest entry is the one a crash most likely damaged: check it before trusting it.
    HERALD_RETURN_IF_ERROR(read_entry(last_index_).status());
  }
  if (hard_state_.commit() > last_index_) {
    return Status::corruption("hard state commit " + std::to_string(hard_state_.commit()) +
                              " beyond last index " + std::to_string(last_index_));
  }
  return Status::ok_status();
}

namespace {

Result<std::optional<raft::Index>> first_log_key_at_or_after(const Reader& reader, raft::Index i) {
  const std::unique_ptr<Iterator> it = reader.scan(Space::kLog, log_key(i), "");
  if (!it->valid()) {
    HERALD_RETURN_IF_ERROR(it->status());
    return std::optional<raft::Index>();
  }
  if (it->key().size() != kLogKeyBytes) {
    return Status::corruption("log key of " + std::to_string(it->key().size()) + " bytes");
  }
  return std::optional<raft::Index>(get_fixed64_be(it->key()));
}

// The largest index in Space::kLog, given that a key `first` exists: at most 64 seeks, reading
// keys only.
Result<raft::Index> largest_log_key(const Reader& reader, raft::Index first) {
  // Invariant: a key `best` exists and no key is >= `none_from`.
  raft::Index best = first;
  raft::Index none_from = std::numeric_limits<raft::Index>::max();
  // Written as a difference: best + 1 overflows for a (damaged) key at the largest index.
  while (none_from - best > 1) {
    const raft::Index mid = best + (none_from - best) / 2;
    HERALD_ASSIGN_OR_RETURN(const auto found, first_log_key_at_or_after(reader, mid));
    if (found.has_value()) {
      best = *found;
    } else {
      none_from = mid;
    }
  }
  if (best > kMaxLogIndex) {
    return Status::corruption(context("log key at index", best) + " is beyond any real log");
  }
  return best;
}

}  // namespace

// The largest index in Space::kLog; the log must start right after the compaction point.
Result<raft::Index> LogStore::find_last_index() const {
  HERALD_ASSIGN_OR_RETURN(const auto first,
                          first_log_key_at_or_after(*engine_, truncated_index_ + 1));
  if (!first.has_value()) {
    return truncated_index_;
  }
  if (*first != truncated_index_ + 1) {
    return Status::corruption(context("log starts at", *first) + ", compaction point " +
                              std::to_string(truncated_index_));
  }
  return largest_log_key(*engine_, *first);
}

Result<SalvagedLog> LogStore::salvage(const Reader& reader) {
  SalvagedLog out;
  HERALD_ASSIGN_OR_RETURN(const auto hs_record, reader.get(Space::kMeta, kHardStateKey));
  if (hs_record.has_value()) {
    HERALD_RETURN_IF_ERROR(decode_sealed(*hs_record, "hard state", out.hard_state));
  }
  out.last_index = out.hard_state.commit();
  // A damaged compaction point only lowers what is known; the keys below still tell.
  HERALD_ASSIGN_OR_RETURN(const auto truncated_record, reader.get(Space::kMeta, kTruncatedKey));
  std::string_view payload;
  if (truncated_record.has_value() && open_record(*truncated_record, payload) &&
      payload.size() == kTruncatedPayloadBytes) {
    out.last_index = std::max(out.last_index, get_fixed64_be(payload));
  }
  HERALD_ASSIGN_OR_RETURN(const auto first, first_log_key_at_or_after(reader, 0));
  if (first.has_value()) {
    HERALD_ASSIGN_OR_RETURN(const raft::Index last, largest_log_key(reader, *first));
    out.last_index = std::max(out.last_index, last);
  }
  return out;
}

Result<raft::InitialState> LogStore::initial_state() const {
  raft::InitialState state;
  state.hard_state = hard_state_;
  state.conf_state = conf_state_;
  return state;
}

raftpb::SnapshotMetadata LogStore::snapshot_metadata() const {
  if (snapshot_meta_.has_value() && snapshot_meta_->index() >= truncated_index_) {
    return *snapshot_meta_;
  }
  raftpb::SnapshotMetadata meta;
  meta.set_index(truncated_index_);
  meta.set_term(truncated_term_);
  return meta;
}

void LogStore::set_snapshot_metadata(const raftpb::SnapshotMetadata& meta) {
  HERALD_ASSERT(meta.index() >= truncated_index_, "snapshot metadata below the compaction point");
  snapshot_meta_ = meta;
}

void LogStore::set_conf_state(const raftpb::ConfState& conf_state) {
  conf_state_ = conf_state;
}

raft::Index LogStore::cache_first_index() const {
  return cache_.empty() ? last_index_ + 1 : cache_.front().entry.index();
}

const LogStore::CachedEntry* LogStore::cached(raft::Index i) const {
  const raft::Index first = cache_first_index();
  if (i < first || i > last_index_) {
    return nullptr;
  }
  return &cache_[static_cast<std::size_t>(i - first)];
}

Result<raftpb::Entry> LogStore::read_entry(raft::Index i) const {
  if (const CachedEntry* c = cached(i)) {
    return c->entry;
  }
  HERALD_ASSIGN_OR_RETURN(const auto record, engine_->get(Space::kLog, log_key(i)));
  if (!record.has_value()) {
    return Status::corruption(context("missing log entry", i));
  }
  return decode_entry(*record, i);
}

Result<raft::Term> LogStore::term(raft::Index i) const {
  if (i == truncated_index_) {
    return truncated_term_;
  }
  if (i < truncated_index_) {
    return Status::compacted(context("term of compacted index", i));
  }
  if (i > last_index_) {
    return Status::unavailable(context("term beyond last index", i));
  }
  if (const CachedEntry* c = cached(i)) {
    return c->entry.term();
  }
  HERALD_ASSIGN_OR_RETURN(const raftpb::Entry entry, read_entry(i));
  return entry.term();
}

Result<std::vector<raftpb::Entry>> LogStore::entries(raft::Index lo, raft::Index hi,
                                                     std::uint64_t max_bytes) const {
  HERALD_ASSERT(lo <= hi, "entries() needs lo <= hi");
  if (lo <= truncated_index_) {
    return Status::compacted(context("entries from compacted index", lo));
  }
  if (hi > last_index_ + 1) {
    return Status::unavailable(context("entries up to", hi) + " beyond last index " +
                               std::to_string(last_index_));
  }
  std::vector<raftpb::Entry> out;
  ByteBudget budget(max_bytes);
  // [lo, engine_end) is older than the cache and read from the engine; the rest is cached.
  const raft::Index engine_end = std::min(hi, cache_first_index());
  raft::Index next = lo;
  if (next < engine_end) {
    HERALD_RETURN_IF_ERROR(scan_log(*engine_, next, engine_end, budget, out));
    next = lo + out.size();
    if (next < engine_end) {
      return out;  // the budget ran out inside the engine range
    }
  }
  for (; next < hi; ++next) {
    const CachedEntry* c = cached(next);
    HERALD_ASSERT(c != nullptr, "entry cache must cover the log tail");
    if (!budget.admit(c->bytes)) {
      break;
    }
    out.push_back(c->entry);
  }
  return out;
}

void LogStore::stage_entries(const std::vector<raftpb::Entry>& entries, raft::Index base_truncated,
                             raft::Index base_last, WriteBatch& batch) const {
  const raft::Index first = entries.front().index();
  HERALD_ASSERT(first > base_truncated, "appending at or below the compaction point");
  HERALD_ASSERT(first <= base_last + 1, "appending would leave a gap in the log");
  if (first <= base_last) {
    // A conflicting suffix is replaced: nothing of it may survive beyond the new entries.
    batch.delete_range(Space::kLog, log_key(first), log_key(base_last + 1));
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const raftpb::Entry& entry = entries[i];
    HERALD_ASSERT(entry.index() == first + i, "entries must have consecutive indexes");
    batch.put(Space::kLog, log_key(entry.index()), seal_record(entry.SerializeAsString()));
  }
}

Status LogStore::save(const std::optional<raftpb::HardState>& hs,
                      const std::optional<raftpb::SnapshotMetadata>& snapshot,
                      const std::vector<raftpb::Entry>& entries, bool sync,
                      const WriteBatch* extra) {
  WriteBatch batch;
  raft::Index base_truncated = truncated_index_;
  raft::Index base_last = last_index_;
  if (snapshot.has_value()) {
    HERALD_ASSERT(snapshot->index() >= truncated_index_, "snapshot behind the compaction point");
    batch.delete_range(Space::kLog, log_key(0),
                       log_key(std::max(last_index_, snapshot->index()) + 1));
    batch.put(Space::kMeta, kTruncatedKey, encode_truncated(snapshot->index(), snapshot->term()));
    base_truncated = snapshot->index();
    base_last = snapshot->index();
  }
  if (!entries.empty()) {
    stage_entries(entries, base_truncated, base_last, batch);
  }
  if (hs.has_value()) {
    batch.put(Space::kMeta, kHardStateKey, seal_record(hs->SerializeAsString()));
  }
  if (extra != nullptr) {
    batch.append(*extra);
  }
  HERALD_RETURN_IF_ERROR(engine_->write(batch, sync));

  // The write is in: only now does the in-memory view follow it.
  if (snapshot.has_value()) {
    truncated_index_ = snapshot->index();
    truncated_term_ = snapshot->term();
    last_index_ = snapshot->index();
    snapshot_meta_ = *snapshot;
    cache_.clear();
    cache_bytes_ = 0;
  }
  if (!entries.empty()) {
    cache_append(entries);
    last_index_ = entries.back().index();
  }
  if (hs.has_value()) {
    hard_state_ = *hs;
  }
  return Status::ok_status();
}

void LogStore::cache_append(const std::vector<raftpb::Entry>& entries) {
  const raft::Index first = entries.front().index();
  while (!cache_.empty() && cache_.back().entry.index() >= first) {
    cache_bytes_ -= cache_.back().bytes;
    cache_.pop_back();
  }
  HERALD_ASSERT(cache_.empty() || cache_.back().entry.index() + 1 == first,
                "entry cache must stay contiguous");
  for (const raftpb::Entry& entry : entries) {
    const std::uint64_t bytes = entry.ByteSizeLong();
    cache_.push_back(CachedEntry{entry, bytes});
    cache_bytes_ += bytes;
  }
  while (!cache_.empty() && cache_bytes_ > entry_cache_bytes_max_) {
    cache_bytes_ -= cache_.front().bytes;
    cache_.pop_front();
  }
}

void LogStore::cache_drop_through(raft::Index upto) {
  while (!cache_.empty() && cache_.front().entry.index() <= upto) {
    cache_bytes_ -= cache_.front().bytes;
    cache_.pop_front();
  }
}

Status LogStore::compact(raft::Index upto) {
  HERALD_ASSERT(upto <= last_index_, "compacting beyond the last index");
  HERALD_ASSERT(upto <= snapshot_metadata().index(), "compacting beyond the applied state");
  if (upto <= truncated_index_) {
    return Status::ok_status();
  }
  HERALD_ASSIGN_OR_RETURN(const raft::Term upto_term, term(upto));
  WriteBatch batch;
  batch.delete_range(Space::kLog, log_key(first_index()), log_key(upto + 1));
  batch.put(Space::kMeta, kTruncatedKey, encode_truncated(upto, upto_term));
  HERALD_RETURN_IF_ERROR(engine_->write(batch, /*sync=*/false));
  truncated_index_ = upto;
  truncated_term_ = upto_term;
  cache_drop_through(upto);
  return Status::ok_status();
}

}  // namespace herald::storage
