#include "rsm/session.h"

#include "base/encoding.h"
#include "rsm/rsm.pb.h"

namespace herald::rsm {

namespace {

constexpr char kSessionPrefix = 's';

std::string session_key(std::uint64_t origin, std::uint64_t incarnation) {
  std::string key(1, kSessionPrefix);
  put_fixed64_be(key, origin);
  put_fixed64_be(key, incarnation);
  return key;
}

Result<rsmpb::SessionRecord> load(const ApplyBatch& batch, const std::string& key) {
  HERALD_ASSIGN_OR_RETURN(auto raw, batch.get(storage::Space::kState, key));
  rsmpb::SessionRecord record;
  if (!raw) {
    return record;
  }
  std::string_view payload;
  if (!open_record(*raw, payload) ||
      !record.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return Status::corruption("session record fails its checksum");
  }
  return record;
}

// Moves the window up to `id` (> max_id), remembering the old maximum as applied.
void advance(rsmpb::SessionRecord& record, std::uint64_t id) {
  const std::uint64_t shift = id - record.max_id();
  std::uint64_t window = shift >= kSessionWindowIds ? 0 : record.window() << shift;
  if (record.max_id() != 0 && shift - 1 < kSessionWindowIds) {
    window |= std::uint64_t{1} << (shift - 1);
  }
  record.set_window(window);
  record.set_max_id(id);
}

}  // namespace

Result<Admission> SessionTable::admit(ApplyBatch& batch, std::uint64_t origin,
                                      std::uint64_t incarnation, std::uint64_t id) {
  if (origin == 0 || incarnation == 0 || id == 0) {
    return Admission::kInvalid;  // Request ids start at 1; a peer's bytes cannot stop a replica.
  }
  const std::string key = session_key(origin, incarnation);
  const auto cache_key = std::make_pair(origin, incarnation);
  auto cached = cache_.find(cache_key);
  if (cached == cache_.end()) {
    HERALD_ASSIGN_OR_RETURN(rsmpb::SessionRecord loaded, load(batch, key));
    if (cache_.size() >= kMaxCachedSessions) {
      cache_.clear();  // Old incarnations dominate a full cache; reload on demand.
    }
    cached = cache_.emplace(cache_key, std::move(loaded)).first;
  }
  rsmpb::SessionRecord& record = cached->second;
  if (id == record.max_id()) {
    return Admission::kDuplicate;
  }
  if (id > record.max_id()) {
    advance(record, id);
  } else {
    const std::uint64_t distance = record.max_id() - 1 - id;
    if (distance >= kSessionWindowIds) {
      return Admission::kTooOld;
    }
    const std::uint64_t bit = std::uint64_t{1} << distance;
    if ((record.window() & bit) != 0) {
      return Admission::kDuplicate;
    }
    record.set_window(record.window() | bit);
  }
  batch.put(storage::Space::kState, key, seal_record(record.SerializeAsString()));
  return Admission::kFresh;
}

}  // namespace herald::rsm
