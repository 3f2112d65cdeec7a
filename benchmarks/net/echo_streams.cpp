// Echo server on streams, the library's other side of the echo workload (see
// run.py): start_server, then per connection read what has arrived, write
// it, drain. It costs what the stream layer adds over echo_protocol.cpp.
//
//   echo_streams PORT [--tls CERTFILE KEYFILE]
//       (0: any free port; ASYNCIO_BACKEND picks the backend; --tls serves TLS
//       with start_server's ssl=)
//
// Prints "Serving on 127.0.0.1:PORT" once listening, exits 0 on SIGINT or
// SIGTERM.
#include <asyncio.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <system_error>

#include "library_server.hpp"

asyncio::Coro<> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    try {
        for (;;) {
            std::string data = co_await reader.read(65536);
            if (data.empty()) break;  // EOF: the client is done
            writer.write(data);
            co_await writer.drain();
        }
    } catch (const std::system_error&) {
        // A reset by the client ends this connection only; a benchmark
        // client that stops does so, and the server must stay quiet.
    }
    writer.close();
    try {
        co_await writer.wait_closed();
    } catch (const std::system_error&) {
    }
}

asyncio::Coro<> serve(bench::ServerConfig config) {
    asyncio::StartOptions options{.ssl = config.ssl};
    asyncio::Server server =
        co_await asyncio::start_server(handle_echo, "127.0.0.1", config.port, options);
    co_await bench::serve_until_stopped(std::move(server));
}

int main(int argc, char** argv) {
    return bench::run_server(argc, argv, &serve);
}
