// TCP echo server protocol, from the asyncio docs (Transports and
// Protocols). The port comes from the command line (0: any free port; the
// docs use 8888), and the server runs until Ctrl-C or SIGTERM.
//
//   class EchoServerProtocol(asyncio.Protocol):
//       def connection_made(self, transport):
//           peername = transport.get_extra_info('peername')
//           print('Connection from {}'.format(peername))
//           self.transport = transport
//
//       def data_received(self, data):
//           message = data.decode()
//           print('Data received: {!r}'.format(message))
//
//           print('Send: {!r}'.format(message))
//           self.transport.write(data)
//
//           print('Close the client socket')
//           self.transport.close()
//
//   async def main():
//       loop = asyncio.get_running_loop()
//
//       server = await loop.create_server(
//           EchoServerProtocol,
//           '127.0.0.1', 8888)
//
//       async with server:
//           await server.serve_forever()
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

class EchoServerProtocol : public asyncio::Protocol {
  public:
    void connection_made(asyncio::BaseTransport& transport) override {
        fmt::print("Connection from {}\n", *transport.peername());
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override {
        fmt::print("Data received: {:?}\n", data);

        fmt::print("Send: {:?}\n", data);
        transport_->write(data);

        fmt::print("Close the client socket\n");
        transport_->close();
    }

  private:
    asyncio::Transport* transport_ = nullptr;
};

asyncio::Coro<> main_coro(int port) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();

    auto factory = [] { return std::make_shared<EchoServerProtocol>(); };
    asyncio::Server server = co_await loop.create_server(factory, "127.0.0.1", port);

    fmt::print("Serving on {}\n", server.sockets().front());
    std::fflush(stdout);  // for a script that waits for this line

    // async with server: await server.serve_forever(), until SIGTERM or
    // SIGINT (Ctrl-C) arrives, so that the server closes and main returns 0.
    asyncio::Future<> stop = loop.create_future();
    for (int sig : {SIGTERM, SIGINT}) {
        loop.add_signal_handler(sig, [stop]() mutable {
            if (!stop.done()) stop.set_result();
        });
    }
    co_await stop;
    server.close();
    co_await server.wait_closed();
}

int main(int argc, char** argv) {
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 8888));
}
