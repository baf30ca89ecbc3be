#include "server/workflow_overview.h"

#include <algorithm>
#include <cctype>

#include "messaging/delivery.h"
#include "workflow/engine.h"
#include "workflow/saga.h"

namespace herald::server {

namespace {

// Visibility entries read per page.
constexpr std::size_t kOverviewPageSize = 1'000;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// `updated_ms`: the run's last transition (its record's), or for a closed run when it closed.
OverviewItem item_of(const workflow::VisibilityEntry& e, std::int64_t updated_ms) {
  OverviewItem item;
  item.workflow_id = e.workflow_id;
  item.type = e.type;
  item.status = lower(workflowpb::WorkflowStatus_Name(e.status));
  item.state = e.state;
  item.updated_ms = updated_ms;
  return item;
}

void add_bounded(std::vector<OverviewItem>& list, OverviewItem item, std::size_t limit) {
  if (list.size() < limit) list.push_back(std::move(item));
}

// A running workflow's place in the lists: stuck (no transition for stuck_after_ms, by its
// record's updated_ms), compensation_failed, escalated, and its retrying activities (waiting out
// a backoff).
Status inspect_running(const storage::Reader& reader, const workflow::VisibilityEntry& entry,
                       const OverviewOptions& options, WorkflowOverview& out) {
  HERALD_ASSIGN_OR_RETURN(auto record, workflow::Engine::read_workflow(reader, entry.workflow_id));
  if (!record) return Status::ok_status();  // purged between the index and the record
  const std::int64_t updated_ms = record->updated_ms();
  if (entry.state == workflow::kSagaCompensationFailed) {
    add_bounded(out.compensation_failed, item_of(entry, updated_ms), options.list_limit);
  }
  if (options.now_ms - updated_ms >= options.stuck_after_ms) {
    add_bounded(out.stuck, item_of(entry, updated_ms), options.list_limit);
  }
  if (record->type() == messaging::kDeliveryType) {
    const auto data = messaging::decode_delivery_data(record->data());
    if (data && data->escalated()) {
      add_bounded(out.escalated, item_of(entry, updated_ms), options.list_limit);
    }
  }
  std::size_t read = 0;
  for (const std::uint64_t activity_id : record->open_activity_ids()) {
    if (++read > kMaxOverviewActivitiesPerWorkflow) break;
    HERALD_ASSIGN_OR_RETURN(
        auto act, workflow::Engine::read_activity(
                      reader, workflow::ActivityRef{record->workflow_id(), record->run_id(),
                                                    activity_id, 0}));
    if (!act || act->phase() != workflowpb::BACKOFF) continue;
    OverviewItem item = item_of(entry, updated_ms);
    item.activity_type = act->activity_type();
    item.attempt = act->attempt();
    item.error_type = act->last_error_type();
    item.error_message = act->last_error_message();
    for (const auto& timer : act->timers()) {
      if (timer.kind() == workflowpb::ACTIVITY_RETRY) item.next_attempt_ms = timer.due_ms();
    }
    add_bounded(out.retrying, std::move(item), options.list_limit);
  }
  return Status::ok_status();
}

Status account(const storage::Reader& reader, const workflow::VisibilityEntry& entry,
               const OverviewOptions& options, WorkflowOverview& out) {
  const bool running = entry.status == workflowpb::RUNNING;
  const std::string label =
      running ? entry.state : lower(workflowpb::WorkflowStatus_Name(entry.status));
  ++out.counts[{entry.type, label}];
  if (entry.status == workflowpb::FAILED) {
    // A closed run's status and state last changed when it closed.
    add_bounded(out.failed, item_of(entry, entry.state_since_ms), options.list_limit);
  }
  if (!running) return Status::ok_status();
  return inspect_running(reader, entry, options, out);
}

}  // namespace

Result<WorkflowOverview> workflow_overview(const storage::Reader& reader,
                                           const std::vector<std::string>& types,
                                           const OverviewOptions& options) {
  WorkflowOverview out;
  for (const std::string& type : types) {
    workflow::ListFilter filter;
    filter.type = type;
    filter.limit = kOverviewPageSize;
    do {
      HERALD_ASSIGN_OR_RETURN(workflow::ListPage page, workflow::Engine::list(reader, filter));
      for (const workflow::VisibilityEntry& entry : page.entries) {
        if (out.scanned >= options.scan_limit) {
          out.truncated = true;
          return out;
        }
        ++out.scanned;
        HERALD_RETURN_IF_ERROR(account(reader, entry, options, out));
      }
      filter.page_token = std::move(page.next_page_token);
    } while (!filter.page_token.empty());
  }
  return out;
}

}  // namespace herald::server
