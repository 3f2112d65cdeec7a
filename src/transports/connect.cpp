// Opening connections: create_connection (with Happy Eyeballs, RFC 8305),
// create_unix_connection, connect_accepted_socket and the pipe transports
// (base_events.create_connection, staggered.staggered_race, unix_events).
#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "asyncio/outcome.hpp"
#include "asyncio/tasks.hpp"
#include "internal.hpp"
#include "transports/stream.hpp"
#if ASYNCIO_HAVE_SSL
#include "ssl/sslproto.hpp"
#endif

namespace asyncio::detail {

namespace {

/// Starts a stream transport on a connected socket.
Coro<OpenedTransport> start_stream(EventLoop& loop, std::shared_ptr<BaseProtocol> protocol,
                                   Socket sock, StreamKind kind) {
    Future<> made = loop.create_future();
    auto transport = StreamTransport::start(loop, std::move(sock), protocol, kind, nullptr, made);
    return opened_when_made(std::move(made), std::move(transport), std::move(protocol));
}

/// A stream transport with a TLS layer between it and `protocol`, once the
/// handshake is done (base_events._create_connection_transport with ssl).
Coro<OpenedTransport> start_tls_stream(EventLoop& loop, std::shared_ptr<BaseProtocol> protocol,
                                       Socket sock, const SSLContext& context,
                                       const TlsOptions& tls) {
#if ASYNCIO_HAVE_SSL
    Future<> handshake = loop.create_future();
    TlsLayer layer = make_tls_layer(protocol, context, tls, handshake, ConnectionMade::call);
    OpenedTransport raw =
        co_await start_stream(loop, layer.protocol, std::move(sock), StreamKind::socket);
    Outcome<void> done = co_await try_await(handshake);
    if (!done.has_value()) raw.transport->close();
    std::move(done).get();
    co_return OpenedTransport{layer.transport, std::move(protocol)};
#else
    (void)loop, (void)protocol, (void)sock, (void)context, (void)tls;
    throw std::invalid_argument("ssl=: this build has no TLS (ASYNCIO_WITH_SSL=OFF)");
#endif
}

/// base_events._interleave_addrinfos: alternate address families, starting
/// with `first_family_count` addresses of the first family.
std::vector<AddrInfo> interleave(std::vector<AddrInfo> infos, int first_family_count) {
    std::vector<int> order;
    std::map<int, std::vector<AddrInfo>> by_family;
    for (AddrInfo& info : infos) {
        if (!by_family.count(info.family)) order.push_back(info.family);
        by_family[info.family].push_back(std::move(info));
    }
    std::vector<std::vector<AddrInfo>*> lists;
    for (int family : order)
        lists.push_back(&by_family[family]);
    std::vector<AddrInfo> out;
    std::vector<std::size_t> next(lists.size(), 0);
    if (first_family_count > 1 && !lists.empty()) {
        auto& first = *lists[0];
        const std::size_t n = std::min<std::size_t>(first.size(), first_family_count - 1);
        for (; next[0] < n; ++next[0])
            out.push_back(std::move(first[next[0]]));
    }
    for (bool any = true; any;) {
        any = false;
        for (std::size_t i = 0; i < lists.size(); ++i) {
            if (next[i] < lists[i]->size()) {
                out.push_back(std::move((*lists[i])[next[i]++]));
                any = true;
            }
        }
    }
    return out;
}

/// base_events._connect_sock: one attempt; every error is also recorded.
Coro<Socket> connect_one(EventLoop& loop, const AddrInfo& info,
                         const std::optional<std::vector<AddrInfo>>& local,
                         std::vector<std::exception_ptr>& errors) {
    try {
        Socket sock(info.family, info.type != 0 ? info.type : SOCK_STREAM, info.protocol);
        if (local) {
            bool bound = false;
            std::optional<std::system_error> bind_error;
            for (const AddrInfo& laddr : *local) {
                if (laddr.family != info.family) continue;
                try {
                    sock.bind(laddr.address);
                    bound = true;
                    break;
                } catch (const std::system_error& e) {
                    bind_error.emplace(e.code(), "error while attempting to bind on address " +
                                                     laddr.address.to_string());
                }
            }
            // CPython raises the last bind error itself (recorded once, below).
            if (!bound && bind_error) throw *bind_error;
            if (!bound) {
                throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                        "no matching local address with family=" +
                                            std::to_string(info.family) + " found");
            }
        }
        co_await loop.sock_connect(sock, info.address);
        co_return sock;
    } catch (const std::system_error&) {
        errors.push_back(std::current_exception());
        throw;
    }
}

/// staggered.staggered_race over connection attempts.
struct Race {
    EventLoop* loop = nullptr;
    std::vector<AddrInfo> infos;
    std::optional<std::vector<AddrInfo>> local;
    std::chrono::nanoseconds delay{};
    // Owned here, not by the caller: an attempt that outlives the race (its
    // caller cancelled twice) still has somewhere to record its error.
    std::vector<std::exception_ptr> errors;
    std::optional<Socket> winner;
    std::vector<Task<void>> running;
    bool stopped = false;  // the race was abandoned: start no more attempts
};

Coro<void> race_attempt(std::shared_ptr<Race> race, std::size_t index,
                        std::optional<Future<>> previous_failed) {
    if (previous_failed) {
        // Start when the previous attempt fails, or after the delay.
        try {
            co_await wait_for(*previous_failed, race->delay);
        } catch (const TimeoutError&) {
        }
    }
    if (race->winner || race->stopped) co_return;
    std::optional<Future<>> failed;
    if (index + 1 < race->infos.size()) {
        failed = race->loop->create_future();
        race->running.push_back(race->loop->create_task(race_attempt(race, index + 1, failed)));
    }
    bool lost = false;
    try {
        Socket sock =
            co_await connect_one(*race->loop, race->infos[index], race->local, race->errors);
        if (!race->winner) {
            race->winner = std::move(sock);
            for (std::size_t i = 0; i < race->running.size(); ++i) {
                if (i != index) race->running[i].cancel();
            }
        }
    } catch (const std::exception&) {
        lost = true;
    }
    if (lost && failed && !failed->done()) failed->set_result();
}

/// Waits until every attempt has finished, including those started while
/// waiting.
Coro<void> wait_for_attempts(Race& race) {
    for (std::size_t done = 0; done != race.running.size();) {
        std::vector<Task<void>> running = race.running;
        auto result = co_await wait(std::move(running));
        done = result.done.size();
    }
}

Coro<std::optional<Socket>> staggered_race(EventLoop& loop, std::vector<AddrInfo> infos,
                                           std::optional<std::vector<AddrInfo>> local,
                                           std::chrono::nanoseconds delay,
                                           std::vector<std::exception_ptr>& errors) {
    auto race = std::make_shared<Race>();
    race->loop = &loop;
    race->infos = std::move(infos);
    race->local = std::move(local);
    race->delay = delay;
    race->running.push_back(loop.create_task(race_attempt(race, 0, std::nullopt)));
    Coro<void> all_finished = wait_for_attempts(*race);
    Outcome<void> raced = co_await try_await(std::move(all_finished));
    if (!raced.has_value()) {
        // Cancelled (or failed): stop every attempt and wait for them, so that
        // no socket is still connecting once the caller sees the error.
        race->stopped = true;
        for (std::size_t started = 0; started != race->running.size();) {
            started = race->running.size();
            for (Task<void>& task : race->running)
                task.cancel();
            Coro<void> stopped = wait_for_attempts(*race);
            co_await try_await(std::move(stopped));  // a second cancel stops the wait
        }
        std::move(raced).get();
    }
    errors = race->errors;
    co_return std::move(race->winner);
}

[[noreturn]] void raise_connect_errors(std::vector<std::exception_ptr> errors, bool all_errors) {
    if (errors.empty())
        throw std::system_error(std::make_error_code(std::errc::host_unreachable),
                                "no address to connect to");
    if (all_errors) throw ExceptionGroup("create_connection failed", std::move(errors));
    std::vector<std::string> messages;
    for (const auto& error : errors) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            messages.emplace_back(e.what());
        }
    }
    const bool same = std::all_of(messages.begin(), messages.end(),
                                  [&](const std::string& m) { return m == messages.front(); });
    if (errors.size() == 1 || same) std::rethrow_exception(errors.front());
    std::string joined;
    for (const std::string& m : messages)
        joined += (joined.empty() ? "" : ", ") + m;
    std::error_code code = std::make_error_code(std::errc::connection_refused);
    try {
        std::rethrow_exception(errors.front());
    } catch (const std::system_error& e) {
        code = e.code();
    } catch (...) {
    }
    throw std::system_error(code, "Multiple exceptions: " + joined);
}

Coro<Socket> connect_tcp(EventLoop& loop, std::string host, int port, ConnectionOptions opts) {
    std::vector<AddrInfo> infos = co_await loop.getaddrinfo(
        host, std::to_string(port), {opts.family, SOCK_STREAM, opts.proto, opts.flags});
    if (infos.empty()) {
        throw std::system_error(std::make_error_code(std::errc::host_unreachable),
                                "getaddrinfo() returned empty list");
    }
    std::optional<std::vector<AddrInfo>> local;
    if (opts.local_addr) {
        AddrInfo laddr;
        laddr.family = opts.local_addr->family();
        laddr.type = SOCK_STREAM;
        laddr.address = *opts.local_addr;
        local = std::vector<AddrInfo>{laddr};
    }
    int first_family_count = opts.interleave;
    if (first_family_count == 0 && opts.happy_eyeballs_delay) first_family_count = 1;
    if (first_family_count > 0) infos = interleave(std::move(infos), first_family_count);

    std::vector<std::exception_ptr> errors;
    std::optional<Socket> sock;
    if (!opts.happy_eyeballs_delay) {
        for (const AddrInfo& info : infos) {
            try {
                sock = co_await connect_one(loop, info, local, errors);
                break;
            } catch (const std::system_error&) {
            }
        }
    } else {
        sock = co_await staggered_race(loop, std::move(infos), std::move(local),
                                       *opts.happy_eyeballs_delay, errors);
    }
    if (!sock) raise_connect_errors(std::move(errors), opts.all_errors);
    co_return std::move(*sock);
}

}  // namespace

Coro<OpenedTransport> open_connection(EventLoop& loop, ErasedProtocolFactory factory,
                                      std::string host, int port, ConnectionOptions opts,
                                      Destination destination) {
    // base_events.create_connection's checks of the TLS options.
    std::optional<TlsOptions> tls;
    if (opts.ssl) {
        tls = TlsOptions{.server_hostname = opts.server_hostname,
                         .ssl_handshake_timeout = opts.ssl_handshake_timeout,
                         .ssl_shutdown_timeout = opts.ssl_shutdown_timeout};
        if (!tls->server_hostname) {
            if (destination == Destination::unix_path || host.empty()) {
                throw std::invalid_argument(
                    "You must set server_hostname when using ssl without a host");
            }
            tls->server_hostname = host;
        }
    } else if (opts.server_hostname) {
        throw std::invalid_argument("server_hostname is only meaningful with ssl");
    } else if (opts.ssl_handshake_timeout) {
        throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
    } else if (opts.ssl_shutdown_timeout) {
        throw std::invalid_argument("ssl_shutdown_timeout is only meaningful with ssl");
    }
    Socket sock;
    if (destination == Destination::unix_path) {
        sock = Socket(AF_UNIX, SOCK_STREAM);
        co_await loop.sock_connect(sock, Address::unix_path(std::move(host)));
    } else {
        std::optional<SSLContext> context = opts.ssl;
        sock = co_await connect_tcp(loop, std::move(host), port, std::move(opts));
        opts.ssl = std::move(context);
    }
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    if (!tls) {
        co_return co_await start_stream(loop, std::move(protocol), std::move(sock),
                                        StreamKind::socket);
    }
    co_return co_await start_tls_stream(loop, std::move(protocol), std::move(sock), *opts.ssl,
                                        *tls);
}

Coro<OpenedTransport> open_accepted(EventLoop& loop, ErasedProtocolFactory factory, Socket sock,
                                    AcceptedSocketOptions opts) {
    if (sock.type() != SOCK_STREAM) {
        throw std::invalid_argument("A Stream Socket was expected, got a different socket type");
    }
    if (!opts.ssl && opts.ssl_handshake_timeout)
        throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
    if (!opts.ssl && opts.ssl_shutdown_timeout)
        throw std::invalid_argument("ssl_shutdown_timeout is only meaningful with ssl");
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    if (!opts.ssl) {
        co_return co_await start_stream(loop, std::move(protocol), std::move(sock),
                                        StreamKind::socket);
    }
    TlsOptions tls{.ssl_handshake_timeout = opts.ssl_handshake_timeout,
                   .server_side = true,
                   .ssl_shutdown_timeout = opts.ssl_shutdown_timeout};
    co_return co_await start_tls_stream(loop, std::move(protocol), std::move(sock), *opts.ssl, tls);
}

Coro<OpenedTransport> open_pipe(EventLoop& loop, ErasedProtocolFactory factory, int fd,
                                PipeEnd end) {
#ifdef _WIN32
    // On Windows `fd` is a HANDLE opened for overlapped I/O (a named pipe's
    // end, as CPython's windows_utils.pipe makes), or a socket.
    const DWORD type = ::GetFileType(reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd)));
    if (type != FILE_TYPE_PIPE && type != FILE_TYPE_CHAR) {
        throw std::invalid_argument("Pipe transport is for pipes/sockets only.");
    }
#else
    struct ::stat info {};
    if (::fstat(fd, &info) < 0) throw_errno("fstat");
    if (!S_ISFIFO(info.st_mode) && !S_ISSOCK(info.st_mode) && !S_ISCHR(info.st_mode)) {
        throw std::invalid_argument("Pipe transport is for pipes/sockets only.");
    }
#endif
    ignore_sigpipe();
    // The factory first: if it fails, the caller's descriptor stays open.
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    Socket pipe = Socket::from_fd(fd);
    co_return co_await start_stream(
        loop, std::move(protocol), std::move(pipe),
        end == PipeEnd::read ? StreamKind::read_pipe : StreamKind::write_pipe);
}

}  // namespace asyncio::detail
