#include "push/h2_io.h"

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include <utility>

#include "base/assert.h"

namespace herald::push::h2 {

namespace asio = boost::asio;

H2Io::H2Io(TlsStream stream) : stream_(std::move(stream)) {}

H2Io::~H2Io() {
  if (session_ != nullptr) {
    nghttp2_session_del(session_);
  }
}

void H2Io::adopt_session(nghttp2_session* session) {
  HERALD_ASSERT(session_ == nullptr && session != nullptr, "one session per connection");
  session_ = session;
}

void H2Io::start() {
  HERALD_ASSERT(session_ != nullptr, "start() before adopt_session()");
  // Frames are small and latency matters: no Nagle delay behind the peer's delayed ACK.
  boost::system::error_code ignored;
  stream_.lowest_layer().set_option(asio::ip::tcp::no_delay(true), ignored);
  read_more();
  flush();
}

void H2Io::read_more() {
  if (closed_) {
    return;
  }
  stream_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t bytes) {
        if (self->closed_) {
          return;
        }
        if (ec) {
          self->close(ec == asio::error::eof ? "the peer closed the connection" : ec.message());
          return;
        }
        const ssize_t used =
            nghttp2_session_mem_recv(self->session_, self->read_buffer_.data(), bytes);
        if (used < 0) {
          self->close(std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(used)));
          return;
        }
        self->on_input();
        self->flush();
        self->read_more();
      });
}

void H2Io::flush() {
  if (closed_ || writing_) {
    return;
  }
  while (write_buffer_.size() < kWriteBatchBytes) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      close(std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) {
      break;
    }
    write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  if (write_buffer_.empty()) {
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      close("the HTTP/2 session ended");
    }
    return;
  }
  writing_ = true;
  asio::async_write(stream_, asio::buffer(write_buffer_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->writing_ = false;
                      self->write_buffer_.clear();
                      if (self->closed_) {
                        return;
                      }
                      if (ec) {
                        self->close(ec.message());
                        return;
                      }
                      self->flush();
                    });
}

void H2Io::close(const std::string& reason) {
  if (closed_) {
    return;
  }
  closed_ = true;
  boost::system::error_code ignored;
  // An abrupt close: the pending reads and writes complete with operation_aborted.
  stream_.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream_.lowest_layer().close(ignored);
  on_closed(reason);
}

void H2Io::close_gracefully() {
  if (closed_ || goaway_sent_) {
    return;
  }
  goaway_sent_ = true;
  if (nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR) != 0) {
    close("GOAWAY could not be queued");
    return;
  }
  flush();
}

nghttp2_nv header(std::string_view name, std::string_view value) {
  // nghttp2 copies names and values (no NO_COPY flag), so the strings need only outlive the call.
  return nghttp2_nv{const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(name.data())),
                    const_cast<std::uint8_t*>(reinterpret_cast<const std::uint8_t*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace herald::push::h2
