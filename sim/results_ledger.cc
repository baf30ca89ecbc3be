#include "sim/results_ledger.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace herald::sim {

// ---- ResultFigures ----

void ResultFigures::add(const ResultFigures& other) {
  messages += other.messages;
  recipient_deliveries += other.recipient_deliveries;
  delivered += other.delivered;
  push_attempts += other.push_attempts;
  pushes_accepted += other.pushes_accepted;
  duplicate_notifications += other.duplicate_notifications;
  lost_messages += other.lost_messages;
  missing_receipts += other.missing_receipts;
  reads += other.reads;
  diverged_devices += other.diverged_devices;
  divergence_episodes += other.divergence_episodes;
  divergence_total_ms += other.divergence_total_ms;
  divergence_max_ms = std::max(divergence_max_ms, other.divergence_max_ms);
  diverged_at_end += other.diverged_at_end;
  crashes += other.crashes;
  crashes_with_work += other.crashes_with_work;
  never_resumed += other.never_resumed;
  resume_ms.insert(resume_ms.end(), other.resume_ms.begin(), other.resume_ms.end());
}

double ResultFigures::pushes_per_delivered() const {
  return delivered == 0 ? 0.0 : static_cast<double>(push_attempts) / static_cast<double>(delivered);
}

MonoMs ResultFigures::resume_quantile_ms(double p) const {
  if (resume_ms.empty()) {
    return -1;
  }
  std::vector<MonoMs> sorted = resume_ms;
  std::sort(sorted.begin(), sorted.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

std::string ResultFigures::check_consistent() const {
  if (delivered > recipient_deliveries) {
    return fmt::format("{} deliveries delivered of {}", delivered, recipient_deliveries);
  }
  if (duplicate_notifications > pushes_accepted || pushes_accepted > push_attempts) {
    return fmt::format("{} duplicates, {} pushes accepted, {} attempted", duplicate_notifications,
                       pushes_accepted, push_attempts);
  }
  if (resume_ms.size() + never_resumed != crashes_with_work || crashes_with_work > crashes) {
    return fmt::format("{} crashes, {} with work: {} resumed, {} never", crashes, crashes_with_work,
                       resume_ms.size(), never_resumed);
  }
  if (lost_messages > messages || (lost_messages > 0) != (missing_receipts > 0)) {
    return fmt::format("{} lost of {} messages, {} receipts missing", lost_messages, messages,
                       missing_receipts);
  }
  if (diverged_devices > divergence_episodes || divergence_max_ms > divergence_total_ms) {
    return fmt::format("{} diverged devices, {} episodes, {} ms in all, longest {} ms",
                       diverged_devices, divergence_episodes, divergence_total_ms,
                       divergence_max_ms);
  }
  return {};
}

// ---- ResultsLedger: recording ----

void ResultsLedger::add_device(const std::string& device_id, const std::string& user_id) {
  user_of_[device_id] = user_id;
}

void ResultsLedger::add_member(const std::string& conversation_id, const std::string& user_id) {
  members_[conversation_id].insert(user_id);
}

void ResultsLedger::message_accepted(MonoMs t_ms, const std::string& conversation_id,
                                     std::uint64_t seq, const std::string& sender_user_id) {
  accepted_.try_emplace({conversation_id, seq}, Accepted{t_ms, sender_user_id});
}

void ResultsLedger::message_received(MonoMs t_ms, const std::string& device_id,
                                     const std::string& conversation_id, std::uint64_t seq) {
  auto [it, fresh] = received_.try_emplace({device_id, {conversation_id, seq}}, t_ms);
  if (!fresh) {
    it->second = std::min(it->second, t_ms);
  }
}

void ResultsLedger::push_attempt(MonoMs /*t_ms*/, const std::string& conversation_id,
                                 std::uint64_t seq, const std::string& device_id, bool accepted) {
  pushes_.push_back(Push{device_id, {conversation_id, seq}, accepted});
}

void ResultsLedger::read_done(MonoMs t_ms, const std::string& device_id,
                              const std::string& conversation_id, std::uint64_t seq) {
  ++reads_;
  // The device's user is looked up at the end: the world may be added after the events.
  read_events_.push_back(
      ReadEvent{t_ms, next_order_++, ReadKind::kTruth, device_id, {}, conversation_id, seq});
  read_view(t_ms, device_id, conversation_id, seq);
}

void ResultsLedger::read_view(MonoMs t_ms, const std::string& device_id,
                              const std::string& conversation_id, std::uint64_t seq) {
  read_events_.push_back(
      ReadEvent{t_ms, next_order_++, ReadKind::kView, device_id, {}, conversation_id, seq});
}

void ResultsLedger::device_online(MonoMs t_ms, const std::string& device_id, bool online) {
  read_events_.push_back(ReadEvent{
      t_ms, next_order_++, online ? ReadKind::kOnline : ReadKind::kOffline, device_id, {}, {}, 0});
}

void ResultsLedger::crash(MonoMs t_ms, const std::string& process, std::vector<std::string> units) {
  crashes_.push_back(Crash{t_ms, process, std::move(units)});
}

void ResultsLedger::work_step(MonoMs t_ms, const std::string& process, const std::string& unit) {
  steps_.push_back(Step{t_ms, process, unit});
}

// ---- ResultsLedger: figures ----

ResultFigures ResultsLedger::figures(MonoMs end_ms) const {
  ResultFigures f;
  count_messages(f);
  count_pushes(f);
  count_divergence(f, end_ms);
  count_crashes(f);
  f.reads = reads_;
  return f;
}

bool ResultsLedger::is_member(const std::string& conversation_id,
                              const std::string& user_id) const {
  auto it = members_.find(conversation_id);
  return it != members_.end() && it->second.contains(user_id);
}

void ResultsLedger::count_messages(ResultFigures& f) const {
  f.messages = accepted_.size();
  for (const auto& [message, accepted] : accepted_) {
    std::map<std::string, bool> user_received;  // member user -> some device received it
    bool lost = false;
    for (const auto& [device, user] : user_of_) {
      if (!is_member(message.first, user)) {
        continue;
      }
      const bool got = received_.contains({device, message});
      bool& any = user_received[user];
      any = any || got;
      if (!got) {
        ++f.missing_receipts;
        lost = true;
      }
    }
    f.lost_messages += lost ? 1 : 0;
    for (const auto& [user, got] : user_received) {
      if (user != accepted.sender_user_id) {
        ++f.recipient_deliveries;
        f.delivered += got ? 1 : 0;
      }
    }
  }
}

void ResultsLedger::count_pushes(ResultFigures& f) const {
  std::map<std::pair<std::string, MessageKey>, std::uint64_t> accepted_per_target;
  for (const Push& p : pushes_) {
    ++f.push_attempts;
    if (p.accepted) {
      ++f.pushes_accepted;
      ++accepted_per_target[{p.device_id, p.message}];
    }
  }
  for (const auto& [target, count] : accepted_per_target) {
    f.duplicate_notifications += count - 1;
  }
}

// Every read-state event in time order: the recorded ones, plus the user's own messages (a send
// moves the sender's position; a device receiving its user's message moves what it shows).
std::vector<ResultsLedger::ReadEvent> ResultsLedger::read_timeline() const {
  std::vector<ReadEvent> events = read_events_;
  for (ReadEvent& e : events) {
    auto user = user_of_.find(e.device_id);
    if (e.kind == ReadKind::kTruth && e.user_id.empty() && user != user_of_.end()) {
      e.user_id = user->second;
    }
  }
  std::uint64_t order = next_order_;
  for (const auto& [message, accepted] : accepted_) {
    ReadEvent truth{accepted.t_ms, order++,       ReadKind::kTruth, {}, {},
                    message.first, message.second};
    truth.user_id = accepted.sender_user_id;
    events.push_back(std::move(truth));
  }
  for (const auto& [key, t_ms] : received_) {
    const auto& [device, message] = key;
    auto accepted = accepted_.find(message);
    auto user = user_of_.find(device);
    if (accepted != accepted_.end() && user != user_of_.end() &&
        accepted->second.sender_user_id == user->second) {
      events.push_back(
          ReadEvent{t_ms, order++, ReadKind::kView, device, {}, message.first, message.second});
    }
  }
  std::sort(events.begin(), events.end(), [](const ReadEvent& a, const ReadEvent& b) {
    return std::tie(a.t_ms, a.order) < std::tie(b.t_ms, b.order);
  });
  return events;
}

void ResultsLedger::count_divergence(ResultFigures& f, MonoMs end_ms) const {
  using DeviceConv = std::pair<std::string, std::string>;
  std::map<std::pair<std::string, std::string>, std::uint64_t> truth;  // (user, conv) -> seq
  std::map<DeviceConv, std::uint64_t> view;
  std::map<std::string, bool> online;
  std::map<DeviceConv, MonoMs> behind_since;
  std::set<std::string> diverged;
  auto count_episode = [&](const std::string& device, MonoMs duration_ms) {
    if (duration_ms > kReadDivergenceGraceMs) {
      ++f.divergence_episodes;
      f.divergence_total_ms += duration_ms;
      f.divergence_max_ms = std::max(f.divergence_max_ms, duration_ms);
      diverged.insert(device);
    }
  };
  auto evaluate = [&](const std::string& device, const std::string& conv, MonoMs t_ms) {
    const std::string& user = user_of_.at(device);
    const bool behind = online[device] && view[{device, conv}] < truth[{user, conv}];
    auto since = behind_since.find({device, conv});
    if (behind && since == behind_since.end()) {
      behind_since.emplace(DeviceConv{device, conv}, t_ms);
    } else if (!behind && since != behind_since.end()) {
      count_episode(device, t_ms - since->second);
      behind_since.erase(since);
    }
  };
  for (const ReadEvent& e : read_timeline()) {
    switch (e.kind) {
      case ReadKind::kTruth: {
        std::uint64_t& seq = truth[{e.user_id, e.conversation_id}];
        seq = std::max(seq, e.seq);
        for (const auto& [device, user] : user_of_) {
          if (user == e.user_id) {
            evaluate(device, e.conversation_id, e.t_ms);
          }
        }
        break;
      }
      case ReadKind::kView: {
        if (!user_of_.contains(e.device_id)) {
          break;
        }
        std::uint64_t& seq = view[{e.device_id, e.conversation_id}];
        seq = std::max(seq, e.seq);
        evaluate(e.device_id, e.conversation_id, e.t_ms);
        break;
      }
      case ReadKind::kOnline:
      case ReadKind::kOffline: {
        if (!user_of_.contains(e.device_id)) {
          break;
        }
        online[e.device_id] = e.kind == ReadKind::kOnline;
        for (const auto& [conv, users] : members_) {
          if (users.contains(user_of_.at(e.device_id))) {
            evaluate(e.device_id, conv, e.t_ms);
          }
        }
        break;
      }
    }
  }
  for (const auto& [key, since_ms] : behind_since) {
    count_episode(key.first, std::max<MonoMs>(0, end_ms - since_ms));
  }
  for (const auto& [device, user] : user_of_) {
    for (const auto& [conv, users] : members_) {
      if (users.contains(user) && view[{device, conv}] < truth[{user, conv}]) {
        ++f.diverged_at_end;
      }
    }
  }
  f.diverged_devices = diverged.size();
}

void ResultsLedger::count_crashes(ResultFigures& f) const {
  f.crashes = crashes_.size();
  for (const Crash& c : crashes_) {
    if (c.units.empty()) {
      continue;
    }
    ++f.crashes_with_work;
    const std::set<std::string> units(c.units.begin(), c.units.end());
    MonoMs first = -1;
    for (const Step& s : steps_) {
      if (s.process != c.process && s.t_ms >= c.t_ms && units.contains(s.unit) &&
          (first < 0 || s.t_ms < first)) {
        first = s.t_ms;
      }
    }
    if (first < 0) {
      ++f.never_resumed;
    } else {
      f.resume_ms.push_back(first - c.t_ms);
    }
  }
}

}  // namespace herald::sim
