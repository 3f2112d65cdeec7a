// Transports (Lib/asyncio/transports.py): the I/O side of a connection.
//
// A transport moves bytes between a socket (or pipe) and its protocol. It is
// created by the loop (create_connection, create_server, connect_read_pipe,
// ...) and owns itself: it stays valid at least until its protocol's
// connection_lost has returned; shared_from_this() keeps it longer.
//
// Writes never block: data that cannot be sent at once is buffered, and the
// protocol's pause_writing / resume_writing are called as the buffer crosses
// its high and low water marks (64 KiB and 16 KiB by default). close()
// flushes the buffer first; abort() drops it.
#pragma once

#include <any>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/export.hpp"
#include "asyncio/future.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/socket.hpp"
#include "asyncio/ssl.hpp"

namespace asyncio {

class EventLoop;

/// asyncio.BaseTransport.
class ASYNCIO_EXPORT BaseTransport : public std::enable_shared_from_this<BaseTransport> {
  public:
    virtual ~BaseTransport() = default;

    /// Closes the transport: buffered data is sent first, then the protocol's
    /// connection_lost(nullptr) is called from the loop.
    virtual void close() = 0;
    /// Whether close() or abort() was called, or the connection was lost.
    virtual bool is_closing() const = 0;
    virtual void set_protocol(std::shared_ptr<BaseProtocol> protocol) = 0;
    virtual std::shared_ptr<BaseProtocol> get_protocol() const = 0;

    /// get_extra_info(name): "peername" and "sockname" (Address), "socket"
    /// (the descriptor, int), "pipe" (int); an empty std::any otherwise.
    virtual std::any get_extra_info(std::string_view name) const {
        (void)name;
        return {};
    }
    std::optional<Address> peername() const { return address_info("peername"); }
    std::optional<Address> sockname() const { return address_info("sockname"); }

  private:
    std::optional<Address> address_info(std::string_view name) const {
        std::any info = get_extra_info(name);
        if (auto* address = std::any_cast<Address>(&info)) return *address;
        return std::nullopt;
    }
};

/// asyncio.ReadTransport.
class ASYNCIO_EXPORT ReadTransport : public virtual BaseTransport {
  public:
    virtual bool is_reading() const = 0;
    /// Stops calling data_received until resume_reading.
    virtual void pause_reading() = 0;
    virtual void resume_reading() = 0;
};

/// asyncio.WriteTransport.
class ASYNCIO_EXPORT WriteTransport : public virtual BaseTransport {
  public:
    /// Sends `data`, buffering what cannot be sent now; never blocks.
    /// RuntimeError after write_eof().
    virtual void write(std::string_view data) = 0;
    void writelines(std::span<const std::string_view> lines) {
        for (std::string_view line : lines)
            write(line);
    }
    void writelines(const std::vector<std::string>& lines) {
        for (const std::string& line : lines)
            write(line);
    }
    /// Closes the write side once the buffer is flushed (shutdown(SHUT_WR)).
    virtual void write_eof() = 0;
    virtual bool can_write_eof() const = 0;
    /// Closes at once, dropping buffered data; connection_lost(nullptr) follows.
    virtual void abort() = 0;
    virtual std::size_t get_write_buffer_size() const = 0;
    /// High and low water marks (Python's defaults: high 64 KiB, low high/4;
    /// with only low, high = 4 * low). std::invalid_argument unless high >= low.
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                         std::optional<std::size_t> low = {}) = 0;
    /// (low, high), in Python's order.
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
};

/// asyncio.Transport: a bidirectional stream.
class ASYNCIO_EXPORT Transport : public ReadTransport, public WriteTransport {};

/// asyncio.DatagramTransport.
class ASYNCIO_EXPORT DatagramTransport : public virtual BaseTransport {
  public:
    /// Sends one datagram to `address` (or the connected peer). Never
    /// blocks: datagrams that cannot leave now wait in a buffer.
    virtual void sendto(std::string_view data, std::optional<Address> address = {}) = 0;
    virtual void abort() = 0;
    virtual std::size_t get_write_buffer_size() const = 0;
    /// Water marks for the datagrams waiting to leave, as on WriteTransport
    /// (CPython's datagram transports have _FlowControlMixin's too).
    virtual void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                         std::optional<std::size_t> low = {}) = 0;
    virtual std::pair<std::size_t, std::size_t> get_write_buffer_limits() const = 0;
};

/// asyncio.SubprocessTransport: a child process and the pipes to its
/// standard streams (loop.subprocess_exec, subprocess_shell).
class ASYNCIO_EXPORT SubprocessTransport : public virtual BaseTransport {
  public:
    virtual int get_pid() const = 0;
    /// The exit status once the child exited: its exit code, or minus the
    /// signal that killed it; nullopt while it runs.
    virtual std::optional<int> get_returncode() const = 0;
    /// The transport of the pipe to the child's fd 0, 1 or 2; nullptr if
    /// that stream is not a pipe (CPython's None).
    virtual BaseTransport* get_pipe_transport(int fd) const = 0;
    /// Sends `sig` to the child; nothing once it exited.
    /// ProcessLookupError (std::system_error, ESRCH) after the transport closed.
    virtual void send_signal(int sig) = 0;
    /// send_signal(SIGTERM).
    virtual void terminate() = 0;
    /// send_signal(SIGKILL).
    virtual void kill() = 0;
};

/// Keyword arguments of loop.create_connection / create_unix_connection.
struct ConnectionOptions {
    /// ssl=: wrap the connection in TLS with this context; the transport and
    /// protocol come back once the handshake is done.
    std::optional<SSLContext> ssl{};
    /// The name the server's certificate must match, and the SNI sent
    /// (default: the host; a Unix connection needs it). Only with ssl.
    std::optional<std::string> server_hostname{};
    /// How long the TLS handshake may take (default 60 s). Only with ssl.
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    /// How long close() waits for the peer's close_notify (default 30 s).
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
    /// Bind the socket to this address before connecting.
    std::optional<Address> local_addr{};
    /// Happy Eyeballs (RFC 8305): start the next address attempt after this
    /// delay, racing them (Python's happy_eyeballs_delay; 250 ms is the
    /// RFC's recommendation). nullopt: one address after the other.
    std::optional<std::chrono::nanoseconds> happy_eyeballs_delay{};
    /// Reorder addresses by family, this many of the first family first
    /// (0: 1 when happy_eyeballs_delay is set, else keep the resolver's order).
    int interleave = 0;
    int family = AF_UNSPEC;
    int proto = 0;
    int flags = 0;
    /// Raise an ExceptionGroup of every attempt's error instead of one error.
    bool all_errors = false;
};

/// Keyword arguments of loop.create_server / create_unix_server.
struct ServerOptions {
    /// ssl=: serve TLS with this context (it holds the certificate).
    std::optional<SSLContext> ssl{};
    /// How long each connection's TLS handshake may take (default 60 s).
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    /// How long each connection's close() waits for close_notify (30 s).
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
    int family = AF_UNSPEC;
    int flags = AI_PASSIVE;
    int backlog = 100;
    /// SO_REUSEADDR. As CPython: true on POSIX; false on Windows, where it
    /// would let another socket bind the same port.
    bool reuse_address = detail::kReuseAddressByDefault;
    /// SO_REUSEPORT: several loops (threads, processes) accept on one port.
    bool reuse_port = false;
    /// SO_KEEPALIVE on accepted connections.
    bool keep_alive = false;
    /// Accept connections at once; else call start_serving()/serve_forever().
    bool start_serving = true;
    /// Unix servers: remove the socket file when the server closes (3.13).
    bool cleanup_socket = true;
};

/// Keyword arguments of loop.connect_accepted_socket.
struct AcceptedSocketOptions {
    /// ssl=: this end is the TLS server, with this context.
    std::optional<SSLContext> ssl{};
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
};

/// Keyword arguments of loop.create_datagram_endpoint.
struct DatagramOptions {
    std::optional<Address> local_addr{};
    std::optional<Address> remote_addr{};
    int family = AF_UNSPEC;
    int proto = 0;
    int flags = 0;
    bool reuse_port = false;
    bool allow_broadcast = false;
};

namespace detail {
class ServerState;
}

/// asyncio.Server: the listening side of create_server / start_server. A
/// cheap handle: copies refer to the same server. The server, and the
/// protocol factory or callback it was given, stay alive until it is closed
/// and every connection it accepted has ended.
class ASYNCIO_EXPORT Server {
  public:
    /// Stops listening; connections already accepted stay open.
    void close();
    /// Waits until the server is closed and all its connections are gone.
    Coro<void> wait_closed();
    /// Starts accepting (if not yet) and waits until cancelled; cancelling
    /// closes the server and waits for it. RuntimeError if already awaited
    /// or closed.
    Coro<void> serve_forever();
    /// Starts accepting connections.
    Coro<void> start_serving();
    bool is_serving() const noexcept;
    /// The addresses the server listens on.
    std::vector<Address> sockets() const;
    /// Closes (or aborts) every connection the server accepted (3.13).
    void close_clients();
    void abort_clients();
    EventLoop& get_loop() const noexcept;

    /// Library use.
    Server(detail::LibraryKey, std::shared_ptr<detail::ServerState> state) noexcept
        : state_(std::move(state)) {}

  private:
    std::shared_ptr<detail::ServerState> state_;
};

/// What loop.start_tls does to the transport, for any protocol layered over
/// it (sslproto.SSLProtocol is one): reading is paused, `layer` becomes the
/// transport's protocol, and from the loop layer->connection_made(transport)
/// is called and reading resumed, so the layer sees every byte that arrives
/// from now on. Then waits for `ready`, which the layer completes when it can
/// carry the application's data (its handshake is done) or fails.
///
/// The layer offers the application a transport of its own and calls the
/// application's protocol; the application's protocol gets no
/// connection_made from this (CPython's call_connection_made=False).
/// RuntimeError if the transport is closing. If `ready` fails or the wait is
/// cancelled, the transport is closed and the error rethrown.
ASYNCIO_EXPORT Coro<void> insert_layer(Transport& transport, std::shared_ptr<BaseProtocol> layer,
                                       Future<> ready);

namespace detail {

/// Python's default and rule for set_write_buffer_limits.
inline std::pair<std::size_t, std::size_t> water_marks(std::optional<std::size_t> high,
                                                       std::optional<std::size_t> low) {
    std::size_t h = high ? *high : (low ? 4 * *low : 64 * 1024);
    std::size_t l = low ? *low : h / 4;
    if (h < l) {
        throw std::invalid_argument("high (" + std::to_string(h) + ") must be >= low (" +
                                    std::to_string(l) + ") must be >= 0");
    }
    return {l, h};
}

}  // namespace detail
}  // namespace asyncio

// The loop's transport-creating methods: whoever can name a transport can
// call them.
#include "asyncio/detail/open_transport.hpp"
