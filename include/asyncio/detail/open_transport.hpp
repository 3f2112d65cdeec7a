// The templates behind loop.create_connection, create_server and the other
// transport-creating methods, and the compiled functions they call.
// transports.hpp and streams.hpp include it; loop.hpp only declares the
// methods, so that the layers below transports do not see them.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/socket.hpp"
#include "asyncio/transports.hpp"

namespace asyncio {

namespace detail {
/// A protocol factory with its type erased (the loop's non-template side).
using ErasedProtocolFactory = std::function<std::shared_ptr<BaseProtocol>()>;
template <class F>
ErasedProtocolFactory erase_protocol_factory(F factory) {
    // Shared, so that a move-only factory fits in a std::function.
    return [f = std::make_shared<F>(std::move(factory))]() -> std::shared_ptr<BaseProtocol> {
        return (*f)();
    };
}
/// A transport that connection_made was delivered to, and the protocol its
/// factory made.
struct OpenedTransport {
    std::shared_ptr<BaseTransport> transport;
    std::shared_ptr<BaseProtocol> protocol;
};

/// What open_connection's host names: a host (with a port) or a Unix socket path.
enum class Destination { host, unix_path };
/// Which end of a pipe open_pipe wraps.
enum class PipeEnd { read, write };

ASYNCIO_EXPORT Coro<OpenedTransport> open_connection(EventLoop& loop, ErasedProtocolFactory factory,
                                                     std::string host, int port,
                                                     ConnectionOptions opts,
                                                     Destination destination);
ASYNCIO_EXPORT Coro<OpenedTransport> open_accepted(EventLoop& loop, ErasedProtocolFactory factory,
                                                   Socket sock, AcceptedSocketOptions opts);
ASYNCIO_EXPORT Coro<OpenedTransport> open_pipe(EventLoop& loop, ErasedProtocolFactory factory,
                                               int fd, PipeEnd end);
ASYNCIO_EXPORT Coro<OpenedTransport> open_datagram(EventLoop& loop, ErasedProtocolFactory factory,
                                                   DatagramOptions opts);
ASYNCIO_EXPORT Coro<OpenedTransport> open_datagram_on(EventLoop& loop,
                                                      ErasedProtocolFactory factory, Socket sock);
ASYNCIO_EXPORT Coro<Server> open_server(EventLoop& loop, ErasedProtocolFactory factory,
                                        std::vector<std::string> hosts, int port,
                                        ServerOptions opts);
ASYNCIO_EXPORT Coro<Server> open_server_on(EventLoop& loop, ErasedProtocolFactory factory,
                                           Socket listening, ServerOptions opts);
ASYNCIO_EXPORT Coro<Server> open_unix_server(EventLoop& loop, ErasedProtocolFactory factory,
                                             std::string path, ServerOptions opts);

/// The pair create_connection and friends return: the protocol the factory
/// made (even if connection_made already switched or lost it). Both are
/// kept alive until the loop's next iteration, so that the pointers are
/// valid up to the caller's next suspension even if the connection was
/// lost before the caller resumed.
template <class T, class P>
std::pair<T*, P*> transport_pair(EventLoop& loop, OpenedTransport opened) {
    std::pair<T*, P*> pair{dynamic_cast<T*>(opened.transport.get()),
                           static_cast<P*>(opened.protocol.get())};
    loop.call_soon([held = std::move(opened)] {});
    return pair;
}
}  // namespace detail

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_connection(
    F factory, std::string host, int port, ConnectionOptions opts) {
    // Below, "" stands for no host (CPython's None): a host given as ""
    // must not get there.
    detail::refuse_empty_host(host);
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport =
        co_await detail::open_connection(*this, std::move(erased), std::move(host), port,
                                         std::move(opts), detail::Destination::host);
    co_return detail::transport_pair<Transport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_connection(
    F factory, std::nullopt_t, int port, ConnectionOptions opts) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport = co_await detail::open_connection(*this, std::move(erased), std::string(), port,
                                                      std::move(opts), detail::Destination::host);
    co_return detail::transport_pair<Transport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_unix_connection(
    F factory, std::string path, ConnectionOptions opts) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport =
        co_await detail::open_connection(*this, std::move(erased), std::move(path), 0,
                                         std::move(opts), detail::Destination::unix_path);
    co_return detail::transport_pair<Transport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::connect_accepted_socket(
    F factory, Socket sock, AcceptedSocketOptions opts) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport =
        co_await detail::open_accepted(*this, std::move(erased), std::move(sock), std::move(opts));
    co_return detail::transport_pair<Transport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::connect_accepted_socket(F factory,
                                                                                  Socket sock) {
    return connect_accepted_socket(std::move(factory), std::move(sock), AcceptedSocketOptions{});
}

template <ProtocolFactory F>
Coro<std::pair<DatagramTransport*, protocol_of_t<F>*>> EventLoop::create_datagram_endpoint(
    F factory, DatagramOptions opts) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport = co_await detail::open_datagram(*this, std::move(erased), std::move(opts));
    co_return detail::transport_pair<DatagramTransport, protocol_of_t<F>>(*this,
                                                                          std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<DatagramTransport*, protocol_of_t<F>*>> EventLoop::create_datagram_endpoint(
    F factory, Socket sock) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport = co_await detail::open_datagram_on(*this, std::move(erased), std::move(sock));
    co_return detail::transport_pair<DatagramTransport, protocol_of_t<F>>(*this,
                                                                          std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<ReadTransport*, protocol_of_t<F>*>> EventLoop::connect_read_pipe(F factory, int fd) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport =
        co_await detail::open_pipe(*this, std::move(erased), fd, detail::PipeEnd::read);
    co_return detail::transport_pair<ReadTransport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<std::pair<WriteTransport*, protocol_of_t<F>*>> EventLoop::connect_write_pipe(F factory,
                                                                                  int fd) {
    auto erased = detail::erase_protocol_factory(std::move(factory));
    auto transport =
        co_await detail::open_pipe(*this, std::move(erased), fd, detail::PipeEnd::write);
    co_return detail::transport_pair<WriteTransport, protocol_of_t<F>>(*this, std::move(transport));
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, std::string host, int port, ServerOptions opts) {
    std::vector<std::string> hosts{std::move(host)};
    return create_server(std::move(factory), std::move(hosts), port, opts);
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, std::vector<std::string> hosts, int port,
                                      ServerOptions opts) {
    return detail::open_server(*this, detail::erase_protocol_factory(std::move(factory)),
                               std::move(hosts), port, opts);
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, Socket listening, ServerOptions opts) {
    return detail::open_server_on(*this, detail::erase_protocol_factory(std::move(factory)),
                                  std::move(listening), opts);
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_unix_server(F factory, std::string path, ServerOptions opts) {
    return detail::open_unix_server(*this, detail::erase_protocol_factory(std::move(factory)),
                                    std::move(path), opts);
}

// The forms without options: loop.hpp cannot default an argument whose type
// it only declares.
template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_connection(F factory,
                                                                            std::string host,
                                                                            int port) {
    return create_connection(std::move(factory), std::move(host), port, ConnectionOptions{});
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_connection(F factory,
                                                                            std::nullopt_t none,
                                                                            int port) {
    return create_connection(std::move(factory), none, port, ConnectionOptions{});
}

template <ProtocolFactory F>
Coro<std::pair<Transport*, protocol_of_t<F>*>> EventLoop::create_unix_connection(F factory,
                                                                                 std::string path) {
    return create_unix_connection(std::move(factory), std::move(path), ConnectionOptions{});
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, std::string host, int port) {
    return create_server(std::move(factory), std::move(host), port, ServerOptions{});
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, std::vector<std::string> hosts, int port) {
    return create_server(std::move(factory), std::move(hosts), port, ServerOptions{});
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_server(F factory, Socket listening) {
    return create_server(std::move(factory), std::move(listening), ServerOptions{});
}

template <ProtocolFactory F>
Coro<Server> EventLoop::create_unix_server(F factory, std::string path) {
    return create_unix_server(std::move(factory), std::move(path), ServerOptions{});
}

}  // namespace asyncio
