#include "server/search.h"

#include <gtest/gtest.h>

#include "messaging/delivery.h"
#include "messaging/read_sync.h"
#include "storage/mem_engine.h"
#include "workflow/demo.h"
#include "workflow/engine.h"

namespace herald::server {
namespace {

TEST(SearchTest, AMessageIsAConversationAndASeqWithAnySeparator) {
  EXPECT_EQ(parse_message_query("team 12"), (MessageRef{"team", 12}));
  EXPECT_EQ(parse_message_query("team/12"), (MessageRef{"team", 12}));
  EXPECT_EQ(parse_message_query("team#12"), (MessageRef{"team", 12}));
  // The last separator counts: conversation ids may hold the others.
  EXPECT_EQ(parse_message_query("direct:alice:bob/7"), (MessageRef{"direct:alice:bob", 7}));
  EXPECT_EQ(parse_message_query("a b/3"), (MessageRef{"a b", 3}));
}

TEST(SearchTest, QueriesThatNameNoMessageAreNotMessages) {
  for (const char* q : {"team", "team/", "/12", "team/0", "team/x1", "team/-3", "team 1.5",
                        "team/99999999999999999999999"}) {
    EXPECT_FALSE(parse_message_query(q).has_value()) << q;
  }
}

TEST(SearchTest, ComposedWorkflowIdsSplitIntoTheirUnescapedParts) {
  const std::string id = messaging::delivery_workflow_id("a/b%c", 42, "bob");
  const auto parts = split_workflow_id(id);
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(*parts, (std::vector<std::string>{"delivery", "a/b%c", "42", "bob"}));
  EXPECT_FALSE(split_workflow_id("delivery/a%2").has_value());
  EXPECT_FALSE(split_workflow_id("delivery/a%zz/1").has_value());
}

TEST(SearchTest, DeliveryAndReadSyncWorkflowsNameTheirMessage) {
  EXPECT_EQ(message_of_workflow(messaging::delivery_workflow_id("team/x", 9, "carol")),
            (MessageRef{"team/x", 9}));
  EXPECT_EQ(message_of_workflow(messaging::read_sync_workflow_id("bob", "bob-phone", "team", 4)),
            (MessageRef{"team", 4}));
  EXPECT_FALSE(message_of_workflow("order-17").has_value());
  EXPECT_FALSE(message_of_workflow("delivery/team/zero/bob").has_value());
}

TEST(SearchTest, AnEmptyOrOversizedQueryIsRefused) {
  const storage::MemEngine store;
  EXPECT_EQ(search(store, "   ").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(search(store, std::string(kMaxSearchQueryBytes + 1, 'a')).status().code(),
            Code::kInvalidArgument);
}

TEST(SearchTest, AWorkflowIsFoundByItsIdAndNothingElseMatches) {
  workflow::Registry registry;
  ASSERT_TRUE(registry.add(workflow::make_demo_pipeline_type()).ok());
  workflow::Engine engine(&registry);
  storage::MemEngine store;
  {
    rsm::ApplyBatch batch(&store);
    workflowpb::WorkflowCommand c;
    c.mutable_start()->set_workflow_id("order-17");
    c.mutable_start()->set_type(std::string(workflow::make_demo_pipeline_type()->name()));
    c.mutable_start()->set_input("2");
    ASSERT_EQ(engine.apply_command(c, 1'000, batch).code(), 0u);
    ASSERT_TRUE(store.write(batch.writes(), false).ok());
  }
  auto found = search(store, "  order-17 ");
  ASSERT_TRUE(found.ok()) << found.status().to_string();
  ASSERT_EQ(found->size(), 1u);
  const auto& hit = found->at(0).as_object();
  EXPECT_EQ(hit.at("kind").as_string(), "workflow");
  EXPECT_EQ(hit.at("id").as_string(), "order-17");
  EXPECT_EQ(hit.at("status").as_string(), "running");
  EXPECT_FALSE(hit.contains("message"));

  auto none = search(store, "nobody");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace herald::server
