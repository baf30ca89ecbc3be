// Demo traffic for `herald serve --demo`: three users chatting against the node's own client port,
// so that a newcomer sees Herald deliver, push, escalate and sync read state from the first run.
//
// The demo is an ordinary client of the node: a thread in the same process drives the device
// protocol (client/herald_client.h) and the admin API (client/admin_client.h) over the node's
// client address, exactly as phones and an operator would. It
//   1. provisions users alice, bob, carol and dave (existing users are kept), their devices
//      (alice: a phone and a laptop; bob: a phone with an APNs token; carol: a phone with an FCM
//      token and email fallback after kDemoEmailDelayMs; dave: a browser with a Web Push
//      subscription), the direct conversation alice–bob and the group "team". A device secret is
//      shown only once and device ids are never reused, so each run creates the next generation of
//      every demo device ("bob-phone", "bob-phone-2", ...) and then removes the previous one;
//   2. loops, one step every 1 to 2 s: a member sends a message, the recipients' connected
//      devices receive it live and acknowledge it, a reader reports a read (the read-sync saga),
//      now and then a message is edited or deleted or a typing indicator goes out; bob's phone
//      goes offline for a while (its messages are pushed) and comes back with `since` to catch
//      up; so does dave's browser; carol's phone stays offline long enough for an escalation
//      email.
// Each event is told as one info line through spdlog, starting "demo: ". Random choices come from
// a herald::Rng seeded with DemoOptions::seed.
//
// Errors: a failed call is logged as a warning and the demo starts over from provisioning after
// kDemoRestartDelayMs (backing off to kDemoMaxRestartDelayMs while it keeps failing before any
// traffic); it never stops the node. Shutdown: stop() cuts short the pause between steps and lets
// the step in flight finish; each of its calls and waits is bounded (kDemoCallTimeoutMs at most)
// and takes milliseconds while the node serves, so stop it before the node's HTTP server.
// Thread-safety: start() and stop() may be called from any one thread; the demo's clients are used
// only by its own thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/serve_config.h"
#include "base/status.h"

namespace herald::app {

// carol's email fallback delay: short, so that an escalation shows within a demo session.
inline constexpr std::int64_t kDemoEmailDelayMs = 5'000;
// Bound on each client call and on each connection attempt of the demo.
inline constexpr std::uint32_t kDemoCallTimeoutMs = 2'000;
// Pause before the demo starts over after a failure; it doubles, up to the maximum, while
// sessions keep failing before their first step.
inline constexpr std::int64_t kDemoRestartDelayMs = 2'000;
inline constexpr std::int64_t kDemoMaxRestartDelayMs = 60'000;
// Bytes of randomness in a generated admin token (written as hex, twice as many characters).
inline constexpr std::size_t kDemoAdminTokenBytes = 16;
// File names of the journals a demo keeps in the data directory when none is configured; they
// record what goes to a recording provider (a push platform without a client or a double).
inline constexpr char kDemoPushJournal[] = "push-journal.jsonl";
inline constexpr char kDemoEmailJournal[] = "email-journal.jsonl";

// What the demo needs of the node.
struct DemoOptions {
  std::string host;  // where the node's client port is reached (an IP literal or a name)
  std::uint16_t port = 0;
  std::string admin_token;  // the node's admin token
  std::uint64_t seed = 0;   // seeds every random choice of the demo
  // Makes a browser subscription for dave's browser (the Web Push double's, app/demo_doubles.h);
  // empty: the web device registers no push token.
  std::function<Result<std::string>()> webpush_subscribe;
};

// The demo thread. Created by start(), ended by stop() or the destructor.
class Demo {
 public:
  // Starts the demo thread. Preconditions (asserted): options.port > 0, admin_token non-empty.
  [[nodiscard]] static std::unique_ptr<Demo> start(DemoOptions options);
  // Calls stop().
  ~Demo();
  Demo(const Demo&) = delete;
  Demo& operator=(const Demo&) = delete;

  // Asks the demo to stop and joins its thread: the step in flight finishes (each of its calls is
  // bounded by kDemoCallTimeoutMs), no other starts, and the devices disconnect. Idempotent.
  void stop();

 private:
  // One run of the demo from provisioning until stop() or a failure (demo.cc).
  class Session;

  explicit Demo(DemoOptions options);
  // The demo thread's body: sessions, one after the other, until stop().
  void run();
  // Waits `ms` milliseconds, or less when stop() is called meanwhile. Returns false when the demo
  // is stopping.
  [[nodiscard]] bool pause_ms(std::int64_t ms);
  [[nodiscard]] bool stopping() const;

  DemoOptions options_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  // Whether the web chat's sign-in links were printed (once per process; demo thread only).
  bool chat_links_logged_ = false;
  std::thread thread_;
};

// ------------------------------------------------------------------ configuration for --demo

// What apply_demo_defaults() filled in.
struct DemoSetup {
  bool generated_admin_token = false;
  bool default_push_journal = false;
  bool default_email_journal = false;
};

// Gives the demo what it needs and the configuration does not say: `generated_token` as the admin
// token when none is configured, and journals named kDemoPushJournal / kDemoEmailJournal in the
// data directory when none is configured. Pure; values given by the user are kept.
[[nodiscard]] DemoSetup apply_demo_defaults(ServeConfig& config,
                                            const std::string& generated_token);

// Prepares a node for --demo: refuses a configuration of more than one voter without an admin
// token (kInvalidArgument: a generated token would be this node's alone; the demo runs on one
// node of a cluster, since demos on several nodes would remove each other's devices), applies
// apply_demo_defaults() with a random token, creates the data directory (so that the journals can
// be opened before the node starts; kIOError when it cannot be) and logs a generated admin token
// (the journals' paths are logged when a recording provider opens one).
[[nodiscard]] Status prepare_demo(ServeConfig& config);

// The options of a demo against a node serving clients on `listen` (the --client address) at the
// bound `port`: a wildcard listen address ("0.0.0.0", "::", "") is reached on the loopback.
// kInvalidArgument when `listen` is not host:port.
[[nodiscard]] Result<DemoOptions> demo_options(const ServeConfig& config, std::uint16_t port,
                                               std::uint64_t seed);

// A hex string of kDemoAdminTokenBytes random bytes from the operating system.
[[nodiscard]] std::string random_admin_token();

// The push token a demo device registers at `provider`: for APNs the device id's bytes in hex
// (APNs tokens are hex digits), for any other "demo-token-<device id>". Pure.
[[nodiscard]] std::string demo_push_token(std::string_view provider, std::string_view device_id);

// ------------------------------------------------------------------ device generations

// Demo device ids: generation 1 is the label itself ("bob-phone"), generation g > 1 is
// "<label>-<g>" ("bob-phone-2").
[[nodiscard]] std::string demo_device_id(std::string_view label, std::uint64_t generation);
// The generation `device_id` has as a device of `label`; nullopt when it is not one.
[[nodiscard]] std::optional<std::uint64_t> demo_device_generation(std::string_view label,
                                                                  std::string_view device_id);
// The generation after the highest among `device_ids` (a user's active devices); 1 when none is
// a device of `label`.
[[nodiscard]] std::uint64_t next_demo_device_generation(std::string_view label,
                                                        const std::vector<std::string>& device_ids);

}  // namespace herald::app
