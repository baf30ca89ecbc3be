#include "raft/read_only.h"

#include <charconv>
#include <string_view>

#include "base/assert.h"

namespace herald::raft {
namespace {
constexpr std::string_view kHeartbeatContextPrefix = "read-index:";
}  // namespace

std::string ReadOnlyQueue::add(Index index, NodeId from, std::string context, NodeId self) {
  HERALD_ASSERT(queue_.empty() || queue_.back().index <= index, "read index went backwards");
  ReadRequest request;
  request.seq = next_seq_++;
  request.index = index;
  request.from = from;
  request.context = std::move(context);
  request.acks.insert(self);
  queue_.push_back(std::move(request));
  return format(queue_.back().seq);
}

const std::set<NodeId>* ReadOnlyQueue::ack(const std::string& heartbeat_context, NodeId from) {
  std::optional<std::uint64_t> seq = parse(heartbeat_context);
  if (!seq) return nullptr;
  ReadRequest* request = find(*seq);
  if (request == nullptr) return nullptr;
  request->acks.insert(from);
  return &request->acks;
}

std::vector<ReadRequest> ReadOnlyQueue::release_through(const std::string& heartbeat_context) {
  std::vector<ReadRequest> released;
  std::optional<std::uint64_t> seq = parse(heartbeat_context);
  if (!seq || find(*seq) == nullptr) return released;
  while (!queue_.empty() && queue_.front().seq <= *seq) {
    released.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  HERALD_ASSERT(!released.empty() && released.back().seq == *seq, "released the wrong request");
  return released;
}

std::string ReadOnlyQueue::last_context() const {
  return queue_.empty() ? std::string() : format(queue_.back().seq);
}

std::optional<std::uint64_t> ReadOnlyQueue::parse(const std::string& heartbeat_context) {
  std::string_view view = heartbeat_context;
  if (!view.starts_with(kHeartbeatContextPrefix)) return std::nullopt;
  view.remove_prefix(kHeartbeatContextPrefix.size());
  std::uint64_t seq = 0;
  auto [ptr, ec] = std::from_chars(view.data(), view.data() + view.size(), seq);
  if (ec != std::errc() || ptr != view.data() + view.size()) return std::nullopt;
  return seq;
}

std::string ReadOnlyQueue::format(std::uint64_t seq) {
  return std::string(kHeartbeatContextPrefix) + std::to_string(seq);
}

ReadRequest* ReadOnlyQueue::find(std::uint64_t seq) {
  for (ReadRequest& request : queue_) {
    if (request.seq == seq) return &request;
  }
  return nullptr;
}

}  // namespace herald::raft
