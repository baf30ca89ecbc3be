#include "rsm/apply_batch.h"

namespace herald::rsm {

using OpType = storage::WriteBatch::OpType;

Result<std::optional<std::string>> ApplyBatch::get(storage::Space space,
                                                   std::string_view key) const {
  const auto it = staged_.find(Probe{space, key});
  if (it != staged_.end()) {
    const storage::WriteBatch::Op& op = writes_.ops()[*it];
    if (op.type == OpType::kDelete) return std::optional<std::string>();
    return std::optional<std::string>(op.value);
  }
  const Probe probe{space, key};
  const auto cached = base_reads_.lower_bound(probe);
  if (cached != base_reads_.end() && !base_reads_.key_comp()(probe, cached->first)) {
    return cached->second;
  }
  HERALD_ASSIGN_OR_RETURN(std::optional<std::string> value, base_->get(space, key));
  base_reads_.emplace_hint(cached, ReadKey{space, std::string(key)}, value);
  return value;
}

Result<std::vector<ApplyBatch::Entry>> ApplyBatch::scan(storage::Space space,
                                                        std::string_view begin,
                                                        std::string_view end,
                                                        std::size_t limit) const {
  std::vector<Entry> out;
  const auto in_range = [&](std::string_view key) { return end.empty() || key < end; };
  auto staged = staged_.lower_bound(Probe{space, begin});
  const auto staged_op = [&]() -> const storage::WriteBatch::Op& { return writes_.ops()[*staged]; };
  const auto staged_valid = [&] {
    return staged != staged_.end() && staged_op().space == space && in_range(staged_op().key);
  };
  auto base = base_->scan(space, begin, end);
  // A merge of two sorted runs; on equal keys the staged write wins and the engine's is skipped.
  while (out.size() < limit) {
    const bool have_staged = staged_valid();
    if (!have_staged && !base->valid()) break;
    if (have_staged && (!base->valid() || staged_op().key <= base->key())) {
      const storage::WriteBatch::Op& op = staged_op();
      if (base->valid() && op.key == base->key()) base->next();
      if (op.type == OpType::kPut) out.push_back(Entry{op.key, op.value});
      ++staged;
    } else {
      out.push_back(Entry{std::string(base->key()), std::string(base->value())});
      base->next();
    }
  }
  HERALD_RETURN_IF_ERROR(base->status());
  return out;
}

void ApplyBatch::stage(storage::Space space, std::string_view key, OpType type,
                       std::string_view value) {
  const Probe probe{space, key};
  const auto it = staged_.lower_bound(probe);
  if (it != staged_.end() && !staged_.key_comp()(probe, *it)) {
    // The batch writes this key already: its operation becomes this one.
    auto [before_type, before_value] = writes_.replace(*it, type, std::string(value));
    undo_.push_back(Undo{*it, /*replaced=*/true, before_type, std::move(before_value)});
    return;
  }
  const std::size_t index = writes_.ops().size();
  if (type == OpType::kPut) {
    writes_.put(space, key, value);
  } else {
    writes_.del(space, key);
  }
  staged_.insert(it, index);
  undo_.push_back(Undo{index, /*replaced=*/false, type, {}});
}

void ApplyBatch::put(storage::Space space, std::string_view key, std::string_view value) {
  stage(space, key, OpType::kPut, value);
}

void ApplyBatch::del(storage::Space space, std::string_view key) {
  stage(space, key, OpType::kDelete, {});
}

void ApplyBatch::rollback(const Savepoint& point) {
  HERALD_ASSERT(point.undo <= undo_.size() && point.ops <= writes_.ops().size(),
                "rollback to a savepoint that is not in this batch");
  // Newest first; the operations appended since the savepoint stay in writes_ until the end, so
  // that staged_ can still order them while they are erased from it.
  while (undo_.size() > point.undo) {
    Undo& undo = undo_.back();
    if (undo.replaced) {
      (void)writes_.replace(undo.op, undo.type, std::move(undo.value));
    } else {
      HERALD_ASSERT(undo.op >= point.ops, "a write appended after the savepoint is undone");
      staged_.erase(undo.op);
    }
    undo_.pop_back();
  }
  writes_.truncate(point.ops);
}

WriteCounts ApplyBatch::counts() const {
  WriteCounts counts;
  for (const storage::WriteBatch::Op& op : writes_.ops()) {
    ++(op.type == OpType::kPut ? counts.puts : counts.deletes);
  }
  counts.bytes = writes_.byte_size();
  return counts;
}

void ApplyBatch::clear() {
  writes_.clear();
  staged_.clear();
  undo_.clear();
  base_reads_.clear();
}

}  // namespace herald::rsm
