#include "rsm/apply_batch.h"

namespace herald::rsm {

Result<std::optional<std::string>> ApplyBatch::get(storage::Space space,
                                                   std::string_view key) const {
  const auto it = overlay_.find(std::make_pair(space, std::string(key)));
  if (it != overlay_.end()) {
    return it->second;
  }
  return base_->get(space, key);
}

Result<std::vector<ApplyBatch::Entry>> ApplyBatch::scan(storage::Space space,
                                                        std::string_view begin,
                                                        std::string_view end,
                                                        std::size_t limit) const {
  std::vector<Entry> out;
  const auto in_range = [&](std::string_view key) { return end.empty() || key < end; };
  auto staged = overlay_.lower_bound(std::make_pair(space, std::string(begin)));
  const auto staged_valid = [&] {
    return staged != overlay_.end() && staged->first.first == space &&
           in_range(staged->first.second);
  };
  auto base = base_->scan(space, begin, end);
  // A merge of two sorted runs; on equal keys the staged write wins and the engine's is skipped.
  while (out.size() < limit) {
    const bool have_staged = staged_valid();
    if (!have_staged && !base->valid()) break;
    if (have_staged && (!base->valid() || staged->first.second <= base->key())) {
      if (base->valid() && staged->first.second == base->key()) base->next();
      if (staged->second.has_value()) out.push_back(Entry{staged->first.second, *staged->second});
      ++staged;
    } else {
      out.push_back(Entry{std::string(base->key()), std::string(base->value())});
      base->next();
    }
  }
  HERALD_RETURN_IF_ERROR(base->status());
  return out;
}

void ApplyBatch::stage(storage::Space space, std::string_view key,
                       std::optional<std::string> value) {
  OverlayKey k(space, std::string(key));
  auto it = overlay_.find(k);
  undo_.emplace_back(k, it == overlay_.end() ? OverlayValue() : OverlayValue(it->second));
  overlay_[std::move(k)] = std::move(value);
}

void ApplyBatch::put(storage::Space space, std::string_view key, std::string_view value) {
  writes_.put(space, key, value);
  stage(space, key, std::string(value));
}

void ApplyBatch::del(storage::Space space, std::string_view key) {
  writes_.del(space, key);
  stage(space, key, std::nullopt);
}

void ApplyBatch::rollback(const Savepoint& point) {
  HERALD_ASSERT(point.undo <= undo_.size() && point.ops <= writes_.ops().size(),
                "rollback to a savepoint that is not in this batch");
  while (undo_.size() > point.undo) {
    auto& [key, previous] = undo_.back();
    if (previous.has_value()) {
      overlay_[key] = std::move(*previous);
    } else {
      overlay_.erase(key);
    }
    undo_.pop_back();
  }
  writes_.truncate(point.ops);
}

WriteCounts ApplyBatch::counts() const {
  WriteCounts counts;
  for (const storage::WriteBatch::Op& op : writes_.ops()) {
    ++(op.type == storage::WriteBatch::OpType::kPut ? counts.puts : counts.deletes);
  }
  counts.bytes = writes_.byte_size();
  return counts;
}

void ApplyBatch::clear() {
  writes_.clear();
  overlay_.clear();
  undo_.clear();
}

}  // namespace herald::rsm
