// Register an open socket to wait for data using a protocol, from the asyncio
// docs (Transports and Protocols). Python's create_connection(sock=...) is
// connect_accepted_socket here, and socket.socketpair() is asyncio::socketpair().
//
//   class MyProtocol(asyncio.Protocol):
//
//       def __init__(self, on_con_lost):
//           self.transport = None
//           self.on_con_lost = on_con_lost
//
//       def connection_made(self, transport):
//           self.transport = transport
//
//       def data_received(self, data):
//           print("Received:", data.decode())
//
//           # We are done: close the transport;
//           # connection_lost() will be called automatically.
//           self.transport.close()
//
//       def connection_lost(self, exc):
//           # The socket has been closed
//           self.on_con_lost.set_result(True)
//
//   async def main():
//       loop = asyncio.get_running_loop()
//       on_con_lost = loop.create_future()
//
//       # Create a pair of connected sockets
//       rsock, wsock = socket.socketpair()
//
//       # Register the socket to wait for data.
//       transport, protocol = await loop.create_connection(
//           lambda: MyProtocol(on_con_lost), sock=rsock)
//
//       # Simulate the reception of data from the network.
//       loop.call_soon(wsock.send, 'abc'.encode())
//
//       try:
//           await protocol.on_con_lost
//       finally:
//           transport.close()
//           wsock.close()
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <memory>

class MyProtocol : public asyncio::Protocol {
  public:
    explicit MyProtocol(asyncio::Future<> on_con_lost) : on_con_lost(std::move(on_con_lost)) {}

    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override {
        fmt::print("Received: {}\n", data);

        // We are done: close the transport; connection_lost() will be called
        // automatically.
        transport_->close();
    }

    void connection_lost(std::exception_ptr) override {
        // The socket has been closed
        on_con_lost.set_result();
    }

    asyncio::Future<> on_con_lost;

  private:
    asyncio::Transport* transport_ = nullptr;
};

asyncio::Coro<> main_coro() {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Future<> on_con_lost = loop.create_future();

    // Create a pair of connected sockets
    auto [first, second] = asyncio::socketpair();
    asyncio::Socket rsock = std::move(first);
    asyncio::Socket wsock = std::move(second);

    // Register the socket to wait for data.
    auto factory = [&] { return std::make_shared<MyProtocol>(on_con_lost); };
    auto [transport, protocol] = co_await loop.connect_accepted_socket(factory, std::move(rsock));

    // Simulate the reception of data from the network.
    loop.call_soon([&wsock] { ::send(wsock.fileno(), "abc", 3, 0); });

    co_await protocol->on_con_lost;
    wsock.close();
}

int main() {
    asyncio::run(main_coro());
}
