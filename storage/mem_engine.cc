#include "storage/mem_engine.h"

#include <utility>

#include "base/assert.h"

namespace herald::storage {
namespace {

MemEngine::Table& table(MemEngine::Image& image, Space space) {
  const auto i = static_cast<std::size_t>(space);
  HERALD_ASSERT(i < image.size(), "unknown Space");
  return image[i];
}

const MemEngine::Table& table(const MemEngine::Image& image, Space space) {
  const auto i = static_cast<std::size_t>(space);
  HERALD_ASSERT(i < image.size(), "unknown Space");
  return image[i];
}

void apply_batch(const WriteBatch& batch, MemEngine::Image& image) {
  for (const WriteBatch::Op& op : batch.ops()) {
    MemEngine::Table& t = table(image, op.space);
    switch (op.type) {
      case WriteBatch::OpType::kPut: t.insert_or_assign(op.key, op.value); break;
      case WriteBatch::OpType::kDelete: t.erase(op.key); break;
      case WriteBatch::OpType::kDeleteRange:
        t.erase(t.lower_bound(op.key), t.lower_bound(op.value));
        break;
    }
  }
}

// Iterates over an image it shares, so later writes to the engine (which copy) never disturb it.
class MemIterator final : public Iterator {
 public:
  MemIterator(std::shared_ptr<const MemEngine::Image> image, Space space, std::string_view begin,
              std::string_view end)
      : image_(std::move(image)), table_(table(*image_, space)), end_(end) {
    it_ = table_.lower_bound(begin);
  }

  [[nodiscard]] bool valid() const override {
    return it_ != table_.end() && (end_.empty() || it_->first < end_);
  }
  void next() override {
    HERALD_ASSERT(valid(), "next() on an exhausted iterator");
    ++it_;
  }
  [[nodiscard]] std::string_view key() const override { return it_->first; }
  [[nodiscard]] std::string_view value() const override { return it_->second; }
  [[nodiscard]] Status status() const override { return Status::ok_status(); }

 private:
  std::shared_ptr<const MemEngine::Image> image_;
  const MemEngine::Table& table_;
  const std::string end_;
  MemEngine::Table::const_iterator it_;
};

Result<std::optional<std::string>> lookup(const MemEngine::Image& image, Space space,
                                          std::string_view key) {
  const MemEngine::Table& t = table(image, space);
  const auto it = t.find(key);
  if (it == t.end()) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(it->second);
}

// A frozen image shared with the engine until the engine's next write.
class MemSnapshot final : public Reader {
 public:
  explicit MemSnapshot(std::shared_ptr<const MemEngine::Image> image) : image_(std::move(image)) {}

  [[nodiscard]] Result<std::optional<std::string>> get(Space space,
                                                       std::string_view key) const override {
    return lookup(*image_, space, key);
  }
  [[nodiscard]] std::unique_ptr<Iterator> scan(Space space, std::string_view begin,
                                               std::string_view end) const override {
    return std::make_unique<MemIterator>(image_, space, begin, end);
  }

 private:
  std::shared_ptr<const MemEngine::Image> image_;
};

}  // namespace

MemEngine::MemEngine() : live_(std::make_shared<Image>()) {}

Result<std::optional<std::string>> MemEngine::get(Space space, std::string_view key) const {
  return lookup(*live_, space, key);
}

std::unique_ptr<Iterator> MemEngine::scan(Space space, std::string_view begin,
                                          std::string_view end) const {
  return std::make_unique<MemIterator>(live_, space, begin, end);
}

std::unique_ptr<Reader> MemEngine::snapshot() const {
  return std::make_unique<MemSnapshot>(live_);
}

MemEngine::Image& MemEngine::mutable_live() {
  if (live_.use_count() > 1) {
    live_ = std::make_shared<Image>(*live_);
  }
  return *live_;
}

Status MemEngine::write(const WriteBatch& batch, bool sync) {
  if (full_) {
    ++counters_.full_writes;
    return Status::resource_exhausted("injected full disk: no space left on device");
  }
  if (failures_pending_ > 0) {
    --failures_pending_;
    ++counters_.failed_writes;
    return Status::io_error("injected write failure");
  }
  apply_batch(batch, mutable_live());
  if (sync) {
    // A sync makes this batch and every earlier one durable, in order.
    for (const WriteBatch& pending : unsynced_) {
      apply_batch(pending, durable_);
    }
    apply_batch(batch, durable_);
    unsynced_.clear();
    ++counters_.syncs;
  } else {
    unsynced_.push_back(batch);
  }
  if (recording_) {
    history_.emplace_back(batch, sync);
    if (history_.size() > kMaxHistoryBatches) {
      apply_batch(history_.front().first, history_base_);
      history_.erase(history_.begin());
    }
  }
  ++counters_.writes;
  counters_.bytes_written += batch.byte_size();
  return Status::ok_status();
}

void MemEngine::record_history() {
  if (recording_) {
    return;
  }
  recording_ = true;
  // Everything up to now is the base; unsynced batches are remembered like later writes.
  history_base_ = durable_;
  for (const WriteBatch& pending : unsynced_) {
    history_.emplace_back(pending, false);
  }
}

std::uint64_t MemEngine::crash_lying(Rng& rng) {
  std::size_t last_synced = history_.size();
  for (std::size_t i = history_.size(); i-- > 0;) {
    if (history_[i].second) {
      last_synced = i;
      break;
    }
  }
  if (last_synced == history_.size()) {
    crash(rng);
    return 0;
  }
  const std::size_t kept = rng.uniform(last_synced + 1);  // in [0, last_synced]
  std::uint64_t lost_synced = 0;
  durable_ = history_base_;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    if (i < kept) {
      apply_batch(history_[i].first, durable_);
    } else if (history_[i].second) {
      ++lost_synced;
    }
  }
  HERALD_ASSERT(lost_synced > 0, "a lying crash loses at least one synced write");
  counters_.lost_batches += unsynced_.size();
  counters_.lost_synced_batches += lost_synced;
  ++counters_.crashes;
  history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(kept), history_.end());
  unsynced_.clear();
  live_ = std::make_shared<Image>(durable_);
  return lost_synced;
}

void MemEngine::crash(Rng& rng) {
  const std::size_t kept = rng.uniform(unsynced_.size() + 1);
  for (std::size_t i = 0; i < kept; ++i) {
    apply_batch(unsynced_[i], durable_);
  }
  counters_.lost_batches += unsynced_.size() - kept;
  ++counters_.crashes;
  unsynced_.clear();
  // Snapshots taken before the crash keep their own image; the engine starts from a fresh one.
  live_ = std::make_shared<Image>(durable_);
}

void MemEngine::fail_writes(std::uint64_t count) {
  failures_pending_ += count;
}

bool MemEngine::corrupt(Space space, std::string_view key) {
  Table& live = table(mutable_live(), space);
  const auto it = live.find(key);
  if (it == live.end() || it->second.empty()) {
    return false;
  }
  Table& durable = table(durable_, space);
  const auto durable_it = durable.find(key);
  const bool same_on_disk = durable_it != durable.end() && durable_it->second == it->second;
  // Flip the lowest bit of the last byte: any single-bit flip defeats a CRC-32C check.
  it->second.back() = static_cast<char>(it->second.back() ^ 0x01);
  if (same_on_disk) {
    durable_it->second = it->second;
  }
  return true;
}

}  // namespace herald::storage
