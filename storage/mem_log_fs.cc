#include "storage/mem_log_fs.h"

#include <algorithm>
#include <string>
#include <utility>

namespace herald::storage {
namespace {

class MemLogFile final : public LogFile {
 public:
  MemLogFile(MemLogFs* fs, std::shared_ptr<MemLogFs::FileData> data, std::string name)
      : fs_(fs), data_(std::move(data)), name_(std::move(name)) {}

  Status write(std::uint64_t offset, std::string_view bytes) override {
    HERALD_ASSERT(offset + bytes.size() <= data_->live.size(),
                  "writes stay inside the preallocated file");
    if (fs_->take_failure()) {
      return Status::io_error("injected write failure on " + name_);
    }
    data_->live.replace(offset, bytes.size(), bytes);
    data_->unsynced.emplace_back(offset, std::string(bytes));
    ++fs_->mutable_counters().writes;
    fs_->mutable_counters().bytes_written += bytes.size();
    return Status::ok_status();
  }

  Status read(std::uint64_t offset, std::uint64_t length, std::string& out) const override {
    if (offset > data_->live.size() || length > data_->live.size() - offset) {
      return Status::io_error("read past the end of " + name_);
    }
    out.assign(data_->live, offset, length);
    return Status::ok_status();
  }

  Status sync() override {
    if (fs_->take_failure()) {
      return Status::io_error("injected sync failure on " + name_);
    }
    for (const auto& [offset, bytes] : data_->unsynced) {
      data_->durable.replace(offset, bytes.size(), bytes);
    }
    data_->unsynced.clear();
    ++fs_->mutable_counters().syncs;
    return Status::ok_status();
  }

  std::uint64_t size() const override { return data_->live.size(); }

 private:
  MemLogFs* fs_;
  std::shared_ptr<MemLogFs::FileData> data_;
  std::string name_;
};

}  // namespace

bool MemLogFs::take_failure() {
  if (failures_pending_ == 0) {
    return false;
  }
  --failures_pending_;
  ++counters_.failed_ops;
  return true;
}

Result<std::vector<std::string>> MemLogFs::list() const {
  std::vector<std::string> names;
  names.reserve(live_.size());
  for (const auto& [name, data] : live_) {
    names.push_back(name);
  }
  return names;
}

Result<std::unique_ptr<LogFile>> MemLogFs::open(std::string_view name) {
  const auto it = live_.find(name);
  if (it == live_.end()) {
    return Status::not_found("open " + std::string(name) + ": no such file");
  }
  return std::unique_ptr<LogFile>(std::make_unique<MemLogFile>(this, it->second, it->first));
}

Result<std::unique_ptr<LogFile>> MemLogFs::create(std::string_view name, std::uint64_t size_bytes) {
  if (live_.find(name) != live_.end()) {
    return Status::already_exists("create " + std::string(name) + ": file exists");
  }
  auto data = std::make_shared<FileData>();
  data->durable.assign(size_bytes, '\0');
  data->live.assign(size_bytes, '\0');
  live_.emplace(std::string(name), data);
  return std::unique_ptr<LogFile>(std::make_unique<MemLogFile>(this, data, std::string(name)));
}

Status MemLogFs::rename(std::string_view from, std::string_view to) {
  const auto it = live_.find(from);
  if (it == live_.end()) {
    return Status::not_found("rename " + std::string(from) + ": no such file");
  }
  std::shared_ptr<FileData> data = it->second;
  live_.erase(it);
  live_[std::string(to)] = std::move(data);
  return Status::ok_status();
}

Status MemLogFs::remove(std::string_view name) {
  const auto it = live_.find(name);
  if (it == live_.end()) {
    return Status::not_found("unlink " + std::string(name) + ": no such file");
  }
  live_.erase(it);
  return Status::ok_status();
}

Status MemLogFs::sync_dir() {
  durable_ = live_;
  ++counters_.dir_syncs;
  return Status::ok_status();
}

void MemLogFs::crash(Rng& rng) {
  ++counters_.crashes;
  for (auto& [name, data] : durable_) {
    std::string image = data->durable;
    const std::size_t n = data->unsynced.size();
    const std::size_t kept = static_cast<std::size_t>(rng.uniform(n + 1));
    for (std::size_t i = 0; i < kept; ++i) {
      const auto& [offset, bytes] = data->unsynced[i];
      image.replace(offset, bytes.size(), bytes);
    }
    if (kept < n && rng.chance(0.5)) {
      const auto& [offset, bytes] = data->unsynced[kept];
      const std::size_t prefix = static_cast<std::size_t>(rng.uniform(bytes.size() + 1));
      image.replace(offset, prefix, bytes, 0, prefix);
      ++counters_.torn_writes;
    }
    counters_.lost_writes += n - kept;
    data->durable = image;
    data->live = std::move(image);
    data->unsynced.clear();
  }
  live_ = durable_;
}

bool MemLogFs::corrupt(std::string_view name, std::uint64_t offset, unsigned bit) {
  const auto it = live_.find(name);
  if (it == live_.end() || offset >= it->second->live.size()) {
    return false;
  }
  const auto mask = static_cast<char>(1U << (bit % 8U));
  FileData& data = *it->second;
  data.live[offset] = static_cast<char>(data.live[offset] ^ mask);
  if (offset < data.durable.size()) {
    data.durable[offset] = static_cast<char>(data.durable[offset] ^ mask);
  }
  return true;
}

std::string MemLogFs::contents(std::string_view name) const {
  const auto it = live_.find(name);
  return it == live_.end() ? std::string() : it->second->live;
}

void MemLogFs::put_durable(std::string_view name, std::string contents) {
  auto data = std::make_shared<FileData>();
  data->durable = std::move(contents);
  data->live = data->durable;
  live_[std::string(name)] = data;
  durable_[std::string(name)] = std::move(data);
}

bool MemLogFs::durable_name(std::string_view name) const {
  return durable_.find(name) != durable_.end();
}

}  // namespace herald::storage
