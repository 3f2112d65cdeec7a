// UDP echo server protocol, from the asyncio docs (Transports and
// Protocols). The port comes from the command line (0: any free port; the
// docs use 9999), and the server runs until Ctrl-C or SIGTERM instead of an
// hour.
//
//   class EchoServerProtocol:
//       def connection_made(self, transport):
//           self.transport = transport
//
//       def datagram_received(self, data, addr):
//           message = data.decode()
//           print('Received %r from %s' % (message, addr))
//           print('Send %r to %s' % (message, addr))
//           self.transport.sendto(data, addr)
//
//   async def main():
//       print("Starting UDP server")
//
//       loop = asyncio.get_running_loop()
//
//       # One protocol instance will be created to serve all
//       # client requests.
//       transport, protocol = await loop.create_datagram_endpoint(
//           EchoServerProtocol,
//           local_addr=('127.0.0.1', 9999))
//
//       try:
//           await asyncio.sleep(3600)  # Serve for 1 hour.
//       finally:
//           transport.close()
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

class EchoServerProtocol : public asyncio::DatagramProtocol {
  public:
    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::DatagramTransport&>(transport);
    }

    void datagram_received(std::string_view data, const asyncio::Address& addr) override {
        fmt::print("Received {:?} from {}\n", data, addr);
        fmt::print("Send {:?} to {}\n", data, addr);
        transport_->sendto(data, addr);
    }

  private:
    asyncio::DatagramTransport* transport_ = nullptr;
};

asyncio::Coro<> main_coro(int port) {
    fmt::print("Starting UDP server\n");

    asyncio::EventLoop& loop = asyncio::get_running_loop();

    // One protocol instance will be created to serve all client requests.
    auto factory = [] { return std::make_shared<EchoServerProtocol>(); };
    asyncio::DatagramOptions options{.local_addr = asyncio::Address::parse("127.0.0.1", port)};
    auto [transport, protocol] = co_await loop.create_datagram_endpoint(factory, options);

    fmt::print("Serving on {}\n", *transport->sockname());
    std::fflush(stdout);  // for a script that waits for this line

    // Serve until SIGTERM or SIGINT (Ctrl-C) arrives, then close, so that
    // main returns 0.
    asyncio::Future<> stop = loop.create_future();
    for (int sig : {SIGTERM, SIGINT}) {
        loop.add_signal_handler(sig, [stop]() mutable {
            if (!stop.done()) stop.set_result();
        });
    }
    co_await stop;
    transport->close();
}

int main(int argc, char** argv) {
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 9999));
}
