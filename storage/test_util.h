// Helpers shared by the storage tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "storage/engine.h"

namespace herald::storage::testing {

// The newest WAL file of the database in `dir` (empty when there is none).
inline std::filesystem::path newest_wal(const std::string& dir) {
  std::filesystem::path newest;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log" &&
        (newest.empty() || entry.path().filename() > newest.filename())) {
      newest = entry.path();
    }
  }
  return newest;
}

// A fresh directory in the system temp directory, removed with everything in it when the object
// dies.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "herald-storage-XXXXXX");
    const char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// Every key and value of `space` in [begin, end), in order; fails the test on an iterator error.
inline KeyValues scan_all(const Reader& reader, Space space, std::string_view begin = "",
                          std::string_view end = "") {
  KeyValues out;
  const auto it = reader.scan(space, begin, end);
  for (; it->valid(); it->next()) {
    out.emplace_back(std::string(it->key()), std::string(it->value()));
  }
  EXPECT_TRUE(it->status().ok()) << it->status().to_string();
  return out;
}

// The value under `key`, or "<absent>"; fails the test on a read error.
inline std::string get_or_absent(const Reader& reader, Space space, std::string_view key) {
  const auto value = reader.get(space, key);
  EXPECT_TRUE(value.ok()) << value.status().to_string();
  if (!value.ok() || !value->has_value()) {
    return "<absent>";
  }
  return **value;
}

}  // namespace herald::storage::testing
