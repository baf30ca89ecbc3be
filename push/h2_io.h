// One HTTP/2 connection over TLS: the byte pump between an Asio TLS stream and an nghttp2 session.
// Shared by the providers' HTTP/2 client (push/h2_client.cc) and the test server of their doubles
// (push/h2_server.cc); not a public header of push/.
//
// nghttp2 is used through its memory interface: bytes read from the socket go to
// nghttp2_session_mem_recv, which calls the owner's callbacks (headers, data, stream close); the
// frames nghttp2 wants to send are taken with nghttp2_session_mem_send and written with one
// outstanding async_write at a time. The owner derives from H2Io, creates the session with
// itself as the callbacks' user_data (adopt_session), and, after the TLS handshake, calls start().
//
// Lifetime: every asynchronous operation holds a shared_ptr to the connection, so it lives until
// the socket is closed and the last handler has run. on_closed() is called exactly once, on the
// I/O thread, with why; after it nothing more is read or written, and the session stays valid
// (nghttp2 callbacks never run again) until the object is destroyed.
//
// Thread-safety: none. Every member is called on the one thread that runs the io_context.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace herald::push::h2 {

// Bytes read from the socket at a time.
inline constexpr std::size_t kReadChunkBytes = 16 * 1024;
// Frames gathered from nghttp2 into one socket write, at most (a write may exceed it by one
// frame, at most 16 KiB plus a header at nghttp2's default frame size).
inline constexpr std::size_t kWriteBatchBytes = 64 * 1024;

using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

class H2Io : public std::enable_shared_from_this<H2Io> {
 public:
  explicit H2Io(TlsStream stream);
  virtual ~H2Io();
  H2Io(const H2Io&) = delete;
  H2Io& operator=(const H2Io&) = delete;

  // Takes ownership of `session`. Precondition (asserted): called once, before start().
  void adopt_session(nghttp2_session* session);
  // Starts reading, and writes what the session already has to send (the connection preface and
  // SETTINGS). Precondition: the TLS handshake is done.
  void start();
  // Writes whatever the session wants to send now; a no-op while a write is outstanding (its
  // completion flushes again) or after close. When the session wants neither to read nor to write
  // (both sides said GOAWAY and everything is flushed), the connection is closed.
  void flush();
  // Closes the socket now, without a TLS close_notify; on_closed(reason) follows at once.
  void close(const std::string& reason);
  // Sends GOAWAY(NO_ERROR), then closes once it is written and no stream is open. Idempotent.
  void close_gracefully();

  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] nghttp2_session* session() const { return session_; }
  [[nodiscard]] TlsStream& stream() { return stream_; }

 protected:
  // After each chunk of input has been given to nghttp2 (its callbacks have run), before the
  // flush that follows: the owner submits what the input made possible.
  virtual void on_input() {}
  // The connection is closed; called once.
  virtual void on_closed(const std::string& reason) = 0;

 private:
  void read_more();

  TlsStream stream_;
  nghttp2_session* session_ = nullptr;
  std::array<std::uint8_t, kReadChunkBytes> read_buffer_{};
  std::string write_buffer_;
  bool writing_ = false;
  bool closed_ = false;
  bool goaway_sent_ = false;  // by close_gracefully()
};

// A name/value pair for nghttp2_submit_request / nghttp2_submit_response that points into
// `name` and `value`, which must outlive the submit call (nghttp2 copies them). Names must be
// lower case.
[[nodiscard]] nghttp2_nv header(std::string_view name, std::string_view value);

}  // namespace herald::push::h2
