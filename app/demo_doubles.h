// The provider doubles of `herald serve --demo`: the APNs mock, the FCM mock, the Web Push mock
// and the SMTP sink (push/apns_mock.h, push/fcm_mock.h, push/webpush_mock.h, email/smtp_sink.h)
// run in the node's process on 127.0.0.1, so that the demo's pushes and escalation emails travel
// through the real clients over real HTTP/2 + TLS and SMTP + STARTTLS, and a newcomer sees them
// arrive.
//
// For each provider the configuration leaves unconfigured ([apns], [fcm], [webpush], [smtp]
// absent), start() starts its double and fills in the configuration so that the node's client
// reaches it: a fresh signing key (APNs: P-256, written as a .p8 file; FCM: RSA 2048, written as a
// service-account key file whose token_uri is the mock's token endpoint; Web Push: a P-256 VAPID
// key, with private addresses allowed for the double's loopback endpoints) and the SMTP
// credentials, the double's https or smtp address, and its self-signed certificate as the
// client's ca_file. Browser subscriptions to the Web Push double come from
// webpush_subscriber(). The key files
// go to `<data>/demo-doubles/` (mode 0700, files 0600) and are rewritten at every start; the
// SMTP password lives in memory only. A provider that is configured is left alone: its pushes
// or emails go to the real service.
//
// Every push or email a double accepts is logged as one info line starting "demo: ".
//
// Ownership: the doubles run until the object is destroyed; destroy it after the node's clients
// (a client whose server vanished only reconnects, but the log would say so).
// Thread-safety: start() and the destructor from one thread; the doubles run on their own threads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "app/serve_config.h"
#include "base/clock.h"
#include "base/status.h"

namespace herald::push::testing {
class ApnsMock;
class FcmMock;
class WebPushMock;
}  // namespace herald::push::testing
namespace herald::email::testing {
class SmtpSink;
}  // namespace herald::email::testing

namespace herald::app {

// What the doubles present themselves as (the demo's push topic, team, project and sender).
inline constexpr char kDemoApnsTopic[] = "org.herald.demo";
inline constexpr char kDemoApnsKeyId[] = "DEMOKEY001";
inline constexpr char kDemoApnsTeamId[] = "DEMOTEAM01";
inline constexpr char kDemoFcmProject[] = "herald-demo";
inline constexpr char kDemoFcmClientEmail[] = "herald-demo@herald-demo.iam.gserviceaccount.com";
inline constexpr char kDemoSmtpUser[] = "herald-demo";
inline constexpr char kDemoEmailFrom[] = "herald@demo.example";
inline constexpr char kDemoVapidSubject[] = "mailto:push@demo.example";
// The directory under the data directory that holds the doubles' key files.
inline constexpr char kDemoDoublesDir[] = "demo-doubles";
// The RSA key size of the demo's FCM service account, in bits (what Google issues).
inline constexpr int kDemoFcmKeyBits = 2048;

class DemoDoubles {
 public:
  // Starts a double for each provider `config` leaves unconfigured and points `config` at it (see
  // the top of this file); logs one line per double started. kIOError when a double or a key file
  // cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<DemoDoubles>> start(ServeConfig& config);
  // Stops the doubles (joins their threads).
  ~DemoDoubles();
  // Makes a browser subscription to the Web Push double and returns its token (the subscription
  // JSON a web device registers); callable from any thread while the doubles live. Empty when
  // [webpush] was configured (no double runs: a real push service needs a real browser's
  // subscription).
  [[nodiscard]] std::function<Result<std::string>()> webpush_subscriber() const;
  DemoDoubles(const DemoDoubles&) = delete;
  DemoDoubles& operator=(const DemoDoubles&) = delete;

 private:
  DemoDoubles();

  SystemClock clock_;  // the mocks check the clients' tokens against it
  std::unique_ptr<push::testing::ApnsMock> apns_;
  std::unique_ptr<push::testing::FcmMock> fcm_;
  std::unique_ptr<push::testing::WebPushMock> webpush_;
  std::unique_ptr<email::testing::SmtpSink> smtp_;
};

// One line for an accepted demo push or email, as the doubles log it: who it is for, its title
// and body (APNs: the alert of `apns_body`; FCM: the data's title and body). Pure.
[[nodiscard]] std::string describe_demo_apns_push(const std::string& device_token,
                                                  const std::string& apns_body,
                                                  const std::string& apns_id);
// `plaintext` is a decrypted Web Push payload (push/webpush.h): its title and body are quoted.
[[nodiscard]] std::string describe_demo_webpush(const std::string& subscription_id,
                                                const std::string& plaintext);
// `data` is the message after DATA: its To and Subject headers are quoted.
[[nodiscard]] std::string describe_demo_email(const std::string& data);

}  // namespace herald::app
