// Status and Result: the only way Herald's fallible calls report operating errors.
//
// Contract: a Status is either ok() or carries a Code and a human-readable message. Both types are
// [[nodiscard]]: every fallible call's outcome must be handled or explicitly discarded with
// `.ignore()` next to a comment saying why. Programmer errors are not Statuses; they are
// HERALD_ASSERT failures (base/assert.h). Thread-safety: plain values, no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "base/assert.h"

namespace herald {

enum class Code : std::uint8_t {
  kOk = 0,
  kNotFound,            // The key, entry or object does not exist.
  kInvalidArgument,     // The caller's input is malformed or out of bounds.
  kCorruption,          // Stored data failed its checksum or could not be decoded.
  kIOError,             // The operating system or the storage engine reported an error.
  kUnavailable,         // Try again later: no leader, entry not yet present, peer down.
  kCompacted,           // The requested log position was removed by compaction.
  kTimeout,             // A deadline passed before the operation completed.
  kResourceExhausted,   // A named bound was hit (queue length, bytes in flight, ...).
  kNotLeader,           // This replica cannot serve the request; see the leader hint.
  kFailedPrecondition,  // A compare-and-set or state precondition did not hold.
  kAborted,             // The operation was cancelled (shutdown, leadership change).
  kAlreadyExists,       // Creating something that is already there.
};

// Returns a stable lower_snake name for `code`, used in logs and API error bodies.
[[nodiscard]] std::string_view code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }
  static Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status io_error(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status compacted(std::string m) { return {Code::kCompacted, std::move(m)}; }
  static Status timeout(std::string m) { return {Code::kTimeout, std::move(m)}; }
  static Status resource_exhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Status not_leader(std::string m) { return {Code::kNotLeader, std::move(m)}; }
  static Status failed_precondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Status aborted(std::string m) { return {Code::kAborted, std::move(m)}; }
  static Status already_exists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }

  [[nodiscard]] bool ok() const { return code_ == Code::kOk; }
  [[nodiscard]] Code code() const { return code_; }
  [[nodiscard]] const std::string& message() const { return message_; }
  // "code_name: message", or "ok".
  [[nodiscard]] std::string to_string() const;
  // Explicitly drops the status. Use only where a comment says why the outcome does not matter.
  void ignore() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A value of type T, or the Status explaining why there is none. Never holds an ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    HERALD_ASSERT(!std::get<Status>(v_).ok(), "Result built from an ok Status");
  }

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  [[nodiscard]] const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  [[nodiscard]] T& value() & {
    HERALD_ASSERT(ok(), "value() of a failed Result");
    return std::get<T>(v_);
  }
  [[nodiscard]] const T& value() const& {
    HERALD_ASSERT(ok(), "value() of a failed Result");
    return std::get<T>(v_);
  }
  [[nodiscard]] T&& value() && {
    HERALD_ASSERT(ok(), "value() of a failed Result");
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace herald

// Returns early from the enclosing function when `expr` (a Status) is not ok.
#define HERALD_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::herald::Status herald_status_ = (expr); \
    if (!herald_status_.ok()) {               \
      return herald_status_;                  \
    }                                         \
  } while (false)

#define HERALD_CONCAT_INNER(a, b) a##b
#define HERALD_CONCAT(a, b) HERALD_CONCAT_INNER(a, b)

// `HERALD_ASSIGN_OR_RETURN(auto x, fallible());` declares x from a Result or returns its Status.
#define HERALD_ASSIGN_OR_RETURN(decl, expr) \
  HERALD_ASSIGN_OR_RETURN_IMPL(HERALD_CONCAT(herald_result_, __LINE__), decl, expr)
#define HERALD_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) {                                    \
    return tmp.status();                              \
  }                                                   \
  decl = std::move(tmp).value()
