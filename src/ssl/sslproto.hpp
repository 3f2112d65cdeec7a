// The TLS layer (sslproto.cpp), for the entry points that open connections
// with ssl= (create_connection, create_server).
#pragma once

#include <memory>
#include <optional>

#include "asyncio/future.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/ssl.hpp"
#include "asyncio/transports.hpp"

namespace asyncio::detail {

/// Whether the layer calls the application's connection_made once the
/// handshake is done (create_connection, create_server) or not (start_tls:
/// CPython's call_connection_made=False).
enum class ConnectionMade { call, skip };

/// One TLS layer, seen as the protocol of the transport below and as the
/// transport the application uses.
struct TlsLayer {
    std::shared_ptr<BaseProtocol> protocol;
    std::shared_ptr<Transport> transport;
};

/// The layer over `app`; `ready` (if any) completes when the handshake is
/// done, or fails with its error.
TlsLayer make_tls_layer(std::shared_ptr<BaseProtocol> app, const SSLContext& context,
                        const TlsOptions& options, std::optional<Future<>> ready,
                        ConnectionMade connection_made);

}  // namespace asyncio::detail
