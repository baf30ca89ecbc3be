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

void ApplyBatch::put(storage::Space space, std::string_view key, std::string_view value) {
  writes_.put(space, key, value);
  overlay_[std::make_pair(space, std::string(key))] = std::string(value);
}

void ApplyBatch::del(storage::Space space, std::string_view key) {
  writes_.del(space, key);
  overlay_[std::make_pair(space, std::string(key))] = std::nullopt;
}

void ApplyBatch::clear() {
  writes_.clear();
  overlay_.clear();
}

}  // namespace herald::rsm
