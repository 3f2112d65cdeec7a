// Echo server on the Protocol API, the library's side of the echo workload
// (see run.py): data_received hands the bytes straight back to the
// transport. Quiet on purpose, unlike examples/tcp_echo_server_protocol.cpp,
// which prints every message and closes after one.
//
//   echo_protocol PORT      (0: any free port; ASYNCIO_BACKEND picks the backend)
//
// Prints "Serving on 127.0.0.1:PORT" once listening, exits 0 on SIGINT or
// SIGTERM.
#include <asyncio.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>

#include "../../examples/until_stopped.hpp"

class EchoProtocol : public asyncio::Protocol {
  public:
    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override { transport_->write(data); }

  private:
    asyncio::Transport* transport_ = nullptr;
};

asyncio::Coro<> serve(int port) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    auto factory = [] { return std::make_shared<EchoProtocol>(); };
    asyncio::Server server = co_await loop.create_server(factory, "127.0.0.1", port);

    fmt::print("Serving on {}\n", server.sockets().front());
    std::fflush(stdout);  // run.py waits for this line

    co_await examples::until_stopped();
    server.close();
    co_await server.wait_closed();
}

int main(int argc, char** argv) {
    // ASYNCIO_BACKEND may name a backend this build or machine lacks: say so
    // in one line and exit 1 (run.py reports the run as skipped with it),
    // checked before the coroutine exists so that no "never awaited"
    // warning hides the reason.
    try {
        asyncio::Backend backend = asyncio::default_backend();
        if (!asyncio::backend_available(backend)) {
            fmt::print(stderr, "{}: the {} backend is not available\n", argv[0],
                       asyncio::to_string(backend));
            return 1;
        }
        asyncio::run(serve(argc > 1 ? std::atoi(argv[1]) : 8888));
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
}
