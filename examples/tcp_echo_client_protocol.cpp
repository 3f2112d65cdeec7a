// TCP echo client protocol, from the asyncio docs (Transports and
// Protocols). The server's port comes from the command line (the docs use
// 8888).
//
//   class EchoClientProtocol(asyncio.Protocol):
//       def __init__(self, message, on_con_lost):
//           self.message = message
//           self.on_con_lost = on_con_lost
//
//       def connection_made(self, transport):
//           transport.write(self.message.encode())
//           print('Data sent: {!r}'.format(self.message))
//
//       def data_received(self, data):
//           print('Data received: {!r}'.format(data.decode()))
//
//       def connection_lost(self, exc):
//           print('The server closed the connection')
//           self.on_con_lost.set_result(True)
//
//   async def main():
//       loop = asyncio.get_running_loop()
//
//       on_con_lost = loop.create_future()
//       message = 'Hello World!'
//
//       transport, protocol = await loop.create_connection(
//           lambda: EchoClientProtocol(message, on_con_lost),
//           '127.0.0.1', 8888)
//
//       # Wait until the protocol signals that the connection
//       # is lost and close the transport.
//       try:
//           await on_con_lost
//       finally:
//           transport.close()
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <cstdlib>
#include <memory>
#include <string>

class EchoClientProtocol : public asyncio::Protocol {
  public:
    EchoClientProtocol(std::string message, asyncio::Future<> on_con_lost)
        : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}

    void connection_made(asyncio::BaseTransport& transport) override {
        dynamic_cast<asyncio::Transport&>(transport).write(message_);
        fmt::print("Data sent: {:?}\n", message_);
    }

    void data_received(std::string_view data) override {
        fmt::print("Data received: {:?}\n", data);
    }

    void connection_lost(std::exception_ptr) override {
        fmt::print("The server closed the connection\n");
        on_con_lost_.set_result();
    }

  private:
    std::string message_;
    asyncio::Future<> on_con_lost_;
};

asyncio::Coro<> main_coro(int port) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();

    asyncio::Future<> on_con_lost = loop.create_future();
    std::string message = "Hello World!";

    auto factory = [&] { return std::make_shared<EchoClientProtocol>(message, on_con_lost); };
    co_await loop.create_connection(factory, "127.0.0.1", port);

    // Wait until the protocol signals that the connection is lost. The
    // transport is gone by then (the Transport* that create_connection
    // returns is valid until connection_lost returns): nothing to close.
    co_await on_con_lost;
}

int main(int argc, char** argv) {
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 8888));
}
