#include "tests/e2e/cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include "base/assert.h"

namespace herald::e2e {

namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string& binary_path() {
  static std::string path;
  return path;
}

void pause_ms(std::uint32_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// A socket bound to a free loopback port; closed by the caller once every port is chosen, so
// that one cluster never gets the same port twice.
Result<std::pair<int, std::uint16_t>> bind_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::io_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return Status::io_error("cannot bind a loopback port");
  }
  return std::make_pair(fd, ntohs(addr.sin_port));
}

// The child's side of start(): only async-signal-safe calls between fork and exec.
[[noreturn]] void exec_child(const char* log_path, const std::vector<char*>& argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int log = ::open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  const int null = ::open("/dev/null", O_RDONLY);
  if (log >= 0) {
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
  }
  if (null >= 0) ::dup2(null, STDIN_FILENO);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

// Reaps `pid` if it has exited; true when it is gone.
bool reaped(pid_t pid, int* status) {
  const pid_t r = ::waitpid(pid, status, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

// Waits up to `timeout_ms` for `pid` to exit; true when it did.
bool wait_exit(pid_t pid, std::uint32_t timeout_ms, int* status) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!reaped(pid, status)) {
    if (Clock::now() >= deadline) return false;
    pause_ms(1);
  }
  return true;
}

Result<PushRecord> parse_push_line(const std::string& line) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return Status::corruption("a journal line is not a JSON object");
  const json::object& o = v.get_object();
  PushRecord r;
  try {
    r.user_id = json::value_to<std::string>(o.at("user_id"));
    r.device_id = json::value_to<std::string>(o.at("device_id"));
    r.conversation_id = json::value_to<std::string>(o.at("conversation_id"));
    r.seq = o.at("seq").to_number<std::uint64_t>();
    r.idempotency_key = json::value_to<std::string>(o.at("idempotency_key"));
    r.ok = o.at("ok").as_bool();
  } catch (const std::exception& e) {
    return Status::corruption(fmt::format("a journal line lacks a field: {} ({})", e.what(), line));
  }
  return r;
}

}  // namespace

void set_herald_binary(std::string path) {
  binary_path() = std::move(path);
}

const std::string& herald_binary() {
  return binary_path();
}

Result<std::unique_ptr<Cluster>> Cluster::create(std::size_t size) {
  HERALD_ASSERT(size >= 1 && size <= kMaxNodes, "a test cluster has 1 to kMaxNodes nodes");
  HERALD_ASSERT(!herald_binary().empty(), "set_herald_binary() first");
  std::string pattern = (fs::temp_directory_path() / "herald-e2e-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return Status::io_error("mkdtemp failed");
  std::unique_ptr<Cluster> cluster(new Cluster());
  cluster->root_ = pattern;
  std::vector<int> held;
  Status bound = Status::ok_status();
  for (std::size_t i = 0; i < size && bound.ok(); ++i) {
    Node n;
    n.id = i + 1;
    for (std::uint16_t* port : {&n.client_port, &n.peer_port}) {
      auto fd_port = bind_free_port();
      if (!fd_port.ok()) {
        bound = fd_port.status();
        break;
      }
      held.push_back(fd_port->first);
      *port = fd_port->second;
    }
    const std::string base = fmt::format("{}/n{}", cluster->root_, n.id);
    n.data_dir = base;
    n.log_path = base + ".log";
    n.push_journal = base + ".push.jsonl";
    cluster->nodes_.push_back(std::move(n));
  }
  for (const int fd : held) ::close(fd);
  HERALD_RETURN_IF_ERROR(bound);
  const std::string secret_file = cluster->root_ + "/cluster-secret";
  HERALD_RETURN_IF_ERROR(write_secret_file(secret_file, random_secret()));
  for (Node& n : cluster->nodes_) n.secret_file = secret_file;
  return cluster;
}

// A fresh random secret, as hex digits.
std::string Cluster::random_secret() {
  std::random_device random;
  std::string secret;
  while (secret.size() < 2 * kSecretBytes) {
    secret += fmt::format("{:08x}", random());
  }
  return secret;
}

Status Cluster::write_secret_file(const std::string& path, const std::string& secret) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << secret << "\n";
    if (!out.flush()) return Status::io_error("cannot write " + path);
  }
  std::error_code ec;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, ec);
  if (ec) return Status::io_error("cannot restrict " + path + ": " + ec.message());
  return Status::ok_status();
}

Status Cluster::set_secret(std::uint64_t id, const std::string& secret) {
  Node& n = mutable_node(id);
  if (secret.empty()) {
    n.secret_file.clear();
    return Status::ok_status();
  }
  n.secret_file = fmt::format("{}/n{}.secret", root_, id);
  return write_secret_file(n.secret_file, secret);
}

Cluster::~Cluster() {
  for (const Node& n : nodes_) kill(n.id);
  if (std::getenv("HERALD_E2E_KEEP") != nullptr) {
    std::fprintf(stderr, "herald e2e: kept %s\n", root_.c_str());
    return;
  }
  std::error_code ignored;
  fs::remove_all(root_, ignored);
}

Cluster::Node& Cluster::mutable_node(std::uint64_t id) {
  HERALD_ASSERT(id >= 1 && id <= nodes_.size(), "no such node");
  return nodes_[id - 1];
}

const Cluster::Node& Cluster::node(std::uint64_t id) const {
  HERALD_ASSERT(id >= 1 && id <= nodes_.size(), "no such node");
  return nodes_[id - 1];
}

void Cluster::set_initial_members(std::size_t count) {
  HERALD_ASSERT(count >= 1, "a cluster needs an initial member");
  initial_members_ = count;
}

std::vector<std::string> Cluster::ctl_args(std::uint64_t id) const {
  const std::uint16_t port = node(id).client_port;
  std::vector<std::string> args{herald_binary(), "ctl", "--token", kAdminToken, "--node"};
  if (!client_tls_.has_value()) {
    args.push_back(fmt::format("127.0.0.1:{}", port));
    return args;
  }
  args.push_back(fmt::format("https://127.0.0.1:{}", port));
  if (!client_tls_->ca_file.empty()) args.insert(args.end(), {"--ca-file", client_tls_->ca_file});
  return args;
}

std::string Cluster::peers_spec(std::size_t count) const {
  std::string spec;
  for (const Node& n : nodes_) {
    if (n.id > count) break;
    spec += fmt::format("{}{}=127.0.0.1:{}", spec.empty() ? "" : ",", n.id, n.peer_port);
  }
  return spec;
}

Status Cluster::start_all() {
  for (const Node& n : nodes_) {
    if (n.pid < 0) HERALD_RETURN_IF_ERROR(start(n.id));
  }
  return Status::ok_status();
}

Status Cluster::set_config(const std::string& toml) {
  if (toml.empty()) {
    config_file_.clear();
    return Status::ok_status();
  }
  const std::string path = root_ + "/herald.toml";
  std::ofstream out(path, std::ios::trunc);
  out << toml;
  out.close();
  if (!out) return Status::io_error(fmt::format("cannot write {}", path));
  config_file_ = path;
  return Status::ok_status();
}

Status Cluster::start(std::uint64_t id) {
  Node& n = mutable_node(id);
  HERALD_ASSERT(n.pid < 0, "the node is running");
  const bool joining = n.id > initial_members_;
  std::vector<std::string> args{
      herald_binary(), "serve",
      "--id",          std::to_string(n.id),
      "--data",        n.data_dir,
      "--client",      fmt::format("127.0.0.1:{}", n.client_port),
      "--peer",        fmt::format("127.0.0.1:{}", n.peer_port),
      "--peers",       peers_spec(joining ? nodes_.size() : initial_members_),
      "--admin-token", kAdminToken};
  if (push_journal_) args.insert(args.end(), {"--push-journal", n.push_journal});
  if (!n.secret_file.empty()) args.insert(args.end(), {"--cluster-secret-file", n.secret_file});
  if (!config_file_.empty()) args.insert(args.end(), {"--config", config_file_});
  if (joining) args.emplace_back("--join");
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return Status::io_error("fork failed");
  if (pid == 0) exec_child(n.log_path.c_str(), argv);
  n.pid = pid;
  return Status::ok_status();
}

void Cluster::kill(std::uint64_t id) {
  Node& n = mutable_node(id);
  if (n.pid < 0) return;
  ::kill(n.pid, SIGKILL);
  int status = 0;
  const bool gone = wait_exit(n.pid, kStopTimeoutMs, &status);
  HERALD_ASSERT(gone, "a SIGKILLed node did not exit");
  n.pid = -1;
}

Status Cluster::stop(std::uint64_t id) {
  Node& n = mutable_node(id);
  if (n.pid < 0) return Status::ok_status();
  ::kill(n.pid, SIGTERM);
  int status = 0;
  if (!wait_exit(n.pid, kStopTimeoutMs, &status)) {
    kill(id);
    return Status::timeout(fmt::format("node {} ignored SIGTERM for {} ms", id, kStopTimeoutMs));
  }
  n.pid = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::io_error(fmt::format("node {} exited with status {}", id, status));
  }
  return Status::ok_status();
}

Result<int> Cluster::exit_status(std::uint64_t id, std::uint32_t timeout_ms) {
  Node& n = mutable_node(id);
  if (n.pid < 0) return Status::invalid_argument(fmt::format("node {} is not running", id));
  int status = 0;
  if (!wait_exit(n.pid, timeout_ms, &status)) {
    return Status::timeout(fmt::format("node {} still runs after {} ms", id, timeout_ms));
  }
  n.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Cluster::alive(std::uint64_t id) {
  Node& n = mutable_node(id);
  if (n.pid < 0) return false;
  int status = 0;
  if (reaped(n.pid, &status)) n.pid = -1;
  return n.pid >= 0;
}

std::vector<std::uint64_t> Cluster::terms() const {
  std::vector<std::uint64_t> out;
  for (const Node& n : nodes_) {
    const client::AdminClient probe = prober(n.client_port);
    auto body = probe.get("/v1/cluster");
    boost::system::error_code ec;
    const json::value v = body.ok() ? json::parse(*body, ec) : json::value();
    const json::value* term = !ec && v.is_object() ? v.get_object().if_contains("term")
                                                   : static_cast<json::value*>(nullptr);
    out.push_back(term != nullptr ? term->to_number<std::uint64_t>(ec) : 0);
  }
  return out;
}

std::uint64_t Cluster::reported_leader(std::uint64_t id) const {
  const client::AdminClient probe = prober(node(id).client_port);
  auto body = probe.get("/v1/cluster");
  if (!body.ok()) return 0;
  boost::system::error_code ec;
  const json::value v = json::parse(*body, ec);
  if (ec || !v.is_object()) return 0;
  const json::value* leader = v.get_object().if_contains("leader");
  if (leader == nullptr || leader->is_null()) return 0;
  const auto number = leader->to_number<std::uint64_t>(ec);
  return ec ? 0 : number;
}

Result<std::uint64_t> Cluster::leader(std::uint32_t timeout_ms) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    std::uint64_t agreed = 0;
    bool agree = true;
    for (const Node& n : nodes_) {
      if (!alive(n.id)) continue;
      const std::uint64_t seen = reported_leader(n.id);
      if (seen == 0 || (agreed != 0 && seen != agreed)) agree = false;
      agreed = seen;
    }
    if (agree && agreed != 0 && alive(agreed)) return agreed;
    pause_ms(kPollIntervalMs);
  }
  return Status::timeout(
      fmt::format("the live nodes agreed on no live leader within {} ms", timeout_ms));
}

std::uint64_t Cluster::other_live_node(std::uint64_t id) {
  for (const Node& n : nodes_) {
    if (n.id != id && alive(n.id)) return n.id;
  }
  return 0;
}

client::AdminClient Cluster::prober(std::uint16_t client_port) const {
  return client::AdminClient("127.0.0.1", client_port, kAdminToken, kClusterProbeTimeoutMs,
                             client_tls_);
}

client::AdminClient Cluster::admin(std::uint64_t id) const {
  return client::AdminClient("127.0.0.1", node(id).client_port, kAdminToken,
                             client::kDefaultAdminTimeoutMs, client_tls_);
}

Result<std::vector<PushRecord>> Cluster::pushes(std::uint64_t id) const {
  std::ifstream in(node(id).push_journal, std::ios::binary);
  std::stringstream all;
  all << in.rdbuf();  // a missing journal reads as empty: nothing pushed yet
  const std::string text = all.str();
  std::vector<PushRecord> out;
  // Only whole lines: the node may be writing the last one right now.
  std::size_t start = 0;
  for (std::size_t end = text.find('\n'); end != std::string::npos;
       start = end + 1, end = text.find('\n', start)) {
    if (end == start) continue;
    HERALD_ASSIGN_OR_RETURN(PushRecord r, parse_push_line(text.substr(start, end - start)));
    out.push_back(std::move(r));
  }
  return out;
}

std::string Cluster::log_tail(std::uint64_t id, std::size_t bytes) const {
  std::ifstream in(node(id).log_path, std::ios::binary);
  std::stringstream all;
  all << in.rdbuf();
  const std::string text = all.str();
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

}  // namespace herald::e2e
