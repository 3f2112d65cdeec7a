// UDP echo client protocol, from the asyncio docs (Transports and
// Protocols). The server's port comes from the command line (the docs use
// 9999).
//
//   class EchoClientProtocol:
//       def __init__(self, message, on_con_lost):
//           self.message = message
//           self.on_con_lost = on_con_lost
//           self.transport = None
//
//       def connection_made(self, transport):
//           self.transport = transport
//           print('Send:', self.message)
//           self.transport.sendto(self.message.encode())
//
//       def datagram_received(self, data, addr):
//           print("Received:", data.decode())
//
//           print("Close the socket")
//           self.transport.close()
//
//       def error_received(self, exc):
//           print('Error received:', exc)
//
//       def connection_lost(self, exc):
//           print("Connection closed")
//           self.on_con_lost.set_result(True)
//
//   async def main():
//       loop = asyncio.get_running_loop()
//
//       on_con_lost = loop.create_future()
//       message = "Hello World!"
//
//       transport, protocol = await loop.create_datagram_endpoint(
//           lambda: EchoClientProtocol(message, on_con_lost),
//           remote_addr=('127.0.0.1', 9999))
//
//       try:
//           await on_con_lost
//       finally:
//           transport.close()
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

class EchoClientProtocol : public asyncio::DatagramProtocol {
  public:
    EchoClientProtocol(std::string message, asyncio::Future<> on_con_lost)
        : message_(std::move(message)), on_con_lost_(std::move(on_con_lost)) {}

    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::DatagramTransport&>(transport);
        fmt::print("Send: {}\n", message_);
        transport_->sendto(message_);
    }

    void datagram_received(std::string_view data, const asyncio::Address&) override {
        fmt::print("Received: {}\n", data);

        fmt::print("Close the socket\n");
        transport_->close();
    }

    void error_received(std::exception_ptr exc) override {
        try {
            std::rethrow_exception(exc);
        } catch (const std::exception& e) {
            fmt::print("Error received: {}\n", e.what());
        }
    }

    void connection_lost(std::exception_ptr) override {
        fmt::print("Connection closed\n");
        on_con_lost_.set_result();
    }

  private:
    std::string message_;
    asyncio::Future<> on_con_lost_;
    asyncio::DatagramTransport* transport_ = nullptr;
};

asyncio::Coro<> main_coro(int port) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();

    asyncio::Future<> on_con_lost = loop.create_future();
    std::string message = "Hello World!";

    auto factory = [&] { return std::make_shared<EchoClientProtocol>(message, on_con_lost); };
    asyncio::DatagramOptions options{.remote_addr = asyncio::Address::parse("127.0.0.1", port)};
    co_await loop.create_datagram_endpoint(factory, options);

    // The protocol closes the transport; connection_lost sets on_con_lost.
    co_await on_con_lost;
}

int main(int argc, char** argv) {
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 9999));
}
