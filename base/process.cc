#include "base/process.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace herald {

namespace {

char** remembered_argv = nullptr;  // written once, before threads start

// The running binary, whatever path it was started by.
constexpr char kSelfExe[] = "/proc/self/exe";
// The lowest descriptor closed before exec: stdin, stdout and stderr stay.
constexpr unsigned int kFirstClosedFd = 3;

}  // namespace

void remember_command_line(int argc, char** argv) {
  if (argc > 0) remembered_argv = argv;
}

void restart_process() {
  std::fflush(nullptr);
  if (remembered_argv != nullptr) {
    // Descriptors opened without close-on-exec (sockets, the database's lock) must not outlive
    // this image: the new one binds the same ports and locks the same files.
    if (::close_range(kFirstClosedFd, ~0U, 0) == 0) {
      ::execv(kSelfExe, remembered_argv);
    }
    std::fprintf(stderr, "herald: restarting in place failed: %s\n", std::strerror(errno));
  }
  std::_Exit(EXIT_FAILURE);
}

}  // namespace herald
