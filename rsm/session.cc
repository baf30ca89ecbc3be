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

// The origin's record: the session key with incarnation 0, which no session uses.
std::string origin_key(std::uint64_t origin) {
  return session_key(origin, 0);
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

Result<bool> SessionTable::current(ApplyBatch& batch, std::uint64_t origin,
                                   std::uint64_t incarnation) {
  auto known = latest_.find(origin);
  if (known == latest_.end()) {
    HERALD_ASSIGN_OR_RETURN(auto raw, batch.get(storage::Space::kState, origin_key(origin)));
    rsmpb::SessionOrigin record;
    std::string_view payload;
    if (raw && (!open_record(*raw, payload) ||
                !record.ParseFromArray(payload.data(), static_cast<int>(payload.size())))) {
      return Status::corruption("session origin record fails its checksum");
    }
    if (latest_.size() >= kMaxCachedSessions) {
      latest_.clear();
    }
    known = latest_.emplace(origin, record.latest_incarnation()).first;
  }
  const std::uint64_t latest = known->second;
  if (incarnation < latest) {
    return false;
  }
  if (incarnation > latest) {
    if (latest != 0) {
      batch.del(storage::Space::kState, session_key(origin, latest));
      cache_.erase(std::make_pair(origin, latest));
    }
    rsmpb::SessionOrigin record;
    record.set_latest_incarnation(incarnation);
    batch.put(storage::Space::kState, origin_key(origin), seal_record(record.SerializeAsString()));
    known->second = incarnation;
  }
  return true;
}

Result<Admission> SessionTable::admit(ApplyBatch& batch, std::uint64_t origin,
                                      std::uint64_t incarnation, std::uint64_t id) {
  if (origin == 0 || incarnation == 0 || id == 0) {
    return Admission::kInvalid;  // Request ids start at 1; a peer's bytes cannot stop a replica.
  }
  HERALD_ASSIGN_OR_RETURN(const bool live, current(batch, origin, incarnation));
  if (!live) {
    return Admission::kTooOld;  // an earlier run of the origin's process
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
