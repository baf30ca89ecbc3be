#include "server/recording_provider.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <utility>

namespace herald::server {

namespace {

namespace json = boost::json;

json::string_view js(std::string_view s) {
  return {s.data(), s.size()};
}

// The journal line of one call: the call's place and outcome, then the request's fields.
json::object journal_line(std::string_view kind, std::uint64_t call, const ProviderResult& result) {
  json::object line;
  line["kind"] = js(kind);
  line["call"] = call;
  line["ok"] = result.ok;
  line["recorded"] = result.recorded;
  line["error_type"] = js(result.error_type);
  line["error_message"] = js(result.error_message);
  return line;
}

json::object journal_line(const PushRequest& r, std::uint64_t call, const ProviderResult& result) {
  json::object line = journal_line("push", call, result);
  line["idempotency_key"] = js(r.idempotency_key);
  line["user_id"] = js(r.user_id);
  line["device_id"] = js(r.device_id);
  line["platform"] = js(r.platform);
  line["provider"] = js(r.provider);
  line["token"] = js(r.token);
  line["conversation_id"] = js(r.conversation_id);
  line["seq"] = r.seq;
  line["title"] = js(r.title);
  line["body"] = js(r.body);
  return line;
}

json::object journal_line(const EmailRequest& r, std::uint64_t call, const ProviderResult& result) {
  json::object line = journal_line("email", call, result);
  line["idempotency_key"] = js(r.idempotency_key);
  line["to"] = js(r.to);
  line["subject"] = js(r.subject);
  line["body"] = js(r.body);
  line["user_id"] = js(r.user_id);
  line["conversation_id"] = js(r.conversation_id);
  line["seq"] = r.seq;
  line["sender_user_id"] = js(r.sender_user_id);
  return line;
}

// The answer of a kRecordOnly provider: not dispatched, recorded.
ProviderResult recorded_answer(const PushRequest& r) {
  ProviderResult result = ProviderResult::failure(
      messaging::kPushNoProvider,
      fmt::format("no provider configured for \"{}\"; recorded in the push journal", r.provider));
  result.recorded = true;
  return result;
}

ProviderResult recorded_answer(const EmailRequest& /*r*/) {
  ProviderResult result = ProviderResult::failure(
      messaging::kEmailNoProvider, "no email provider configured; recorded in the email journal");
  result.recorded = true;
  return result;
}

}  // namespace

template <typename Request, typename Interface>
struct RecordingProvider<Request, Interface>::Journal {
  std::string path;
  std::uint64_t max_bytes = kMaxJournalBytes;
  std::uint64_t bytes = 0;  // in the current file
  std::ofstream out;
  Status status;  // the first write error

  void append(const json::object& line) {
    if (!status.ok()) {
      return;  // the stream is unusable after an error; the first one is what matters
    }
    std::string text = json::serialize(line);
    text.push_back('\n');
    if (bytes > 0 && bytes + text.size() > max_bytes) {
      rotate();
      if (!status.ok()) return;
    }
    out << text;
    out.flush();
    if (!out) {
      status = Status::io_error(fmt::format("cannot append to the journal \"{}\"", path));
      return;
    }
    bytes += text.size();
  }

  // The current file becomes "<path>.1"; a fresh one takes its place.
  void rotate() {
    out.close();
    std::error_code ec;
    std::filesystem::rename(path, path + ".1", ec);
    if (ec) {
      status =
          Status::io_error(fmt::format("cannot rotate the journal \"{}\": {}", path, ec.message()));
      return;
    }
    out.open(path, std::ios::out | std::ios::trunc);
    if (!out.is_open()) {
      status = Status::io_error(fmt::format("cannot reopen the journal \"{}\"", path));
      return;
    }
    bytes = 0;
  }
};

template <typename Request, typename Interface>
RecordingProvider<Request, Interface>::RecordingProvider(RecordingAnswer answer)
    : answer_(answer) {}

template <typename Request, typename Interface>
RecordingProvider<Request, Interface>::~RecordingProvider() = default;

template <typename Request, typename Interface>
Result<std::unique_ptr<RecordingProvider<Request, Interface>>>
RecordingProvider<Request, Interface>::with_journal(const std::string& path, RecordingAnswer answer,
                                                    std::uint64_t max_bytes) {
  auto journal = std::make_unique<Journal>();
  journal->path = path;
  journal->max_bytes = max_bytes;
  journal->out.open(path, std::ios::out | std::ios::app);
  if (!journal->out.is_open()) {
    return Status::io_error(fmt::format("cannot open the journal \"{}\" for appending", path));
  }
  std::error_code ec;
  const std::uintmax_t existing = std::filesystem::file_size(path, ec);
  journal->bytes = ec ? 0 : static_cast<std::uint64_t>(existing);
  auto provider = std::make_unique<RecordingProvider>(answer);
  provider->journal_ = std::move(journal);
  return provider;
}

template <typename Request, typename Interface>
void RecordingProvider<Request, Interface>::send(const Request& request, ProviderDone done) {
  HERALD_ASSERT(done != nullptr, "send() needs a completion");
  ProviderResult result;
  {
    std::lock_guard lock(mu_);
    result = record_locked(request);
  }
  done(std::move(result));
}

template <typename Request, typename Interface>
ProviderResult RecordingProvider<Request, Interface>::record_locked(const Request& request) {
  ++call_count_;
  if (calls_.size() < kMaxRecordedCalls) {
    calls_.push_back(request);
  }
  ProviderResult result = answer_ == RecordingAnswer::kRecordOnly ? recorded_answer(request)
                                                                  : ProviderResult::success();
  if (!script_.empty()) {
    result = std::move(script_.front());
    script_.pop_front();
  }
  if (journal_ != nullptr) {
    journal_->append(journal_line(request, call_count_, result));
  }
  return result;
}

template <typename Request, typename Interface>
void RecordingProvider<Request, Interface>::fail_next(std::size_t calls,
                                                      const std::string& error_type,
                                                      const std::string& error_message) {
  HERALD_ASSERT(!error_type.empty(), "a scripted failure needs an error type");
  std::lock_guard lock(mu_);
  HERALD_ASSERT(script_.size() + calls <= kMaxScriptedFailures,
                "more than kMaxScriptedFailures scripted failures");
  for (std::size_t i = 0; i < calls; ++i) {
    script_.push_back(ProviderResult::failure(error_type, error_message));
  }
}

template <typename Request, typename Interface>
std::vector<Request> RecordingProvider<Request, Interface>::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

template <typename Request, typename Interface>
std::set<std::string> RecordingProvider<Request, Interface>::distinct_keys() const {
  std::lock_guard lock(mu_);
  std::set<std::string> keys;
  for (const Request& call : calls_) {
    keys.insert(call.idempotency_key);
  }
  return keys;
}

template <typename Request, typename Interface>
std::uint64_t RecordingProvider<Request, Interface>::call_count() const {
  std::lock_guard lock(mu_);
  return call_count_;
}

template <typename Request, typename Interface>
Status RecordingProvider<Request, Interface>::journal_status() const {
  std::lock_guard lock(mu_);
  return journal_ == nullptr ? Status::ok_status() : journal_->status;
}

template class RecordingProvider<PushRequest, PushProvider>;
template class RecordingProvider<EmailRequest, EmailProvider>;

}  // namespace herald::server
