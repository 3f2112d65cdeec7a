// The names the loop's socket and transport methods mention, declared but
// not defined, so that loop.hpp (and everything that includes it: tasks,
// locks, queues) does not pull in sockets and transports. Calling those
// methods needs socket.hpp, transports.hpp or streams.hpp, as in Python it
// needs a socket or a protocol.
#pragma once

#include <concepts>
#include <memory>
#include <type_traits>

namespace asyncio {

class Address;
struct AddrInfo;
struct AddrInfoOptions;
class Socket;

class BaseProtocol;
class BaseTransport;
class ReadTransport;
class WriteTransport;
class Transport;
class DatagramTransport;
class SubprocessTransport;
class Server;
struct ConnectionOptions;
struct ServerOptions;
struct AcceptedSocketOptions;
struct DatagramOptions;
struct SubprocessOptions;
class SSLContext;
struct TlsOptions;

/// What create_connection, create_server and friends accept as
/// protocol_factory: a callable returning the protocol, as a
/// std::shared_ptr (the transport keeps it alive until connection_lost).
template <class F>
using protocol_of_t = typename std::invoke_result_t<F&>::element_type;

template <class F>
concept ProtocolFactory = requires(F& f) {
    { f() } -> std::convertible_to<std::shared_ptr<protocol_of_t<F>>>;
    requires std::derived_from<protocol_of_t<F>, BaseProtocol>;
};

}  // namespace asyncio
