// Always-on assertions for programmer errors (broken invariants), independent of NDEBUG.
//
// A failed HERALD_ASSERT prints the condition, the message and the location to stderr and aborts:
// continuing with a broken invariant in a replicated system risks applying divergent state.
// Operating errors (bad input, I/O failures) are never asserted; they are Status values.
#pragma once

namespace herald::detail {
[[noreturn]] void assert_fail(const char* condition, const char* message, const char* file,
                              int line);
}  // namespace herald::detail

#define HERALD_ASSERT(cond, msg)                                       \
  do {                                                                 \
    if (!(cond)) [[unlikely]] {                                        \
      ::herald::detail::assert_fail(#cond, (msg), __FILE__, __LINE__); \
    }                                                                  \
  } while (false)
