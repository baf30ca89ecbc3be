// The end-to-end tests' main: gtest, plus the herald binary the clusters run, given as
// `--herald PATH` (ctest passes $<TARGET_FILE:herald>) or in HERALD_BINARY.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tests/e2e/cluster.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string binary;
  if (const char* env = std::getenv("HERALD_BINARY"); env != nullptr) binary = env;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--herald" && i + 1 < argc) {
      binary = argv[++i];
    } else if (arg.starts_with("--herald=")) {
      binary = std::string(arg.substr(std::string_view("--herald=").size()));
    }
  }
  if (binary.empty()) {
    std::fprintf(stderr, "usage: %s --herald PATH [gtest flags] (or set HERALD_BINARY)\n", argv[0]);
    return 2;
  }
  // A write to a socket the server has closed must fail the call, not kill the test.
  std::signal(SIGPIPE, SIG_IGN);
  herald::e2e::set_herald_binary(binary);
  return RUN_ALL_TESTS();
}
