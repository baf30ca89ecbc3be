// A replica's webhook-relevant modules on a MemEngine, for the webhooks unit tests: the workflow
// engine with the delivery, read-sync and webhook types, the emitter as its observer, and the
// endpoints module. Commands are applied one batch each, as rsm::Node would.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "messaging/delivery.h"
#include "messaging/read_sync.h"
#include "storage/mem_engine.h"
#include "webhooks/delivery.h"
#include "webhooks/emitter.h"
#include "webhooks/endpoints.h"
#include "workflow/engine.h"

namespace herald::webhooks::testing {

class Harness {
 public:
  explicit Harness(bool observe = true) {
    EXPECT_TRUE(registry_.add(make_webhook_type()).ok());
    EXPECT_TRUE(registry_.add(messaging::make_delivery_type()).ok());
    EXPECT_TRUE(registry_.add(messaging::make_read_sync_type()).ok());
    if (observe) engine_.set_observer(&emitter_);
  }

  rsmpb::CommandResult apply(const workflowpb::WorkflowCommand& wc, std::int64_t now_ms) {
    rsm::ApplyBatch batch(&store_);
    rsmpb::CommandResult result = engine_.apply_command(wc, now_ms, batch);
    last_writes_ = batch.writes().ops().size();
    EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    return result;
  }

  rsmpb::CommandResult put_endpoint(const std::string& id, std::vector<std::string> events,
                                    std::int64_t now_ms = 1) {
    webhookspb::WebhookCommand c;
    c.mutable_put()->set_endpoint_id(id);
    c.mutable_put()->set_url("http://127.0.0.1:9/" + id);
    c.mutable_put()->set_secret("key-of-" + id);
    for (auto& e : events) c.mutable_put()->add_events(std::move(e));
    return apply_endpoints(c, now_ms);
  }

  rsmpb::CommandResult apply_endpoints(const webhookspb::WebhookCommand& c, std::int64_t now_ms) {
    rsmpb::Command command;
    command.set_wall_ms(now_ms);
    command.mutable_module()->set_name(kModuleName);
    command.mutable_module()->set_payload(c.SerializeAsString());
    rsm::ApplyBatch batch(&store_);
    rsmpb::CommandResult result = endpoints_.apply(++index_, command, batch);
    if (result.code() == 0) {
      EXPECT_TRUE(store_.write(batch.writes(), false).ok());
    }
    return result;
  }

  // The ids of every "webhook.delivery" run, in id order.
  std::vector<std::string> webhook_runs() {
    std::vector<std::string> ids;
    workflow::ListFilter filter;
    filter.type = kWebhookType;
    filter.limit = 1000;
    auto page = workflow::Engine::list(store_, filter);
    EXPECT_TRUE(page.ok());
    for (const auto& e : page->entries) ids.push_back(e.workflow_id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  storage::MemEngine store_;
  workflow::Registry registry_;
  workflow::Engine engine_{&registry_};
  Emitter emitter_;
  Endpoints endpoints_;
  std::size_t last_writes_ = 0;
  raft::Index index_ = 0;
};

}  // namespace herald::webhooks::testing
