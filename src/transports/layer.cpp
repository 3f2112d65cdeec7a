// base_events.BaseEventLoop.start_tls, without the TLS: layering a protocol
// over a live transport.
#include "asyncio/handle.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/transports.hpp"

namespace asyncio {

Coro<void> insert_layer(Transport& transport, std::shared_ptr<BaseProtocol> layer, Future<> ready) {
    if (transport.is_closing()) throw RuntimeError("Transport is closing");
    EventLoop& loop = get_running_loop();
    auto below = std::dynamic_pointer_cast<Transport>(transport.shared_from_this());
    // Paused first, so that the layer cannot get data before connection_made.
    below->pause_reading();
    below->set_protocol(layer);
    Handle made = loop.call_soon([below, layer] { layer->connection_made(*below); });
    Handle resumed = loop.call_soon([below] { below->resume_reading(); });
    Outcome<void> inserted = co_await detail::try_await(ready);
    if (!inserted.has_value()) {
        below->close();
        made.cancel();
        resumed.cancel();
    }
    std::move(inserted).get();
}

}  // namespace asyncio
