// Scenario tests: readable scripts in raft/testdata/*.txt with their expected traces, in the
// spirit of etcd-io/raft's interaction tests.
//
// File format: '#' lines are comments (each file starts by citing the Raft section it covers);
// a command line is followed by a line "----" and the expected output, ending at a blank line.
// HERALD_REWRITE=1 rewrites every file with the actual output (review each diff by reading it).
//
// Commands (ids are node ids):
//   add-nodes N                 bootstrap N voters (first call) or add N empty nodes
//   campaign ID | tick ID [N] | tick-heartbeat ID
//   propose ID DATA | read-index ID CTX | transfer-leadership ID TRANSFEREE
//   add-learner ID NODE | add-voter ID NODE | remove-node ID NODE   (propose a config change)
//   process-ready ID | deliver-msgs ID | drop-msgs ID | stabilize
//   partition ID... | heal | crash ID | restart ID | compact ID INDEX
//   report-snapshot ID PEER ok|fail | report-unreachable ID PEER | status ID | log ID
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "raft/test_cluster.h"

namespace herald::raft {
namespace {

namespace fs = std::filesystem;
using testing::TestCluster;

struct Block {
  std::vector<std::string> preamble;  // comments and blank lines before the command
  std::string command;
  std::string expected;
};

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::vector<Block> parse(const std::string& path, std::vector<std::string>* trailer) {
  std::ifstream in(path);
  std::vector<Block> blocks;
  Block current;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      current.preamble.push_back(line);
      continue;
    }
    current.command = line;
    std::getline(in, line);
    EXPECT_EQ(line, "----") << path << ": command without ---- : " << current.command;
    while (std::getline(in, line) && !line.empty()) current.expected += line + "\n";
    blocks.push_back(std::move(current));
    current = Block();
  }
  *trailer = current.preamble;
  return blocks;
}

class Interpreter {
 public:
  std::string run(const std::string& command) {
    out_.str("");
    const std::vector<std::string> w = split(command);
    auto it = handlers().find(w.at(0));
    if (it == handlers().end()) return "unknown command: " + w[0] + "\n";
    it->second(this, w);
    const std::string text = out_.str();
    return text.empty() ? "ok\n" : text;
  }

 private:
  using Args = std::vector<std::string>;
  using Handler = std::function<void(Interpreter*, const Args&)>;

  static NodeId id(const Args& w, std::size_t k) { return std::stoull(w.at(k)); }

  void report(const Status& s) {
    if (!s.ok()) out_ << "error: " << s.to_string() << "\n";
  }

  void conf_change(const Args& w, raftpb::ConfChangeType type) {
    raftpb::ConfChange cc;
    cc.set_type(type);
    cc.set_node_id(id(w, 2));
    report(cluster_.node(id(w, 1)).propose_conf_change(cc));
  }

  void status(NodeId node) {
    const NodeStatus s = cluster_.node(node).status();
    out_ << node << ": role=" << role_name(s.role) << " term=" << s.term << " leader=" << s.leader
         << " vote=" << s.vote << " commit=" << s.commit << " applied=" << s.applied
         << " last=" << s.last_index << " " << testing::describe(s.conf_state) << "\n";
    if (s.lead_transferee != kNoNode) out_ << "  transferee=" << s.lead_transferee << "\n";
    for (const PeerProgress& p : s.progress) {
      out_ << "  " << p.id << (p.learner ? " (learner)" : "") << ": " << p.state
           << " match=" << p.match << " next=" << p.next << " inflight=" << p.inflight_msgs << "\n";
    }
  }

  void log(NodeId node) {
    MemoryLogStorage& st = cluster_.storage(node);
    out_ << node << ": first=" << st.first_index() << " last=" << st.last_index()
         << " commit=" << st.hard_state().commit() << " term=" << st.hard_state().term() << "\n";
    Result<std::vector<raftpb::Entry>> entries =
        st.entries(st.first_index(), st.last_index() + 1, ~std::uint64_t{0});
    if (!entries.ok()) return;
    for (const raftpb::Entry& e : *entries) out_ << "  " << testing::describe(e) << "\n";
  }

  static const std::map<std::string, Handler>& handlers() {
    static const std::map<std::string, Handler> table = {
        {"add-nodes", [](Interpreter* t, const Args& w) { t->cluster_.add_nodes(id(w, 1)); }},
        {"campaign",
         [](Interpreter* t, const Args& w) { t->report(t->cluster_.node(id(w, 1)).campaign()); }},
        {"tick",
         [](Interpreter* t, const Args& w) {
           t->cluster_.tick(id(w, 1), w.size() > 2 ? std::stoi(w[2]) : 1);
         }},
        {"tick-heartbeat",
         [](Interpreter* t, const Args& w) { t->cluster_.tick(id(w, 1), kDefaultHeartbeatTicks); }},
        {"propose", [](Interpreter* t,
                       const Args& w) { t->report(t->cluster_.node(id(w, 1)).propose(w.at(2))); }},
        {"read-index",
         [](Interpreter* t, const Args& w) { t->cluster_.node(id(w, 1)).read_index(w.at(2)); }},
        {"transfer-leadership",
         [](Interpreter* t, const Args& w) {
           t->cluster_.node(id(w, 1)).transfer_leadership(id(w, 2));
         }},
        {"add-learner",
         [](Interpreter* t, const Args& w) { t->conf_change(w, raftpb::CONF_CHANGE_ADD_LEARNER); }},
        {"add-voter",
         [](Interpreter* t, const Args& w) { t->conf_change(w, raftpb::CONF_CHANGE_ADD_VOTER); }},
        {"remove-node",
         [](Interpreter* t, const Args& w) { t->conf_change(w, raftpb::CONF_CHANGE_REMOVE_NODE); }},
        {"process-ready",
         [](Interpreter* t, const Args& w) { t->cluster_.process_ready(id(w, 1)); }},
        {"deliver-msgs", [](Interpreter* t, const Args& w) { t->cluster_.deliver_to(id(w, 1)); }},
        {"drop-msgs", [](Interpreter* t, const Args& w) { t->cluster_.drop_to(id(w, 1)); }},
        {"stabilize", [](Interpreter* t, const Args&) { t->cluster_.stabilize(); }},
        {"partition",
         [](Interpreter* t, const Args& w) {
           std::set<NodeId> side;
           for (std::size_t k = 1; k < w.size(); ++k) side.insert(id(w, k));
           t->cluster_.partition(side);
         }},
        {"heal", [](Interpreter* t, const Args&) { t->cluster_.heal(); }},
        {"crash", [](Interpreter* t, const Args& w) { t->cluster_.crash(id(w, 1)); }},
        {"restart", [](Interpreter* t, const Args& w) { t->cluster_.restart(id(w, 1)); }},
        {"compact", [](Interpreter* t,
                       const Args& w) { t->cluster_.compact(id(w, 1), std::stoull(w.at(2))); }},
        {"report-snapshot",
         [](Interpreter* t, const Args& w) {
           t->cluster_.node(id(w, 1)).report_snapshot(id(w, 2), w.at(3) == "ok");
         }},
        {"report-unreachable",
         [](Interpreter* t, const Args& w) {
           t->cluster_.node(id(w, 1)).report_unreachable(id(w, 2));
         }},
        {"status", [](Interpreter* t, const Args& w) { t->status(id(w, 1)); }},
        {"log", [](Interpreter* t, const Args& w) { t->log(id(w, 1)); }},
    };
    return table;
  }

  std::ostringstream out_;
  TestCluster cluster_{testing::ClusterOptions{}, &out_};
};

std::vector<std::string> scenario_files() {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(HERALD_RAFT_TESTDATA_DIR)) {
    if (e.path().extension() == ".txt") files.push_back(e.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class ScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, MatchesExpectedTrace) {
  const std::string path = std::string(HERALD_RAFT_TESTDATA_DIR) + "/" + GetParam();
  std::vector<std::string> trailer;
  std::vector<Block> blocks = parse(path, &trailer);
  ASSERT_FALSE(blocks.empty());
  ASSERT_FALSE(blocks.front().preamble.empty()) << "a scenario starts with a citing comment";
  Interpreter interpreter;
  const bool rewrite = std::getenv("HERALD_REWRITE") != nullptr;
  std::ostringstream rewritten;
  for (Block& b : blocks) {
    const std::string actual = interpreter.run(b.command);
    if (!rewrite) {
      EXPECT_EQ(actual, b.expected) << path << ": " << b.command;
    }
    for (const std::string& line : b.preamble) rewritten << line << "\n";
    rewritten << b.command << "\n----\n" << actual << "\n";
  }
  for (const std::string& line : trailer) rewritten << line << "\n";
  if (rewrite) std::ofstream(path) << rewritten.str();
}

INSTANTIATE_TEST_SUITE_P(Scripts, ScenarioTest, ::testing::ValuesIn(scenario_files()),
                         [](const auto& info) {
                           std::string name = info.param.substr(0, info.param.size() - 4);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace herald::raft
