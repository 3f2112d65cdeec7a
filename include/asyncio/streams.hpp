// Streams (Lib/asyncio/streams.py): high-level connections with coroutines.
//
// clang-format off
//     reader, writer = (                      auto [reader, writer] =
//         await asyncio.open_connection(          co_await asyncio::open_connection(
//             "127.0.0.1", 8888))                     "127.0.0.1", 8888);
//     writer.write(b"Hello")                  writer.write("Hello");
//     await writer.drain()                    co_await writer.drain();
//     data = await reader.read(100)           std::string data = co_await reader.read(100);
//     writer.close()                          writer.close();
//     await writer.wait_closed()              co_await writer.wait_closed();
// clang-format on
//
// StreamReader and StreamWriter are handles: copies refer to the same
// stream. When the last handle to a writer goes away its transport is
// closed (CPython 3.13 does this when an unclosed writer is collected).
#pragma once

#include <any>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/detail/open_transport.hpp"
#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/transports.hpp"

namespace asyncio {

/// Keyword arguments of open_connection / open_unix_connection: ssl= (the
/// TLS context; server_hostname and the ssl_*_timeouts only with it) and
/// create_connection's others.
struct OpenOptions {
    std::optional<SSLContext> ssl{};
    std::optional<std::string> server_hostname{};
    std::size_t limit = 64 * 1024;
    std::optional<Address> local_addr{};
    std::optional<std::chrono::nanoseconds> happy_eyeballs_delay{};
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    int interleave = 0;
    int family = AF_UNSPEC;
    bool all_errors = false;
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
};

/// Keyword arguments of start_server / start_unix_server: ssl= serves TLS
/// with that context (the ssl_*_timeouts only with it).
struct StartOptions {
    std::optional<SSLContext> ssl{};
    std::size_t limit = 64 * 1024;
    int backlog = 100;
    bool reuse_address = detail::kReuseAddressByDefault;
    bool reuse_port = false;
    bool start_serving = true;
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    int family = AF_UNSPEC;
    bool keep_alive = false;
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
};

namespace detail {
struct ReaderState;
struct WriterState;
class StreamReaderProtocol;
}  // namespace detail

/// asyncio.StreamReader.
class ASYNCIO_EXPORT StreamReader {
  public:
    /// std::invalid_argument (ValueError) if `limit` is 0 or above PTRDIFF_MAX.
    explicit StreamReader(std::size_t limit = 64 * 1024);

    /// Up to `n` bytes (n < 0: everything until EOF); empty at EOF.
    Coro<std::string> read(std::ptrdiff_t n = -1);
    /// A line including its "\n"; at EOF the partial last line (possibly
    /// empty). A line longer than the limit: std::invalid_argument (Python's
    /// ValueError), with the stream advanced past it.
    Coro<std::string> readline();
    /// `async for line in reader` (__anext__): the next readline(), nullopt
    /// at EOF, in the form of AsyncGenerator::next():
    /// `while (auto line = co_await reader.next_line()) use(*line);`
    Coro<std::optional<std::string>> next_line();
    /// Exactly `n` bytes; IncompleteReadError{partial, n} at EOF first.
    Coro<std::string> readexactly(std::size_t n);
    /// Data up to and including `separator`. LimitOverrunError if not found
    /// within the limit (the data stays in the buffer); IncompleteReadError
    /// {partial, nullopt} at EOF.
    Coro<std::string> readuntil(std::string_view separator = "\n");
    /// readuntil with several separators: stops at whichever ends first.
    Coro<std::string> readuntil(std::vector<std::string> separators);
    /// EOF was fed and the buffer is empty.
    bool at_eof() const;
    /// The exception the stream was failed with, if any.
    std::exception_ptr exception() const;

    void feed_data(std::string_view data);
    void feed_eof();
    void set_exception(std::exception_ptr error);
    /// Library use: the transport the stream reads from (connection_made).
    void set_transport(detail::LibraryKey, std::shared_ptr<BaseTransport> transport);
    /// Library use: the stream goes on over `transport` (start_tls); a
    /// reader that had paused reading pauses the new transport.
    void replace_transport(detail::LibraryKey, std::shared_ptr<BaseTransport> transport);
    std::size_t limit() const;

  private:
    Coro<std::string> readuntil_any(std::vector<std::string> separators);
    std::shared_ptr<detail::ReaderState> state_;
    friend class detail::StreamReaderProtocol;
};

/// asyncio.StreamWriter.
class ASYNCIO_EXPORT StreamWriter {
  public:
    void write(std::string_view data);
    void writelines(const std::vector<std::string>& lines);
    /// Waits while the transport's buffer is above its high-water mark;
    /// rethrows the reader's exception and ConnectionResetError
    /// (std::system_error, connection_reset) once the connection is lost.
    Coro<void> drain();
    bool can_write_eof() const;
    void write_eof();
    void close();
    bool is_closing() const;
    /// Waits until the connection is closed; rethrows what closed it.
    Coro<void> wait_closed();
    Transport& transport() const;

    /// What start_tls(ctx, opts) does, for any protocol layered over the
    /// connection (start_tls is this with loop.start_tls): waits for drain(),
    /// then for `upgrade(transport, protocol, server_side)`, which layers
    /// itself over the transport (see insert_layer) and returns the
    /// transport the stream goes on over; writer and reader use it from then
    /// on. `server_side` tells whether this end was accepted by start_server.
    /// RuntimeError if the writer is closing. If the upgrade fails, or is
    /// cancelled, after its layer went in, the connection is closed and the
    /// reader and wait_closed() see the error (or EOF); before, the stream
    /// is left as it was.
    using TransportUpgrade = std::function<Coro<std::shared_ptr<Transport>>(
        Transport& transport, std::shared_ptr<BaseProtocol> protocol, bool server_side)>;
    Coro<void> upgrade_transport(TransportUpgrade upgrade);

    /// StreamWriter.start_tls: upgrades the connection to TLS with
    /// `sslcontext` (loop.start_tls through upgrade_transport); this end is
    /// the TLS server if start_server accepted it. Handshake errors are
    /// raised here.
    Coro<void> start_tls(SSLContext& sslcontext, TlsOptions options = {});

    std::optional<Address> peername() const;
    std::optional<Address> sockname() const;
    std::any get_extra_info(std::string_view name) const;

    /// Library use: a writer over `transport`, with the reader of the same stream.
    StreamWriter(detail::LibraryKey, std::shared_ptr<Transport> transport,
                 std::shared_ptr<detail::StreamReaderProtocol> protocol,
                 std::optional<StreamReader> reader);

  private:
    std::shared_ptr<detail::WriterState> state_;
};

namespace detail {

/// streams.StreamReaderProtocol: feeds a StreamReader, tracks write flow
/// control for drain(), and, on a server, starts the client_connected
/// callback. The callback is kept alive until its coroutine has finished.
class ASYNCIO_EXPORT StreamReaderProtocol final
    : public Protocol,
      public std::enable_shared_from_this<StreamReaderProtocol> {
  public:
    using ConnectedCallback = std::function<Coro<void>(StreamReader, StreamWriter)>;

    StreamReaderProtocol(std::optional<StreamReader> reader,
                         std::shared_ptr<ConnectedCallback> on_connected = nullptr);

    void connection_made(BaseTransport& transport) override;
    void connection_lost(std::exception_ptr error) override;
    void data_received(std::string_view data) override;
    bool eof_received() override;
    void pause_writing() override { paused_ = true; }
    void resume_writing() override;

    Coro<void> drain_helper();
    /// Whether drain_helper() waits or throws: writing is paused, or the
    /// connection is lost.
    bool drain_would_wait() const noexcept { return paused_ || connection_lost_; }
    Future<> closed() const { return closed_; }
    /// Whether this end was accepted by a stream server.
    bool server_side() const noexcept { return server_side_; }
    /// streams.StreamReaderProtocol._replace_transport (start_tls).
    void replace_transport(std::shared_ptr<Transport> transport);

  private:
    std::optional<StreamReader> reader_;
    std::shared_ptr<ConnectedCallback> on_connected_;
    bool server_side_;
    Future<> closed_;
    std::vector<Future<>> drain_waiters_;
    bool paused_ = false;
    bool connection_lost_ = false;
};

/// What open_stream and start_stream_server are given: hosts and a port
/// (open_connection, start_server), a port and no host (open_connection's
/// host=None), or a socket path (the unix_ variants).
enum class StreamAddress { host_port, no_host, unix_path };

ASYNCIO_EXPORT Coro<std::pair<StreamReader, StreamWriter>> open_stream(std::string host, int port,
                                                                       OpenOptions opts,
                                                                       StreamAddress address);
ASYNCIO_EXPORT Coro<Server> start_stream_server(
    std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback,
    std::vector<std::string> hosts, int port, StartOptions opts, StreamAddress address);
ASYNCIO_EXPORT Coro<Server> start_socket_stream_server(
    std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback, Socket&& sock,
    StartOptions opts);

// Runs one connection's callback; the callable's owner rides in the frame.
template <class F>
Coro<void> run_connected(std::shared_ptr<F> callback, StreamReader reader, StreamWriter writer) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&, StreamReader, StreamWriter>>) {
        (*callback)(std::move(reader), std::move(writer));
        co_return;
    } else {
        co_await (*callback)(std::move(reader), std::move(writer));
    }
}

/// Adapts a user's client_connected callback (returning a Coro or nothing)
/// to StreamReaderProtocol's.
template <class F>
std::shared_ptr<StreamReaderProtocol::ConnectedCallback> connected_callback(F callback) {
    auto shared = std::make_shared<F>(std::move(callback));
    return std::make_shared<StreamReaderProtocol::ConnectedCallback>(
        [shared](StreamReader reader, StreamWriter writer) {
            return run_connected(shared, std::move(reader), std::move(writer));
        });
}

}  // namespace detail

/// asyncio.open_connection: a connected (reader, writer) pair.
inline Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, int port,
                                                                   OpenOptions opts = {}) {
    return detail::open_stream(std::move(host), port, std::move(opts),
                               detail::StreamAddress::host_port);
}

/// asyncio.open_connection(None, port): loopback, as create_connection
/// with no host; open_connection("", port) raises gaierror, as in CPython.
inline Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::nullopt_t, int port,
                                                                   OpenOptions opts = {}) {
    return detail::open_stream(std::string(), port, std::move(opts),
                               detail::StreamAddress::no_host);
}

/// asyncio.open_connection(sock=...): streams over a socket that is
/// already connected, which they take over; with ssl=, this end is the TLS
/// client and server_hostname is required (std::invalid_argument for bad
/// options is thrown before, leaving the socket to the caller).
ASYNCIO_EXPORT Coro<std::pair<StreamReader, StreamWriter>> open_connection(Socket&& sock,
                                                                           OpenOptions opts = {});

/// asyncio.open_unix_connection.
inline Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path,
                                                                        OpenOptions opts = {}) {
    return detail::open_stream(std::move(path), 0, std::move(opts),
                               detail::StreamAddress::unix_path);
}

/// asyncio.start_server: calls `client_connected(reader, writer)` for each
/// connection, in a new task when it returns a Coro. The callback is kept
/// alive until every coroutine started from it has finished.
template <class F>
Coro<Server> start_server(F client_connected, std::string host, int port, StartOptions opts = {}) {
    std::vector<std::string> hosts{std::move(host)};
    return detail::start_stream_server(detail::connected_callback(std::move(client_connected)),
                                       std::move(hosts), port, opts,
                                       detail::StreamAddress::host_port);
}

/// start_server on several hosts.
template <class F>
Coro<Server> start_server(F client_connected, std::vector<std::string> hosts, int port,
                          StartOptions opts = {}) {
    return detail::start_stream_server(detail::connected_callback(std::move(client_connected)),
                                       std::move(hosts), port, opts,
                                       detail::StreamAddress::host_port);
}

/// asyncio.start_server(sock=...): serves on a listening socket made
/// elsewhere, which it takes over (std::invalid_argument for bad options is
/// thrown before, leaving the socket to the caller).
template <class F>
Coro<Server> start_server(F client_connected, Socket&& sock, StartOptions opts = {}) {
    return detail::start_socket_stream_server(
        detail::connected_callback(std::move(client_connected)), std::move(sock), opts);
}

/// asyncio.start_unix_server.
template <class F>
Coro<Server> start_unix_server(F client_connected, std::string path, StartOptions opts = {}) {
    std::vector<std::string> paths{std::move(path)};
    return detail::start_stream_server(detail::connected_callback(std::move(client_connected)),
                                       std::move(paths), 0, opts, detail::StreamAddress::unix_path);
}

}  // namespace asyncio
