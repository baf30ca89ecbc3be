// End to end: GET /metrics of a real `herald serve` process (docs/metrics.md). The scrape is
// refused without the operator credential, parses under the format's rules, holds every family
// docs/metrics.md lists with the documented type, and its values move with traffic sent through
// real device WebSockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "base/metrics_parse.h"
#include "client/admin_client.h"
#include "client/herald_client.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/devices.h"

namespace herald::e2e {
namespace {

using Families = std::map<std::string, metrics::ParsedFamily>;

// Bound on a fresh node electing itself and serving.
constexpr std::uint32_t kStartupTimeoutMs = 15'000;
// Bound on one scrape's answer.
constexpr int kScrapeTimeoutSeconds = 5;
// Messages alice sends between the two scrapes.
constexpr int kMessages = 3;

struct RawReply {
  int status = 0;
  std::string headers;  // lower-cased
  std::string body;
};

// GET `path` on 127.0.0.1:`port` over a plain socket, so that the answer's headers can be read;
// `token` empty sends no Authorization header.
Result<RawReply> raw_get(std::uint16_t port, const std::string& path, const std::string& token) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::io_error("socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } const closer{fd};
  const timeval timeout{kScrapeTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::io_error("connect");
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  request += "\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return Status::io_error("send");
  }
  std::string raw;
  char buf[16384];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, n);
  const std::size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.size() < 12) return Status::io_error("no complete answer");
  RawReply reply;
  reply.status = std::stoi(raw.substr(9, 3));
  reply.headers = raw.substr(0, end);
  for (char& c : reply.headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  reply.body = raw.substr(end + 4);
  return reply;
}

// Every family docs/metrics.md lists in its tables ("| `name` | type | ..."), with its type.
std::map<std::string, std::string> documented_families() {
  std::ifstream doc(HERALD_METRICS_DOC);
  EXPECT_TRUE(doc.good()) << "cannot read " << HERALD_METRICS_DOC;
  std::map<std::string, std::string> out;
  const std::regex row(R"(^\| `(herald_[a-z_]+)` \| (counter|gauge|histogram) \|)");
  for (std::string line; std::getline(doc, line);) {
    std::smatch m;
    if (std::regex_search(line, m, row)) out.emplace(m[1], m[2]);
  }
  return out;
}

class Metrics : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = must(Cluster::create(1), "creating the cluster");
    must(cluster_->start_all(), "starting the node");
    must(cluster_->leader(kStartupTimeoutMs), "waiting for a leader");
    admin_ = std::make_unique<client::AdminClient>(cluster_->admin(1));
    for (const char* user : {"alice", "bob"}) must(admin_->create_user(user, user), user);
    alice_ = must(provision_device(*admin_, "alice", "a-phone"), "a-phone");
    bob_ = must(provision_device(*admin_, "bob", "b-phone"), "b-phone");
    direct_ = must(admin_->create_conversation({"alice", "direct", {"bob"}, "", ""}), "direct")
                  .conversation_id;
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::fprintf(stderr, "---- node 1 log (tail) ----\n%s\n", cluster_->log_tail(1).c_str());
    }
  }

  // A scrape with the credential, checked against the format's rules.
  Families scrape() {
    const RawReply reply = must(raw_get(port(), "/metrics", kAdminToken), "scraping");
    EXPECT_EQ(reply.status, 200) << reply.body;
    EXPECT_NE(reply.headers.find("content-type: text/plain; version=0.0.4; charset=utf-8"),
              std::string::npos)
        << reply.headers;
    auto parsed = metrics::parse_exposition(reply.body);
    EXPECT_TRUE(parsed.ok()) << parsed.status().to_string() << "\n" << reply.body;
    return parsed.ok() ? *std::move(parsed) : Families();
  }

  std::uint16_t port() const { return cluster_->node(1).client_port; }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<client::AdminClient> admin_;
  DeviceCredentials alice_;
  DeviceCredentials bob_;
  std::string direct_;
};

double value(const Families& f, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  return metrics::sample_value(f, name, name, labels);
}

double count_of(const Families& f, const std::string& histogram) {
  return metrics::sample_value(f, histogram, histogram + "_count");
}

TEST_F(Metrics, AScrapeWithoutTheOperatorCredentialIsRefused) {
  EXPECT_EQ(must(raw_get(port(), "/metrics", ""), "scraping").status, 401);
  EXPECT_EQ(must(raw_get(port(), "/metrics", "not-the-token"), "scraping").status, 401);
}

TEST_F(Metrics, EveryDocumentedFamilyIsExposedWithItsTypeAndUnit) {
  const Families scraped = scrape();
  const auto documented = documented_families();
  ASSERT_FALSE(documented.empty());
  for (const auto& [name, type] : documented) {
    const auto it = scraped.find(name);
    ASSERT_NE(it, scraped.end()) << name << " is documented but not exposed";
    EXPECT_EQ(it->second.type, type) << name;
    EXPECT_FALSE(it->second.help.empty()) << name;
  }
  for (const auto& [name, family] : scraped) {
    EXPECT_TRUE(documented.contains(name)) << name << " is exposed but not documented";
    EXPECT_TRUE(name.starts_with("herald_")) << name;
    if (family.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (family.type == "histogram") {
      EXPECT_TRUE(name.ends_with("_seconds")) << name;
    }
  }
}

TEST_F(Metrics, ValuesMoveWithTrafficThroughTheDeviceSocket) {
  const Families before = scrape();
  EXPECT_EQ(value(before, "herald_raft_role", {{"role", "leader"}}), 1);
  EXPECT_GE(value(before, "herald_raft_term"), 1);

  auto alice = must(connect_device(port(), alice_), "connecting alice");
  auto bob = must(connect_device(port(), bob_), "connecting bob");
  std::uint64_t last = 0;
  for (int i = 0; i < kMessages; ++i) {
    last = must(alice->send(direct_, "m-" + std::to_string(i), "hello"), "send").seq;
  }
  EXPECT_EQ(must(bob->ack(direct_, last), "ack"), last);
  must(bob->read(direct_, last), "read");
  const Families after = scrape();

  EXPECT_EQ(value(after, "herald_ws_connections") - value(before, "herald_ws_connections"), 2);
  // Two auths, the sends, an ack and a read at least.
  EXPECT_GE(value(after, "herald_ws_frames_received_total") -
                value(before, "herald_ws_frames_received_total"),
            kMessages + 4);
  EXPECT_GE(
      value(after, "herald_ws_frames_sent_total") - value(before, "herald_ws_frames_sent_total"),
      kMessages + 4);
  EXPECT_GE(
      value(after, "herald_raft_proposals_total") - value(before, "herald_raft_proposals_total"),
      kMessages + 1);
  EXPECT_GE(value(after, "herald_raft_committed_entries_total") -
                value(before, "herald_raft_committed_entries_total"),
            kMessages + 1);
  EXPECT_GT(value(after, "herald_raft_commit_index"), value(before, "herald_raft_commit_index"));
  EXPECT_GT(count_of(after, "herald_raft_log_sync_seconds"),
            count_of(before, "herald_raft_log_sync_seconds"));
  EXPECT_GT(count_of(after, "herald_raft_apply_seconds"),
            count_of(before, "herald_raft_apply_seconds"));
  EXPECT_EQ(count_of(after, "herald_messaging_send_stored_seconds") -
                count_of(before, "herald_messaging_send_stored_seconds"),
            kMessages);
  EXPECT_EQ(count_of(after, "herald_messaging_stored_delivered_seconds") -
                count_of(before, "herald_messaging_stored_delivered_seconds"),
            1);
  EXPECT_EQ(count_of(after, "herald_messaging_delivered_read_seconds") -
                count_of(before, "herald_messaging_delivered_read_seconds"),
            1);
  // Each send started a delivery workflow for bob; the read started a read-sync saga.
  EXPECT_GE(
      value(after, "herald_workflow_transitions_total", {{"type", "messaging.delivery"}}) -
          value(before, "herald_workflow_transitions_total", {{"type", "messaging.delivery"}}),
      kMessages);
  EXPECT_GE(value(after, "herald_workflow_transitions_total", {{"type", "messaging.read_sync"}}),
            1);
  EXPECT_GE(value(after, "herald_workflow_activity_attempts_total", {{"outcome", "ok"}}), 1);

  alice.reset();
  bob.reset();
  for (int i = 0; i < 100 && value(scrape(), "herald_ws_connections") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kPollIntervalMs));
  }
  EXPECT_EQ(value(scrape(), "herald_ws_connections"), 0);
}

TEST_F(Metrics, AnErrorFrameIsCountedByItsCode) {
  auto alice = must(connect_device(port(), alice_), "connecting alice");
  EXPECT_FALSE(alice->send("no-such-conversation", "m-1", "hello").ok());
  const Families after = scrape();
  double errors = 0;
  for (const auto& s : after.at("herald_ws_errors_total").samples) {
    EXPECT_NE(s.labels.at("code"), "");
    errors += s.value;
  }
  EXPECT_GE(errors, 1);
}

}  // namespace
}  // namespace herald::e2e
