#include "storage/engine.h"

#include "base/assert.h"

namespace herald::storage {

const char* space_name(Space space) {
  switch (space) {
    case Space::kLog: return "log";
    case Space::kMeta: return "meta";
    case Space::kState: return "state";
  }
  HERALD_ASSERT(false, "unknown Space");
}

void WriteBatch::put(Space space, std::string_view key, std::string_view value) {
  ops_.push_back(Op{OpType::kPut, space, std::string(key), std::string(value)});
  bytes_ += key.size() + value.size();
}

void WriteBatch::del(Space space, std::string_view key) {
  ops_.push_back(Op{OpType::kDelete, space, std::string(key), std::string()});
  bytes_ += key.size();
}

void WriteBatch::delete_range(Space space, std::string_view begin, std::string_view end) {
  HERALD_ASSERT(begin <= end, "delete_range needs begin <= end");
  ops_.push_back(Op{OpType::kDeleteRange, space, std::string(begin), std::string(end)});
  bytes_ += begin.size() + end.size();
}

void WriteBatch::append(const WriteBatch& other) {
  HERALD_ASSERT(&other != this, "WriteBatch::append to itself");
  ops_.insert(ops_.end(), other.ops_.begin(), other.ops_.end());
  bytes_ += other.bytes_;
}

void WriteBatch::clear() {
  ops_.clear();
  bytes_ = 0;
}

void WriteBatch::truncate(std::size_t op_count) {
  HERALD_ASSERT(op_count <= ops_.size(), "WriteBatch::truncate beyond its end");
  for (std::size_t i = op_count; i < ops_.size(); ++i) {
    bytes_ -= ops_[i].key.size() + ops_[i].value.size();
  }
  ops_.resize(op_count);
}

std::pair<WriteBatch::OpType, std::string> WriteBatch::replace(std::size_t index, OpType type,
                                                               std::string value) {
  HERALD_ASSERT(index < ops_.size(), "WriteBatch::replace beyond its end");
  Op& op = ops_[index];
  HERALD_ASSERT(op.type != OpType::kDeleteRange && type != OpType::kDeleteRange,
                "WriteBatch::replace of a range delete");
  HERALD_ASSERT(type == OpType::kPut || value.empty(), "a delete has no value");
  bytes_ = bytes_ - op.value.size() + value.size();
  std::pair<OpType, std::string> before{op.type, std::move(op.value)};
  op.type = type;
  op.value = std::move(value);
  return before;
}

}  // namespace herald::storage
