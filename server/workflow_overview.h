// WorkflowOverview: what an operator looks at first (docs/api-http.md, "Workflow overview") —
// how many workflows of each type are in each state, and the ones that need attention: stuck
// (running, no progress for a while), retrying (an activity waits for its next attempt),
// escalated (a delivery that had to email), failed, and sagas waiting in compensation_failed.
//
// Built from the engine's public readers only (the visibility index by type, then each running
// workflow's record and open activities), so it follows the engine's key layout wherever it goes.
// The scan is bounded (kMaxOverviewScan workflows); past it the answer says `truncated`.
// Thread-safety: a pure function of the reader it is given.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "storage/engine.h"

namespace herald::server {

// Workflows the overview reads at most (across every type).
inline constexpr std::size_t kMaxOverviewScan = 20'000;
// Entries per attention list, at most and by default.
inline constexpr std::size_t kMaxOverviewListLimit = 1'000;
inline constexpr std::size_t kDefaultOverviewListLimit = 50;
// A running workflow whose last change is older than this counts as stuck, by default.
inline constexpr std::int64_t kDefaultStuckAfterMs = 5LL * 60 * 1000;
// Open activities read per running workflow, at most.
inline constexpr std::size_t kMaxOverviewActivitiesPerWorkflow = 16;

struct OverviewOptions {
  std::int64_t now_ms = 0;
  std::int64_t stuck_after_ms = kDefaultStuckAfterMs;
  std::size_t list_limit = kDefaultOverviewListLimit;
  std::size_t scan_limit = kMaxOverviewScan;
};

// One workflow in an attention list.
struct OverviewItem {
  std::string workflow_id;
  std::string type;
  std::string status;  // "running", "failed", ...
  std::string state;
  std::int64_t updated_ms = 0;
  // Retrying: the activity waiting, its last attempt and error, and when the next one is due.
  std::string activity_type;
  std::uint32_t attempt = 0;
  std::int64_t next_attempt_ms = 0;
  std::string error_type;
  std::string error_message;
};

struct WorkflowOverview {
  // (type, state label) -> workflows: the named state while running, else the closing status in
  // lower case ("completed", "failed", ...).
  std::map<std::pair<std::string, std::string>, std::uint64_t> counts;
  std::vector<OverviewItem> stuck;
  std::vector<OverviewItem> retrying;
  std::vector<OverviewItem> escalated;
  std::vector<OverviewItem> failed;
  std::vector<OverviewItem> compensation_failed;
  std::uint64_t scanned = 0;
  bool truncated = false;  // more than options.scan_limit workflows: counts and lists are partial
};

// The overview of every workflow of `types`. Errors: the readers' (kCorruption for damage).
[[nodiscard]] Result<WorkflowOverview> workflow_overview(const storage::Reader& reader,
                                                         const std::vector<std::string>& types,
                                                         const OverviewOptions& options);

}  // namespace herald::server
