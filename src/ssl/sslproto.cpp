// sslproto.py's SSLProtocol: TLS as a protocol over any transport, with
// OpenSSL's memory BIOs, and the transport it offers the application.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <any>
#include <cstring>
#include <span>
#include <string>

#include <fmt/format.h>

#include "asyncio/exceptions.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/ssl.hpp"
#include "asyncio/transports.hpp"
#include "sslproto.hpp"

namespace asyncio {
namespace detail {

SSLError ssl_error_from_queue(const char* context);

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;   // one TLS record
constexpr std::size_t kHeldLimit = 256 * 1024;  // sslproto's max read buffer

bool is_ip_address(const std::string& host) {
    unsigned char buffer[16];
    return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

/// Empties this thread's OpenSSL error queue before a call whose result
/// SSL_get_error reads. The queue is almost always empty already (every
/// failure path here drains it), and ERR_clear_error walks all 16 of its
/// slots even then: on the TLS echo path that was a tenth of the
/// instructions per message (three calls), ERR_peek_error is a fraction.
void clear_ssl_errors() {
    if (ERR_peek_error() != 0) ERR_clear_error();
}

std::exception_ptr connection_error(std::errc code, const char* message) {
    return std::make_exception_ptr(std::system_error(std::make_error_code(code), message));
}

/// The layer: the protocol of the transport below and the application's
/// transport, as SSLProtocol and its _SSLProtocolTransport.
class SSLProtocol final : public Protocol, public Transport {
  public:
    enum class State { handshake, wrapped, closing, closed };

    SSLProtocol(std::shared_ptr<BaseProtocol> app, const SSLContext& context,
                const TlsOptions& options, std::optional<Future<>> ready,
                ConnectionMade connection_made)
        : app_(std::move(app)),
          context_(context),
          server_side_(options.server_side),
          ready_(std::move(ready)),
          call_connection_made_(connection_made == ConnectionMade::call),
          handshake_timeout_(options.ssl_handshake_timeout.value_or(std::chrono::seconds(60))),
          shutdown_timeout_(options.ssl_shutdown_timeout.value_or(std::chrono::seconds(30))) {
        set_app_kind();
        ssl_ = SSL_new(context_.native_handle());
        if (ssl_ == nullptr) throw ssl_error_from_queue("SSL_new");
        BIO* incoming = BIO_new(BIO_s_mem());
        BIO* outgoing = BIO_new(BIO_s_mem());
        if (incoming == nullptr || outgoing == nullptr) {
            BIO_free(incoming);
            BIO_free(outgoing);
            throw ssl_error_from_queue("BIO_new");
        }
        // An empty incoming BIO means "wait for more", not EOF.
        BIO_set_mem_eof_return(incoming, -1);
        SSL_set_bio(ssl_, incoming, outgoing);  // the SSL owns both now
        incoming_ = incoming;
        outgoing_ = outgoing;
        if (server_side_) {
            SSL_set_accept_state(ssl_);
            return;
        }
        SSL_set_connect_state(ssl_);
        const std::string host = options.server_hostname.value_or("");
        if (!host.empty() && !is_ip_address(host)) SSL_set_tlsext_host_name(ssl_, host.c_str());
        if (context_.check_hostname) {
            if (host.empty())
                throw std::invalid_argument("check_hostname requires server_hostname");
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            const int set = is_ip_address(host)
                                ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                                : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
            if (set != 1) throw ssl_error_from_queue("server_hostname");
        }
    }
    ~SSLProtocol() override { SSL_free(ssl_); }

    // -- the protocol of the transport below ---------------------------------------------

    void connection_made(BaseTransport& below) override {
        below_ = &dynamic_cast<Transport&>(below);
        std::weak_ptr<BaseTransport> weak = weak_from_this();
        timer_ = get_running_loop().call_later(handshake_timeout_, [weak, this] {
            if (auto self = weak.lock()) handshake_timed_out();
        });
        do_handshake();
    }

    void data_received(std::string_view data) override {
        if (state_ == State::closed) return;
        BIO_write(incoming_, data.data(), static_cast<int>(data.size()));
        if (state_ == State::handshake) {
            do_handshake();
        } else if (state_ == State::closing) {
            do_shutdown();
        } else {
            do_read();
        }
    }

    bool eof_received() override {
        if (state_ == State::handshake) {
            fail_handshake(connection_error(std::errc::connection_reset,
                                            "Connection lost during the SSL handshake"));
            return false;
        }
        // A raw EOF without the peer's close_notify: the data may have been
        // cut short (truncation), which is reported, not taken as an EOF.
        if (!got_close_notify_) truncated_ = true;
        return false;  // the transport below closes; connection_lost follows
    }

    void connection_lost(std::exception_ptr error) override {
        const State was = state_;
        state_ = State::closed;
        below_ = nullptr;
        timer_.cancel();
        if (was == State::handshake) {
            fail_handshake(error ? error
                                 : connection_error(std::errc::connection_reset,
                                                    "Connection lost during the SSL handshake"));
            return;
        }
        // Once the peer's close_notify came, the session ended whole: an
        // error writing our reply (the peer closed at once) loses nothing.
        if (got_close_notify_ && !pending_error_) error = nullptr;
        if (!error && pending_error_) error = pending_error_;
        if (!error && truncated_ && was != State::closing)
            error = std::make_exception_ptr(SSLEOFError());
        // Let go of the application's protocol after its last call, as a
        // transport does: it may hold this transport (a cycle otherwise).
        std::shared_ptr<BaseProtocol> app = std::move(app_);
        set_app_kind();
        if (app) app->connection_lost(error);
    }

    void pause_writing() override {
        if (app_) app_->pause_writing();
    }
    void resume_writing() override {
        if (app_) app_->resume_writing();
    }

    // -- the application's transport ---------------------------------------------------------

    void write(std::string_view data) override {
        if (state_ != State::wrapped) {
            if (state_ == State::handshake) throw RuntimeError("the TLS handshake is not done");
            return;  // after close: dropped, as a closed transport drops writes
        }
        while (!data.empty()) {
            std::size_t written = 0;
            clear_ssl_errors();
            if (SSL_write_ex(ssl_, data.data(), data.size(), &written) != 1) {
                abort_with(std::make_exception_ptr(ssl_error_from_queue("write")));
                return;
            }
            data.remove_prefix(written);
        }
        flush_outgoing();
    }
    /// TLS has no half-close (sslproto's can_write_eof() is False).
    void write_eof() override { throw RuntimeError("TLS does not support write_eof()"); }
    bool can_write_eof() const override { return false; }
    void abort() override {
        state_ = State::closing;
        if (below_) below_->abort();
    }
    std::size_t get_write_buffer_size() const override {
        return below_ != nullptr ? below_->get_write_buffer_size() : 0;
    }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override {
        if (below_) below_->set_write_buffer_limits(high, low);
    }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return below_ != nullptr ? below_->get_write_buffer_limits()
                                 : std::pair<std::size_t, std::size_t>{16 * 1024, 64 * 1024};
    }
    bool is_reading() const override { return below_ != nullptr && !app_paused_; }
    void pause_reading() override { app_paused_ = true; }
    void resume_reading() override {
        if (!app_paused_) return;
        app_paused_ = false;
        std::weak_ptr<BaseTransport> weak = weak_from_this();
        get_running_loop().call_soon([weak, this] {
            if (auto self = weak.lock()) deliver();
        });
    }
    /// Sends close_notify, then closes the connection once what is buffered left.
    /// sslproto's _start_shutdown: sends close_notify and waits for the
    /// peer's (up to ssl_shutdown_timeout, then TimeoutError) before the
    /// connection closes; during a handshake it is aborted.
    void close() override {
        if (state_ == State::closing || state_ == State::closed) return;
        const bool was_wrapped = state_ == State::wrapped;
        state_ = State::closing;
        if (!was_wrapped) {
            if (below_) below_->abort();
            return;
        }
        std::weak_ptr<BaseTransport> weak = weak_from_this();
        timer_ = get_running_loop().call_later(shutdown_timeout_, [weak, this] {
            if (auto self = weak.lock()) shutdown_timed_out();
        });
        do_shutdown();
    }
    bool is_closing() const override { return state_ != State::wrapped; }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
        app_ = std::move(protocol);
        set_app_kind();
    }
    std::shared_ptr<BaseProtocol> get_protocol() const override { return app_; }

    /// sslproto's extra info, plus "selected_alpn_protocol"; the rest is
    /// the connection's below.
    std::any get_extra_info(std::string_view name) const override {
        if (name == "sslcontext") return context_;
        if (name == "ssl_object") return SSLObject(ssl_);
        if (name == "peercert") return SSLObject(ssl_).getpeercert();
        if (name == "cipher") return SSLObject(ssl_).cipher();
        if (name == "compression") return SSLObject(ssl_).compression();
        if (name == "selected_alpn_protocol") return SSLObject(ssl_).selected_alpn_protocol();
        return below_ != nullptr ? below_->get_extra_info(name) : std::any{};
    }

  private:
    void do_handshake() {
        clear_ssl_errors();
        const int result = SSL_do_handshake(ssl_);
        flush_outgoing();  // the next flight, or the alert of a failure
        if (result == 1) {
            state_ = State::wrapped;
            timer_.cancel();
            // create_connection / create_server: the application's
            // connection_made comes once the session is up (start_tls: not).
            if (call_connection_made_ && app_) app_->connection_made(*this);
            if (ready_ && !ready_->done()) ready_->set_result();
            do_read();  // application data that came with the last flight
            return;
        }
        const int error = SSL_get_error(ssl_, result);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return;
        const long verify = SSL_get_verify_result(ssl_);
        if (verify != X509_V_OK) {
            ERR_clear_error();
            std::string message = X509_verify_cert_error_string(verify);
            if (verify == X509_V_ERR_HOSTNAME_MISMATCH ||
                verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
                message = "Hostname mismatch, certificate is not valid for the server name.";
            }
            fail_handshake(std::make_exception_ptr(SSLCertVerificationError(verify, message)));
        } else {
            fail_handshake(std::make_exception_ptr(ssl_error_from_queue("handshake")));
        }
        if (below_) below_->close();
    }

    /// SSL_shutdown until both close_notify alerts are through; what the
    /// peer still sends meanwhile is read and dropped.
    void do_shutdown() {
        char buffer[kReadChunk];
        std::size_t got = 0;
        clear_ssl_errors();
        while (!got_close_notify_ && SSL_read_ex(ssl_, buffer, sizeof buffer, &got) == 1) {
        }
        if (SSL_get_error(ssl_, 0) == SSL_ERROR_ZERO_RETURN) got_close_notify_ = true;
        ERR_clear_error();
        const int done = SSL_shutdown(ssl_);
        flush_outgoing();
        if (done == 1 || got_close_notify_) {
            timer_.cancel();
            if (below_) below_->close();
        }
    }

    void shutdown_timed_out() {
        if (state_ != State::closing) return;
        pending_error_ = std::make_exception_ptr(TimeoutError("SSL shutdown timed out"));
        state_ = State::wrapped;  // so that connection_lost reports it
        if (below_) below_->abort();
    }

    void fail_handshake(std::exception_ptr error) {
        timer_.cancel();
        if (ready_) {
            if (!ready_->done()) ready_->set_exception(std::move(error));
            return;
        }
        // A server's connection: nobody awaits it. SSLError is an OSError,
        // which _fatal_error logs in debug mode only.
        if (get_running_loop().get_debug()) {
            log(LogLevel::debug, "SSL handshake failed: {}", describe(error));
        }
    }
    static std::string describe(const std::exception_ptr& error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            return e.what();
        } catch (...) {
            return "unknown error";
        }
    }

    void handshake_timed_out() {
        if (state_ != State::handshake) return;
        fail_handshake(connection_error(
            std::errc::connection_aborted,
            "SSL handshake is taking longer than the ssl_handshake_timeout: aborting the "
            "connection"));
        if (below_) below_->abort();
    }

    void do_read() {
        char buffer[kReadChunk];
        while (true) {
            std::size_t got = 0;
            clear_ssl_errors();
            if (SSL_read_ex(ssl_, buffer, sizeof buffer, &got) == 1) {
                receive(std::string_view(buffer, got));
                // The application closed or aborted inside data_received
                // (or the connection failed): what is left is dropped.
                if (state_ != State::wrapped || below_->is_closing()) return;
                // Nothing buffered in the SSL and no record bytes left: the
                // next SSL_read could only say WANT_READ, at the cost of a
                // full call; what comes next (close_notify included) comes
                // with the next data_received.
                if (SSL_has_pending(ssl_) == 0 && BIO_ctrl_pending(incoming_) == 0) break;
                continue;
            }
            const int error = SSL_get_error(ssl_, 0);
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
            if (error == SSL_ERROR_ZERO_RETURN) {
                got_close_notify_ = true;
                break;
            }
            flush_outgoing();
            abort_with(std::make_exception_ptr(ssl_error_from_queue("read")));
            return;
        }
        flush_outgoing();  // TLS 1.3 may answer (a key update)
        if (held_.size() > kHeldLimit && below_ != nullptr && !below_paused_) {
            below_paused_ = true;
            below_->pause_reading();
        }
        deliver();
    }

    /// What kind of stream protocol the application is (sslproto's
    /// _app_protocol_is_buffer): looked up once, not per record.
    void set_app_kind() {
        stream_ = dynamic_cast<Protocol*>(app_.get());
        buffered_ = stream_ != nullptr ? nullptr : dynamic_cast<BufferedProtocol*>(app_.get());
    }

    /// Decrypted data: straight to the application while it reads and
    /// nothing is held before it (no copy, no allocation), else held.
    void receive(std::string_view data) {
        if (held_.empty() && !app_paused_ && (stream_ != nullptr || buffered_ != nullptr)) {
            hand_over(data);
            return;
        }
        held_.append(data);
    }

    /// data_received, or a BufferedProtocol's get_buffer/buffer_updated
    /// for as many buffers as it takes; what a BufferedProtocol did not
    /// take before pausing (or closing) is held, in order.
    void hand_over(std::string_view data) {
        if (stream_ != nullptr) {
            stream_->data_received(data);
            return;
        }
        while (!data.empty() && buffered_ != nullptr) {
            std::span<std::byte> buffer = buffered_->get_buffer(data.size());
            if (buffer.empty()) {
                abort_with(
                    std::make_exception_ptr(RuntimeError("get_buffer() returned an empty buffer")));
                return;
            }
            const std::size_t n = std::min(buffer.size(), data.size());
            std::memcpy(buffer.data(), data.data(), n);
            data.remove_prefix(n);
            buffered_->buffer_updated(n);
            if (app_paused_ || state_ != State::wrapped) break;
        }
        if (!data.empty() && state_ == State::wrapped) held_.insert(0, data);
    }

    /// The peer's close_notify, to either kind of protocol.
    void app_eof_received() {
        if (stream_ != nullptr) {
            stream_->eof_received();
        } else if (buffered_ != nullptr) {
            buffered_->eof_received();
        }
    }

    /// Hands the held data to the application while it reads, then the
    /// peer's close_notify as eof_received.
    void deliver() {
        if ((stream_ == nullptr && buffered_ == nullptr) || app_paused_) return;
        while (!held_.empty() && !app_paused_ && state_ == State::wrapped) {
            std::string chunk = std::move(held_);
            held_.clear();
            hand_over(chunk);
        }
        if (below_paused_ && held_.size() <= kHeldLimit && below_ != nullptr) {
            below_paused_ = false;
            below_->resume_reading();
        }
        if (got_close_notify_ && !eof_delivered_ && held_.empty() && !app_paused_) {
            eof_delivered_ = true;
            // TLS has no half-close: whatever the application answers, the
            // session ends; reply with our close_notify.
            app_eof_received();
            close();
        }
    }

    /// Hands what OpenSSL wrote to the connection below. One look at the
    /// BIO's size, and reads of exactly that: a record or two is one call.
    /// (BIO_reset to drop the data without reading it would clear the whole
    /// buffer, a memset of its capacity.)
    void flush_outgoing() {
        char buffer[kReadChunk];
        std::size_t pending = BIO_ctrl_pending(outgoing_);
        while (pending > 0 && below_ != nullptr) {
            const int got =
                BIO_read(outgoing_, buffer, static_cast<int>(std::min(pending, sizeof buffer)));
            if (got <= 0) break;
            pending -= static_cast<std::size_t>(got);
            below_->write(std::string_view(buffer, static_cast<std::size_t>(got)));
        }
    }

    /// A TLS error on an established session: the connection is aborted
    /// and the application's connection_lost gets the error (_fatal_error).
    void abort_with(std::exception_ptr error) {
        pending_error_ = std::move(error);
        state_ = State::wrapped;  // so that connection_lost reports it
        if (below_) below_->abort();
    }

    std::shared_ptr<BaseProtocol> app_;
    // app_ as one of the stream protocols (set_app_kind), or both null.
    Protocol* stream_ = nullptr;
    BufferedProtocol* buffered_ = nullptr;
    SSLContext context_;
    bool server_side_;
    std::optional<Future<>> ready_;  // none for a server's connections
    bool call_connection_made_;
    std::chrono::nanoseconds handshake_timeout_;
    std::chrono::nanoseconds shutdown_timeout_;
    SSL* ssl_ = nullptr;
    BIO* incoming_ = nullptr;
    BIO* outgoing_ = nullptr;
    Transport* below_ = nullptr;
    State state_ = State::handshake;
    TimerHandle timer_;
    std::string held_;
    bool app_paused_ = false;
    bool below_paused_ = false;
    bool got_close_notify_ = false;
    bool eof_delivered_ = false;
    bool truncated_ = false;
    std::exception_ptr pending_error_;
};

}  // namespace

TlsLayer make_tls_layer(std::shared_ptr<BaseProtocol> app, const SSLContext& context,
                        const TlsOptions& options, std::optional<Future<>> ready,
                        ConnectionMade connection_made) {
    auto layer = std::make_shared<SSLProtocol>(std::move(app), context, options, std::move(ready),
                                               connection_made);
    return TlsLayer{layer, layer};
}

}  // namespace detail

Coro<Transport*> EventLoop::start_tls(Transport& transport, BaseProtocol& protocol,
                                      SSLContext& sslcontext, TlsOptions options) {
    std::shared_ptr<BaseProtocol> app = transport.get_protocol();
    if (app.get() != &protocol) {
        throw std::invalid_argument("start_tls: the protocol is not the transport's");
    }
    Future<> ready = create_future();
    detail::TlsLayer layer = detail::make_tls_layer(std::move(app), sslcontext, options, ready,
                                                    detail::ConnectionMade::skip);
    co_await insert_layer(transport, layer.protocol, ready);
    // The transport below holds the layer (its protocol) until it is lost.
    co_return layer.transport.get();
}

Coro<Transport*> EventLoop::start_tls(Transport& transport, BaseProtocol& protocol,
                                      SSLContext& sslcontext) {
    return start_tls(transport, protocol, sslcontext, TlsOptions{});
}

}  // namespace asyncio
