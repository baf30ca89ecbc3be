// Runs `herald ctl` as a child process of an end-to-end test and captures what it did: its exit
// code, stdout, stderr and stdout parsed as JSON. Shared by the ctl and TLS tests. Blocking; the
// output files go under the cluster's directory. Thread-safety: one caller at a time.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/e2e/cluster.h"

namespace herald::e2e {

// Bound on one ctl command, passed as --timeout-ms (a membership change is answered once it is
// applied).
inline constexpr char kCtlTimeoutMs[] = "20000";

struct CtlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  boost::json::value json;  // stdout parsed, when it is JSON
};

// Runs `herald ctl ARGS... --timeout-ms kCtlTimeoutMs` against node `id` of `cluster` (reached as
// Cluster::ctl_args says; a later --node or --ca-file in `args` wins).
[[nodiscard]] CtlRun ctl(const Cluster& cluster, std::uint64_t id, std::vector<std::string> args);
// Runs exactly `argv` (the herald binary, "ctl", then its arguments) plus --timeout-ms
// kCtlTimeoutMs, its output files under `cluster`'s directory.
[[nodiscard]] CtlRun ctl_argv(const Cluster& cluster, std::vector<std::string> argv);
// "exit N; stdout: ...; stderr: ...", for failure messages.
[[nodiscard]] std::string describe(const CtlRun& run);

}  // namespace herald::e2e
