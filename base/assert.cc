#include "base/assert.h"

#include <cstdio>
#include <cstdlib>

namespace herald::detail {

void assert_fail(const char* condition, const char* message, const char* file, int line) {
  std::fprintf(stderr, "herald: assertion failed at %s:%d: %s (%s)\n", file, line, condition,
               message);
  std::fflush(stderr);
  std::abort();
}

}  // namespace herald::detail
