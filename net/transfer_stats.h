// The counters of a transfer loop (net/curl_multi_loop.h) and of the provider requests it runs
// (net/curl_provider.h), which each provider's stats extend (email::SmtpStats,
// push::WebPushStats). Plain values, copied out of atomics; no libcurl here, so a provider's
// public header can carry them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace herald::net {

struct TransferStats {
  std::uint64_t started = 0;  // transfers begun, a job's runs again included
  std::size_t queued = 0;     // jobs waiting for a transfer now
  std::size_t in_flight = 0;  // transfers running now
  std::size_t max_in_flight = 0;
};

struct ProviderStats : TransferStats {
  std::uint64_t sent = 0;    // requests answered with success
  std::uint64_t failed = 0;  // requests that failed, whatever the reason, fast ones included
};

}  // namespace herald::net
