#include "app/serve_config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include "server/peer_auth.h"

namespace herald::app {

namespace {

Result<std::uint64_t> parse_id(std::string_view s) {
  std::uint64_t id = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc() || ptr != s.data() + s.size() || id == 0) {
    return Status::invalid_argument(fmt::format("\"{}\" is not a positive node id", s));
  }
  return id;
}

// The integer at `node`, only when it holds a TOML integer: toml++'s value<integer>() converts
// floats, and a float out of the integer's range is undefined behaviour there.
template <typename NodeView>
std::optional<std::int64_t> integer_of(NodeView node) {
  if (const auto* v = node.as_integer()) return v->get();
  return std::nullopt;
}

// The value at `key` when present: kInvalidArgument naming the key when it has the wrong type or,
// for an integer, is out of T's range.
template <typename T>
Status read_value(const toml::table& table, const char* key, T& out) {
  if (!table.contains(key)) return Status::ok_status();
  const auto node = table[key];
  if constexpr (std::is_same_v<T, std::string>) {
    if (const auto* v = node.as_string()) {
      out = v->get();
      return Status::ok_status();
    }
    return Status::invalid_argument(fmt::format("{} must be a string", key));
  } else if constexpr (std::is_same_v<T, bool>) {
    if (const auto* v = node.as_boolean()) {
      out = v->get();
      return Status::ok_status();
    }
    return Status::invalid_argument(fmt::format("{} must be true or false", key));
  } else {
    static_assert(std::is_integral_v<T>);
    const auto v = integer_of(node);
    if (!v || !std::in_range<T>(*v)) {
      return Status::invalid_argument(fmt::format("{} must be an integer in range", key));
    }
    out = static_cast<T>(*v);
    return Status::ok_status();
  }
}

// A non-negative integer at devices.<key>, when present.
template <typename T>
Status read_count(const toml::table& devices, const char* key, T& out) {
  const auto v = integer_of(devices[key]);
  if (!v) {
    if (devices.contains(key)) {
      return Status::invalid_argument(fmt::format("devices.{} must be an integer", key));
    }
    return Status::ok_status();
  }
  if (*v < 0 || !std::in_range<T>(*v)) {
    return Status::invalid_argument(
        fmt::format("devices.{} must be a non-negative integer in range", key));
  }
  out = static_cast<T>(*v);
  return Status::ok_status();
}

Status read_rate(const toml::table& devices, const char* key, double& out) {
  if (!devices.contains(key)) return Status::ok_status();
  const auto v = devices[key].value<double>();  // integers convert too
  if (!v || *v < 0) {
    return Status::invalid_argument(fmt::format("devices.{} must be a number >= 0", key));
  }
  out = *v;
  return Status::ok_status();
}

Status load_device_limits(const toml::table& table, server::GatewayLimits& limits) {
  const toml::table* devices = table["devices"].as_table();
  if (devices == nullptr) return Status::ok_status();
  HERALD_RETURN_IF_ERROR(read_rate(*devices, "requests_per_s", limits.device_requests.per_second));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "request_burst", limits.device_requests.burst));
  HERALD_RETURN_IF_ERROR(
      read_rate(*devices, "auths_per_s_per_address", limits.address_auths.per_second));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "auth_burst_per_address", limits.address_auths.burst));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "max_connections_per_address", limits.max_connections_per_address));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "max_sessions_per_device", limits.max_sessions_per_device));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "auth_deadline_ms", limits.auth_deadline_ms));
  HERALD_RETURN_IF_ERROR(
      read_count(*devices, "typing_relay_interval_ms", limits.typing_relay_interval_ms));
  HERALD_RETURN_IF_ERROR(read_count(*devices, "stalled_reader_ms", limits.stalled_reader_ms));
  return Status::ok_status();
}

}  // namespace

Result<std::map<std::uint64_t, std::string>> parse_peers(const std::string& spec) {
  std::map<std::uint64_t, std::string> peers;
  std::string_view rest = spec;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq + 1 >= item.size()) {
      return Status::invalid_argument(fmt::format("peer \"{}\" is not ID=HOST:PORT", item));
    }
    HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_id(item.substr(0, eq)));
    if (!peers.emplace(id, std::string(item.substr(eq + 1))).second) {
      return Status::invalid_argument(fmt::format("peer id {} appears twice", id));
    }
  }
  return peers;
}

Status load_toml(const std::string& path, ServeConfig& config) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return Status::not_found(fmt::format("config file {} cannot be read", path));
  }
  // peek() turns a failed read (a directory, say) into badbit rather than an exception.
  std::ostringstream text;
  if (in.peek() != std::ifstream::traits_type::eof()) {
    text << in.rdbuf();
  }
  if (in.bad()) {
    return Status::not_found(fmt::format("config file {} cannot be read", path));
  }
  return load_toml_text(text.str(), path, config);
}

Status load_toml_text(std::string_view text, const std::string& source, ServeConfig& config) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::invalid_argument(fmt::format("{}: {}", source, e.description()));
  }
  if (table.contains("id")) {
    const auto id = integer_of(table["id"]);
    if (!id) {
      return Status::invalid_argument("id must be an integer");
    }
    if (*id <= 0) {
      return Status::invalid_argument("id must be positive");
    }
    config.id = static_cast<std::uint64_t>(*id);
  }
  HERALD_RETURN_IF_ERROR(read_value(table, "data", config.data_dir));
  HERALD_RETURN_IF_ERROR(read_value(table, "client", config.client));
  HERALD_RETURN_IF_ERROR(read_value(table, "peer", config.peer));
  HERALD_RETURN_IF_ERROR(read_value(table, "cluster", config.cluster));
  HERALD_RETURN_IF_ERROR(read_value(table, "log_level", config.log_level));
  HERALD_RETURN_IF_ERROR(read_value(table, "tick_ms", config.tick_ms));
  HERALD_RETURN_IF_ERROR(read_value(table, "admin_token", config.admin_token));
  HERALD_RETURN_IF_ERROR(read_value(table, "push_journal", config.push_journal));
  HERALD_RETURN_IF_ERROR(read_value(table, "email_journal", config.email_journal));
  HERALD_RETURN_IF_ERROR(read_value(table, "election_ticks", config.election_ticks));
  HERALD_RETURN_IF_ERROR(read_value(table, "heartbeat_ticks", config.heartbeat_ticks));
  HERALD_RETURN_IF_ERROR(read_value(table, "cluster_secret_file", config.cluster_secret_file));
  HERALD_RETURN_IF_ERROR(read_value(table, "insecure_peers", config.insecure_peers));
  if (table.contains("min_free_mb")) {
    const auto mb = integer_of(table["min_free_mb"]);
    if (!mb || *mb < 0) {
      return Status::invalid_argument("min_free_mb must be a non-negative integer (MiB)");
    }
    config.min_free_mb = static_cast<std::uint64_t>(*mb);
  }
  if (table.contains("max_connections")) {
    const auto n = integer_of(table["max_connections"]);
    if (!n || *n < 1) {
      return Status::invalid_argument("max_connections must be a positive integer");
    }
    config.max_connections = static_cast<std::size_t>(*n);
  }
  HERALD_RETURN_IF_ERROR(load_device_limits(table, config.device_limits));
  if (auto spec = table["peers"].value<std::string>()) {
    HERALD_ASSIGN_OR_RETURN(config.peers, parse_peers(*spec));
  } else if (const auto* peers = table["peers"].as_table()) {
    config.peers.clear();
    for (const auto& [key, value] : *peers) {
      HERALD_ASSIGN_OR_RETURN(const std::uint64_t id, parse_id(key.str()));
      const auto address = value.value<std::string>();
      if (!address) {
        return Status::invalid_argument(fmt::format("peers.{} must be a string", key.str()));
      }
      config.peers[id] = *address;
    }
  }
  return Status::ok_status();
}

Status finalize(ServeConfig& config) {
  if (config.id == 0) {
    return Status::invalid_argument("--id must be positive");
  }
  if (config.peers.empty()) {
    config.peers[config.id] = config.peer;
  }
  if (!config.peers.contains(config.id)) {
    return Status::invalid_argument(
        fmt::format("--peers does not list this node's id {}", config.id));
  }
  if (config.peers.size() > 1 && config.cluster_secret_file.empty() && !config.insecure_peers) {
    return Status::invalid_argument(fmt::format(
        "a cluster of {} nodes needs a cluster secret so that peers authenticate each other: "
        "give --cluster-secret-file FILE (or HERALD_CLUSTER_SECRET_FILE); --insecure-peers runs "
        "without one, unauthenticated (see docs/operations.md)",
        config.peers.size()));
  }
  if (!config.cluster_secret_file.empty() && config.insecure_peers) {
    return Status::invalid_argument(
        "--insecure-peers and a cluster secret file exclude each other: drop one");
  }
  const server::GatewayLimits& limits = config.device_limits;
  if ((limits.device_requests.per_second > 0 && limits.device_requests.burst < 1) ||
      (limits.address_auths.per_second > 0 && limits.address_auths.burst < 1)) {
    return Status::invalid_argument("a device rate limit above 0 needs a burst of at least 1");
  }
  if (limits.max_sessions_per_device < 1 || limits.auth_deadline_ms < 1 ||
      limits.stalled_reader_ms < 1) {
    return Status::invalid_argument(
        "devices.max_sessions_per_device, devices.auth_deadline_ms and devices.stalled_reader_ms "
        "must be at least 1");
  }
  if (config.min_free_mb > kMaxMinFreeMb) {
    return Status::invalid_argument(fmt::format("min_free_mb {} is above the largest floor, {}",
                                                config.min_free_mb, kMaxMinFreeMb));
  }
  if (config.max_connections < 1 || config.max_connections > kMaxMaxConnections) {
    return Status::invalid_argument(fmt::format("max_connections {} is outside 1..{}",
                                                config.max_connections, kMaxMaxConnections));
  }
  if (config.tick_ms <= 0 || config.heartbeat_ticks <= 0 ||
      config.election_ticks <= config.heartbeat_ticks) {
    return Status::invalid_argument("need tick_ms > 0 and 0 < heartbeat_ticks < election_ticks");
  }
  return Status::ok_status();
}

Result<ClusterSecret> load_cluster_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    return Status::not_found(fmt::format("cluster secret file {} cannot be read", path));
  }
  std::string bytes;
  bytes.resize(kMaxClusterSecretFileBytes + 1);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (bytes.size() > kMaxClusterSecretFileBytes) {
    return Status::invalid_argument(fmt::format("cluster secret file {} is larger than {} bytes",
                                                path, kMaxClusterSecretFileBytes));
  }
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r' || bytes.back() == ' ' ||
                            bytes.back() == '\t')) {
    bytes.pop_back();
  }
  if (const Status s = server::check_cluster_secret(bytes); !s.ok()) {
    return Status::invalid_argument(fmt::format(
        "cluster secret file {}: {} (generate one with `head -c 32 /dev/urandom | base64`)", path,
        s.message()));
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::perms perms = fs::status(path, ec).permissions();
  ClusterSecret secret{.bytes = std::move(bytes)};
  secret.readable_by_others =
      !ec && (perms & (fs::perms::group_read | fs::perms::others_read)) != fs::perms::none;
  return secret;
}

}  // namespace herald::app
