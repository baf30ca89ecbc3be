// Where the serving code reports damaged stored data that a read found (docs/operations.md,
// "Damaged data").
//
// The apply path finds damage on the replica's own thread and rebuilds the replica from there
// (server/node_host.h). A client read (a history page, a timeline, a KV get) runs outside it: its
// kCorruption would only become an `internal` answer. The HTTP and WebSocket error mappings pass
// every error through report_damage(), and the serving process installs the handler that decides
// whether the replica rebuilds (NodeHost::report_damage). Without a handler nothing happens.
// Thread-safety: both functions may be called from any thread; the handler runs on the caller's
// thread and must be thread-safe.
#pragma once

#include <functional>

#include "base/status.h"

namespace herald::server {

using DamageHandler = std::function<void(const Status&)>;

// Installs `handler` (an empty one removes it). The installer must remove it before whatever the
// handler refers to goes away.
void set_damage_handler(DamageHandler handler);

// Calls the installed handler when `status` is kCorruption; otherwise does nothing.
void report_damage(const Status& status);

}  // namespace herald::server
