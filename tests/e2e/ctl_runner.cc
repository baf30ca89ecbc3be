#include "tests/e2e/ctl_runner.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace herald::e2e {

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream all;
  all << in.rdbuf();
  return all.str();
}

}  // namespace

CtlRun ctl(const Cluster& cluster, std::uint64_t id, std::vector<std::string> args) {
  std::vector<std::string> argv = cluster.ctl_args(id);
  argv.insert(argv.end(), args.begin(), args.end());
  return ctl_argv(cluster, std::move(argv));
}

CtlRun ctl_argv(const Cluster& cluster, std::vector<std::string> argv) {
  static int runs = 0;
  argv.insert(argv.end(), {"--timeout-ms", kCtlTimeoutMs});
  const std::string base = fmt::format("{}/ctl{}", cluster.root(), ++runs);
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CtlRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = read_all(base + ".out");
  run.err = read_all(base + ".err");
  boost::system::error_code ec;
  run.json = boost::json::parse(run.out, ec);
  if (ec) run.json = nullptr;
  return run;
}

std::string describe(const CtlRun& run) {
  return fmt::format("exit {}; stdout: {}; stderr: {}", run.exit_code, run.out, run.err);
}

}  // namespace herald::e2e
