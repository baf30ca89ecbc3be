#include "net/curl_provider.h"

#include <utility>

#include "base/assert.h"

namespace herald::net {

using messaging::ProviderResult;

CurlRequest::CurlRequest(CurlProvider& provider_in, messaging::ProviderDone done,
                         SteadyTime deadline_in)
    : provider(provider_in), deadline(deadline_in), done_(std::move(done)) {}

void CurlRequest::abandoned(CurlAbandon why, const Status& status) {
  const CurlProviderWords& words = provider.words();
  std::string message;
  switch (why) {
    case CurlAbandon::kExpired: message = words.expired; break;
    case CurlAbandon::kStopping: message = words.stopping; break;
    case CurlAbandon::kBeginFailed: message = status.message(); break;
  }
  provider.finish(*this, ProviderResult::failure(words.error_type, std::move(message)));
}

Result<std::unique_ptr<CurlProvider>> CurlProvider::create(CurlMultiLoopOptions options,
                                                           CurlProviderWords words) {
  HERALD_ASSIGN_OR_RETURN(std::unique_ptr<CurlMultiLoop> loop,
                          CurlMultiLoop::create(std::move(options)));
  return std::unique_ptr<CurlProvider>(new CurlProvider(std::move(loop), std::move(words)));
}

CurlProvider::CurlProvider(std::unique_ptr<CurlMultiLoop> loop, CurlProviderWords words)
    : words_(std::move(words)), loop_(std::move(loop)) {}

CurlProvider::~CurlProvider() {
  stop();
}

void CurlProvider::fail_now(const messaging::ProviderDone& done, std::string type,
                            std::string message) {
  ++failed_;
  done(ProviderResult::failure(std::move(type), std::move(message)));
}

void CurlProvider::submit(const std::shared_ptr<CurlRequest>& request) {
  const CurlSubmit submitted = loop_->submit(request, request->deadline);
  if (submitted == CurlSubmit::kAccepted) {
    return;  // the request may be over already: the I/O thread has it
  }
  const messaging::ProviderDone done = std::move(request->done_);
  request->done_ = nullptr;
  fail_now(done, words_.error_type,
           submitted == CurlSubmit::kStopped ? words_.stopped : words_.full);
}

void CurlProvider::finish(CurlRequest& request, ProviderResult result) {
  HERALD_ASSERT(request.done_ != nullptr, "a provider request finished twice");
  ++(result.ok ? sent_ : failed_);
  request.release();
  const messaging::ProviderDone done = std::move(request.done_);
  request.done_ = nullptr;
  done(std::move(result));
}

void CurlProvider::stop() {
  loop_->stop();
}

ProviderStats CurlProvider::stats() const {
  ProviderStats stats;
  static_cast<TransferStats&>(stats) = loop_->stats();
  stats.sent = sent_.load();
  stats.failed = failed_.load();
  return stats;
}

}  // namespace herald::net
