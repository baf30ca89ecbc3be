#include "server/damage_report.h"

#include <memory>
#include <mutex>
#include <utility>

namespace herald::server {

namespace {

// One serving process has one replica, so one handler.
std::mutex& handler_mutex() {
  static std::mutex mu;
  return mu;
}

std::shared_ptr<const DamageHandler>& installed() {
  static std::shared_ptr<const DamageHandler> handler;
  return handler;
}

}  // namespace

void set_damage_handler(DamageHandler handler) {
  std::shared_ptr<const DamageHandler> next =
      handler ? std::make_shared<const DamageHandler>(std::move(handler)) : nullptr;
  const std::lock_guard lock(handler_mutex());
  installed() = std::move(next);
}

void report_damage(const Status& status) {
  if (status.code() != Code::kCorruption) {
    return;
  }
  std::shared_ptr<const DamageHandler> handler;
  {
    const std::lock_guard lock(handler_mutex());
    handler = installed();
  }
  if (handler) {
    (*handler)(status);
  }
}

}  // namespace herald::server
