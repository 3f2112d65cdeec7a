// asyncio.Server and create_server / create_unix_server
// (base_events.Server, base_events.create_server, selector_events
// _accept_connection, unix_events.create_unix_server).
#ifndef _WIN32
#include <netinet/in.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_set>

#include "asyncio/log.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/tasks.hpp"
#include "internal.hpp"
#include "transports/stream.hpp"
#if ASYNCIO_HAVE_SSL
#include "ssl/sslproto.hpp"
#endif

namespace asyncio::detail {

namespace {
constexpr auto kAcceptRetryDelay = std::chrono::seconds(1);  // CPython's ACCEPT_RETRY_DELAY

bool out_of_resources(std::int64_t result) {
    return result == -EMFILE || result == -ENFILE || result == -ENOBUFS || result == -ENOMEM;
}
}  // namespace

class ServerState final : public ConnectionOwner,
                          public LoopResource,
                          public std::enable_shared_from_this<ServerState> {
  public:
    ServerState(EventLoop& loop, ErasedProtocolFactory factory, std::vector<Socket> sockets,
                ServerOptions options)
        : loop_(&loop),
          factory_(std::move(factory)),
          sockets_(std::move(sockets)),
          options_(options) {
        for (std::size_t i = 0; i < sockets_.size(); ++i) {
            auto acceptor = std::make_unique<Acceptor>();
            acceptor->owner = this;
            acceptor->index = i;
            acceptors_.push_back(std::move(acceptor));
            sockets_[i].attach(library_key, loop);
        }
    }

    /// Registers with the loop and keeps itself alive while it listens.
    void init(std::optional<std::string> unix_path) {
        self_ = shared_from_this();
        unix_path_ = std::move(unix_path);
        if (unix_path_) {
            struct ::stat info {};
            if (::stat(unix_path_->c_str(), &info) == 0) unix_inode_ = info.st_ino;
        }
        loop_->register_resource(*this);
    }

    EventLoop& loop() const noexcept { return *loop_; }
    bool is_serving() const noexcept { return serving_; }
    bool closed() const noexcept { return closed_; }

    void start_serving() {
        if (serving_ || closed_) return;
        serving_ = true;
        for (Socket& sock : sockets_)
            sock.listen(options_.backlog);
        for (auto& acceptor : acceptors_)
            submit_accept(*acceptor);
    }

    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        serving_ = false;
        for (auto& acceptor : acceptors_) {
            acceptor->retry.cancel();
            if (acceptor->busy && acceptor->in_flight) backend().cancel(*acceptor);
        }
        for (Socket& sock : sockets_)
            sock.close();
        if (unix_path_ && options_.cleanup_socket) {
            struct ::stat info {};
            // Only if the path is still the socket we made (not someone else's since).
            if (::stat(unix_path_->c_str(), &info) == 0 && info.st_ino == unix_inode_) {
                ::unlink(unix_path_->c_str());
            }
        }
        if (serving_forever_ && !serving_forever_->done()) serving_forever_->cancel();
        serving_forever_.reset();
        if (active_ == 0) wakeup();
        unregister_resource();
        maybe_release();
    }

    Coro<void> wait_closed() {
        if (waiters_done_) co_return;
        Future<> waiter = loop_->create_future();
        waiters_.push_back(waiter);
        co_await waiter;
    }

    Coro<void> serve_forever() {
        if (serving_forever_)
            throw RuntimeError("server is already being awaited on serve_forever()");
        if (closed_) throw RuntimeError("server is closed");
        start_serving();
        serving_forever_ = loop_->create_future();
        Future<> forever = *serving_forever_;
        Outcome<void> served = co_await try_await(forever);
        serving_forever_.reset();
        if (is_cancellation(served.exception())) {
            close();
            co_await wait_closed();
        }
        std::move(served).get();
    }

    std::vector<Address> addresses() const {
        std::vector<Address> out;
        if (closed_) return out;
        for (const Socket& sock : sockets_)
            out.push_back(sock.getsockname());
        return out;
    }

    /// How close_clients ends each connection: close() lets the write
    /// buffer drain, abort() drops it.
    enum class Ending { close, abort };

    void close_clients(Ending ending) {
        std::vector<std::shared_ptr<BaseTransport>> clients;
        for (BaseTransport* client : clients_)
            clients.push_back(client->shared_from_this());
        for (auto& client : clients) {
            if (ending == Ending::abort) {
                dynamic_cast<WriteTransport&>(*client).abort();
            } else {
                client->close();
            }
        }
    }

    void detach(BaseTransport& transport) noexcept override {
        clients_.erase(&transport);
        if (--active_ == 0 && closed_) wakeup();
    }

    void loop_closing() noexcept override {
        for (auto& acceptor : acceptors_) {
            if (acceptor->busy && acceptor->in_flight) {
                acceptor->busy = false;
                --pending_ops_;
            }
        }
        abandon_acceptors();
        for (auto& acceptor : acceptors_)
            acceptor->retry = {};
        closed_ = true;
        serving_ = false;
        for (Socket& sock : sockets_)
            sock.close();
        serving_forever_.reset();
        waiters_.clear();
        maybe_release();
    }

  private:
    struct Acceptor : IoOp {
        Acceptor() noexcept : IoOp(&on_accept) {}
        ServerState* owner = nullptr;
        std::size_t index = 0;
        bool busy = false;
        TimerHandle retry;  // accept paused after EMFILE and friends
    };

    IoBackend& backend() const noexcept { return loop_->backend(); }

    /// Starts an accept; returns true if one completed at once (result set).
    bool start_accept(Acceptor& a) noexcept {
        // No address: a backend may keep accepting between submissions
        // (multishot accept); the transport asks for the peer's name.
        a.kind = IoOp::Kind::accept;
        a.fd = sockets_[a.index].fileno();
        a.wait_first = false;
        a.busy = true;
        ++pending_ops_;
        if (!backend().submit(a)) return false;
        a.busy = false;
        --pending_ops_;
        return true;
    }

    void submit_accept(Acceptor& a) noexcept {
        if (a.busy || closed_ || !serving_) return;
        if (start_accept(a)) {
            // Done at once: handle it from the loop, as a readiness callback would.
            a.busy = true;
            ++pending_ops_;
            loop_->schedule(a);
        }
    }

    static void on_accept(ReadyNode& node, ReadyNode::Action action) noexcept {
        auto& a = static_cast<Acceptor&>(static_cast<IoOp&>(static_cast<Waiter&>(node)));
        ServerState* self = a.owner;
        a.busy = false;
        --self->pending_ops_;
        if (action == ReadyNode::Action::run) {
            self->handle_accepts(a, a.result);
        } else if (a.result >= 0) {
            ::close(static_cast<int>(a.result));
        }
        self->maybe_release();
    }

    /// Handles `result`, then accepts more at once, up to the backlog per
    /// call (CPython's _accept_connection loop), before waiting again.
    void handle_accepts(Acceptor& a, std::int64_t result) noexcept {
        for (int accepted = 0;; ++accepted) {
            if (closed_ || !serving_) {
                if (result >= 0) ::close(static_cast<int>(result));
                return;
            }
            if (result >= 0) {
                accept_connection(static_cast<int>(result));
            } else if (out_of_resources(result)) {
                // The loop must not spin: stop accepting for a while, keep serving.
                ExceptionContext context;
                context.message = "socket.accept() out of system resource";
                context.socket = a.fd;
                context.exception = result_error(result, "accept");
                loop_->call_exception_handler(context);
                std::weak_ptr<ServerState> weak = weak_from_this();
                Acceptor* acceptor = &a;
                a.retry = loop_->call_later(kAcceptRetryDelay, [weak, acceptor] {
                    if (auto self = weak.lock()) self->submit_accept(*acceptor);
                });
                return;
            } else if (result != -EAGAIN && result != -EINTR && result != -ECONNABORTED &&
                       result != -EPROTO && result != -ECANCELED) {
                ExceptionContext context;
                context.message = "Error on accept()";
                context.socket = a.fd;
                context.exception = result_error(result, "accept");
                loop_->call_exception_handler(context);
            }
            if (accepted + 1 >= options_.backlog) {
                submit_accept(a);  // more next iteration
                return;
            }
            if (closed_ || !serving_ || !start_accept(a)) return;  // else: waiting in the backend
            result = a.result;
        }
    }

    void accept_connection(int fd) noexcept {
        Socket conn = Socket::from_fd(fd);
        if (options_.keep_alive) conn.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
        std::shared_ptr<BaseProtocol> protocol;
        try {
            protocol = make_protocol(factory_);
        } catch (...) {
            ExceptionContext context;
            context.message = "Error on transport creation for incoming connection";
            context.exception = std::current_exception();
            try {
                context.repr = "peer " + conn.getpeername().to_string();
            } catch (const std::system_error&) {
                context.repr = "peer (gone)";
            }
            loop_->call_exception_handler(context);
            return;
        }
#if ASYNCIO_HAVE_SSL
        if (options_.ssl) {
            // base_events._accept_connection2 with ssl: the TLS layer is the
            // connection's protocol; the application's connection_made
            // comes after the handshake, and a failed one only closes it.
            TlsOptions tls{.ssl_handshake_timeout = options_.ssl_handshake_timeout,
                           .server_side = true,
                           .ssl_shutdown_timeout = options_.ssl_shutdown_timeout};
            try {
                protocol = make_tls_layer(std::move(protocol), *options_.ssl, tls, std::nullopt,
                                          ConnectionMade::call)
                               .protocol;
            } catch (...) {
                ExceptionContext context;
                context.message = "Error on transport creation for incoming connection";
                context.exception = std::current_exception();
                loop_->call_exception_handler(context);
                return;
            }
        }
#endif
        ++active_;
        auto transport =
            StreamTransport::start(*loop_, std::move(conn), std::move(protocol), StreamKind::socket,
                                   shared_from_this(), std::nullopt);
        clients_.insert(transport.get());
    }

    void wakeup() noexcept {
        waiters_done_ = true;
        for (Future<>& waiter : std::exchange(waiters_, {})) {
            if (!waiter.done()) waiter.set_result();
        }
    }

    /// What a backend keeps armed for the acceptors (a multishot accept,
    /// connections it accepted ahead) goes: nothing of ours is in flight.
    void abandon_acceptors() noexcept {
        for (auto& acceptor : acceptors_) {
            if (acceptor->attached()) backend().abandon(*acceptor, self_);
        }
    }

    void maybe_release() noexcept {
        if (!closed_ || pending_ops_ > 0) return;
        abandon_acceptors();
        std::shared_ptr<ServerState> last = std::move(self_);
    }

    EventLoop* loop_;
    ErasedProtocolFactory factory_;
    std::vector<Socket> sockets_;
    ServerOptions options_;
    std::vector<std::unique_ptr<Acceptor>> acceptors_;
    std::shared_ptr<ServerState> self_;  // alive while listening or an accept is pending
    int pending_ops_ = 0;
    bool serving_ = false;
    bool closed_ = false;
    std::size_t active_ = 0;
    std::unordered_set<BaseTransport*> clients_;
    std::vector<Future<>> waiters_;
    bool waiters_done_ = false;
    std::optional<Future<>> serving_forever_;
    std::optional<std::string> unix_path_;
    ino_t unix_inode_ = 0;
};

namespace {

Coro<Server> make_server(EventLoop& loop, ErasedProtocolFactory factory,
                         std::vector<Socket> sockets, ServerOptions options,
                         std::optional<std::string> unix_path) {
    auto state =
        std::make_shared<ServerState>(loop, std::move(factory), std::move(sockets), options);
    state->init(std::move(unix_path));
    if (options.start_serving) {
        try {
            state->start_serving();
        } catch (...) {
            state->close();  // listen() refused: release the sockets and the state now
            throw;
        }
        co_await sleep(0);  // as CPython: let the accepts get going
    }
    co_return Server(library_key, state);
}

}  // namespace

Coro<Server> open_server(EventLoop& loop, ErasedProtocolFactory factory,
                         std::vector<std::string> hosts, int port, ServerOptions opts) {
    if (hosts.empty()) hosts.emplace_back();
    std::vector<AddrInfo> infos;
    for (const std::string& host : hosts) {
        auto found = co_await loop.getaddrinfo(host, std::to_string(port),
                                               {opts.family, SOCK_STREAM, 0, opts.flags});
        for (AddrInfo& info : found) {
            const bool seen = std::any_of(infos.begin(), infos.end(), [&](const AddrInfo& known) {
                return known.address == info.address;
            });
            if (!seen) infos.push_back(std::move(info));
        }
    }
    std::vector<Socket> sockets;
    for (const AddrInfo& info : infos) {
        Socket sock;
        try {
            sock = Socket(info.family, info.type, info.protocol);
        } catch (const std::system_error&) {
            continue;  // this family is not available here
        }
        if (opts.reuse_address) sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
        if (opts.reuse_port) set_reuse_port(sock);
        if (opts.keep_alive) sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
        // Without it, binding [::] would also take the IPv4 port we bind next.
        if (info.family == AF_INET6) sock.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
        try {
            sock.bind(info.address);
        } catch (const std::system_error& e) {
            if (e.code().value() == EADDRNOTAVAIL) continue;  // the family is not enabled
            throw std::system_error(
                e.code(), "error while attempting to bind on address " + info.address.to_string());
        }
        sockets.push_back(std::move(sock));
    }
    if (sockets.empty()) {
        throw std::system_error(std::make_error_code(std::errc::address_not_available),
                                "could not bind on any address");
    }
    co_return co_await make_server(loop, std::move(factory), std::move(sockets), opts,
                                   std::nullopt);
}

Coro<Server> open_server_on(EventLoop& loop, ErasedProtocolFactory factory, Socket listening,
                            ServerOptions opts) {
    if (listening.type() != SOCK_STREAM) {
        throw std::invalid_argument("A Stream Socket was expected, got a different socket type");
    }
    std::vector<Socket> sockets;
    sockets.push_back(std::move(listening));
    co_return co_await make_server(loop, std::move(factory), std::move(sockets), opts,
                                   std::nullopt);
}

Coro<Server> open_unix_server(EventLoop& loop, ErasedProtocolFactory factory, std::string path,
                              ServerOptions opts) {
    if (!path.empty() && path.front() != '@') {
        struct ::stat info {};
        // Remove a stale socket file left by an earlier server.
        if (::stat(path.c_str(), &info) == 0 && is_socket_file(info)) ::unlink(path.c_str());
    }
    Socket sock(AF_UNIX, SOCK_STREAM);
    try {
        sock.bind(Address::unix_path(path));
    } catch (const std::system_error& e) {
        if (e.code().value() == EADDRINUSE) {
            throw std::system_error(e.code(), "Address '" + path + "' is already in use");
        }
        throw;
    }
    std::vector<Socket> sockets;
    sockets.push_back(std::move(sock));
    std::optional<std::string> cleanup;
    if (!path.empty() && path.front() != '@') cleanup = path;
    co_return co_await make_server(loop, std::move(factory), std::move(sockets), opts,
                                   std::move(cleanup));
}

}  // namespace asyncio::detail

namespace asyncio {

namespace {
// Free coroutines holding the state: the Server handle may die meanwhile.
Coro<void> wait_closed_on(std::shared_ptr<detail::ServerState> state) {
    co_await state->wait_closed();
}
Coro<void> serve_forever_on(std::shared_ptr<detail::ServerState> state) {
    co_await state->serve_forever();
}
Coro<void> start_serving_on(std::shared_ptr<detail::ServerState> state) {
    state->start_serving();
    co_await sleep(0);
}
}  // namespace

void Server::close() {
    state_->close();
}
Coro<void> Server::wait_closed() {
    return wait_closed_on(state_);
}
Coro<void> Server::serve_forever() {
    return serve_forever_on(state_);
}
Coro<void> Server::start_serving() {
    return start_serving_on(state_);
}
bool Server::is_serving() const noexcept {
    return state_->is_serving();
}
std::vector<Address> Server::sockets() const {
    return state_->addresses();
}
void Server::close_clients() {
    state_->close_clients(detail::ServerState::Ending::close);
}
void Server::abort_clients() {
    state_->close_clients(detail::ServerState::Ending::abort);
}
EventLoop& Server::get_loop() const noexcept {
    return state_->loop();
}

}  // namespace asyncio
