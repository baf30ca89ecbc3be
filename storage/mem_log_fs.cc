#include "storage/mem_log_fs.h"

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include "base/assert.h"
#include "base/status.h"

namespace herald::storage {
namespace {

class MemLogFile final : public LogFile {
 public:
  MemLogFile(MemLogFs* fs, std::shared_ptr<MemLogFs::FileData> data, std::string name)
      : fs_(fs), data_(std::move(data)), name_(std::move(name)) {}

  Status write(std::uint64_t offset, std::string_view bytes) override {
    HERALD_ASSERT(offset + bytes.size() <= data_->live.size(),
                  "writes stay inside the preallocated file");
    HERALD_RETURN_IF_ERROR(fs_->check_space("write", name_));
    if (fs_->take_failure()) {
      return Status::io_error("injected write failure on " + name_);
    }
    data_->live.replace(offset, bytes.size(), bytes);
    data_->unsynced.emplace_back(offset, std::string(bytes));
    fs_->remember_write(data_, offset, bytes);
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
    HERALD_RETURN_IF_ERROR(fs_->check_space("fdatasync", name_));
    if (fs_->take_failure()) {
      return Status::io_error("injected sync failure on " + name_);
    }
    for (const auto& [offset, bytes] : data_->unsynced) {
      data_->durable.replace(offset, bytes.size(), bytes);
    }
    data_->unsynced.clear();
    fs_->remember_sync(*data_);
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

Status MemLogFs::check_space(std::string_view call, std::string_view name) {
  if (!full_) {
    return Status::ok_status();
  }
  ++counters_.full_ops;
  return Status::resource_exhausted(std::string(call) + " " + std::string(name) +
                                    ": no space left on device (injected full disk)");
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
  HERALD_RETURN_IF_ERROR(check_space("create", name));  // the file's blocks are allocated now
  auto data = std::make_shared<FileData>();
  data->durable.assign(size_bytes, '\0');
  data->live.assign(size_bytes, '\0');
  data->history_base = data->durable;
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
  if (recording_) {
    remember(HistoryOp{nullptr, 0, {}, true, durable_});
  }
  return Status::ok_status();
}

void MemLogFs::remember_write(const std::shared_ptr<FileData>& file, std::uint64_t offset,
                              std::string_view bytes) {
  if (recording_) {
    remember(HistoryOp{file, offset, std::string(bytes), false, {}});
  }
}

void MemLogFs::remember_sync(const FileData& file) {
  for (HistoryOp& op : history_) {
    if (op.file.get() == &file) {
      op.synced = true;
    }
  }
}

void MemLogFs::remember(HistoryOp op) {
  history_.push_back(std::move(op));
  if (history_.size() <= kMaxLogFsHistoryOps) {
    return;
  }
  // The oldest operation can no longer be lost: it joins the base.
  HistoryOp& oldest = history_.front();
  if (oldest.file != nullptr) {
    oldest.file->history_base.replace(oldest.offset, oldest.bytes.size(), oldest.bytes);
  } else {
    history_base_directory_ = std::move(oldest.directory);
  }
  history_.pop_front();
}

void MemLogFs::record_history() {
  recording_ = true;
  restart_history();
  // Writes not synced yet are remembered (unsynced), file by file.
  for (const auto& [name, data] : live_) {
    for (const auto& [offset, bytes] : data->unsynced) {
      remember(HistoryOp{data, offset, bytes, false, {}});
    }
  }
}

void MemLogFs::restart_history() {
  history_.clear();
  history_base_directory_ = durable_;
  for (const Directory* dir : {&live_, &durable_}) {
    for (const auto& [name, data] : *dir) {
      data->history_base = data->durable;
    }
  }
}

std::uint64_t MemLogFs::crash_lying(Rng& rng) {
  std::size_t last_synced = history_.size();
  for (std::size_t i = history_.size(); i-- > 0;) {
    if (history_[i].file != nullptr && history_[i].synced) {
      last_synced = i;
      break;
    }
  }
  if (last_synced == history_.size()) {
    crash(rng);
    return 0;
  }
  const auto kept = static_cast<std::size_t>(rng.uniform(last_synced + 1));  // in [0, last_synced]
  // The names of the last directory sync kept; each of their files as its kept writes left it.
  Directory directory = history_base_directory_;
  for (std::size_t i = 0; i < kept; ++i) {
    if (history_[i].file == nullptr) {
      directory = history_[i].directory;
    }
  }
  std::map<const FileData*, std::string> images;
  for (const auto& [name, data] : directory) {
    images.emplace(data.get(), data->history_base);
  }
  std::uint64_t lost_synced = 0;
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const HistoryOp& op = history_[i];
    if (op.file == nullptr) {
      continue;
    }
    if (i >= kept) {
      lost_synced += op.synced ? 1 : 0;
      counters_.lost_writes += op.synced ? 0 : 1;
      continue;
    }
    const auto image = images.find(op.file.get());
    if (image != images.end()) {
      image->second.replace(op.offset, op.bytes.size(), op.bytes);
    }
  }
  HERALD_ASSERT(lost_synced > 0, "a lying crash loses at least one synced write");
  for (const auto& [name, data] : directory) {
    data->durable = images.at(data.get());
    data->live = data->durable;
    data->unsynced.clear();
  }
  durable_ = directory;
  live_ = std::move(directory);
  history_.erase(history_.begin() + static_cast<std::ptrdiff_t>(kept), history_.end());
  ++counters_.crashes;
  ++counters_.lying_crashes;
  counters_.lost_synced_writes += lost_synced;
  return lost_synced;
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
  if (recording_) {
    restart_history();
  }
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
  data->history_base = data->durable;
  live_[std::string(name)] = data;
  if (recording_) {
    history_base_directory_[std::string(name)] = data;
  }
  durable_[std::string(name)] = std::move(data);
}

bool MemLogFs::durable_name(std::string_view name) const {
  return durable_.find(name) != durable_.end();
}

}  // namespace herald::storage
