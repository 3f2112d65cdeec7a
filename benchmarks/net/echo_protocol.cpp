// Echo server on the Protocol API, the library's side of the echo workload
// (see run.py): data_received hands the bytes straight back to the
// transport. Quiet on purpose, unlike examples/tcp_echo_server_protocol.cpp,
// which prints every message and closes after one.
//
//   echo_protocol PORT [--tls CERTFILE KEYFILE]
//       (0: any free port; ASYNCIO_BACKEND picks the backend; --tls serves TLS
//       with create_server's ssl=, the echo then runs on the decrypted bytes)
//
// Prints "Serving on 127.0.0.1:PORT" once listening, exits 0 on SIGINT or
// SIGTERM.
#include <asyncio.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>

#include "library_server.hpp"

class EchoProtocol : public asyncio::Protocol {
  public:
    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override { transport_->write(data); }

  private:
    asyncio::Transport* transport_ = nullptr;
};

asyncio::Coro<> serve(bench::ServerConfig config) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    auto factory = [] { return std::make_shared<EchoProtocol>(); };
    asyncio::ServerOptions options{.ssl = config.ssl};
    asyncio::Server server =
        co_await loop.create_server(factory, "127.0.0.1", config.port, options);
    co_await bench::serve_until_stopped(std::move(server));
}

int main(int argc, char** argv) {
    return bench::run_server(argc, argv, &serve);
}
