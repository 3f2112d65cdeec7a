// What the library's benchmark servers share: the command line (a port, and
// --tls CERT KEY to serve TLS), print "Serving on HOST:PORT" once `server`
// listens, serve until SIGINT or SIGTERM, and report a backend this build or
// machine lacks in one line with exit code 1 (run.py then reports the run as
// skipped with that line).
#pragma once

#include <asyncio.hpp>
#include <asyncio/ssl.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace bench {

/// What a server is asked to serve: the port, and a TLS context if --tls.
struct ServerConfig {
    int port = 8888;
    std::optional<asyncio::SSLContext> ssl{};
};

/// Serves on `server` until the process is asked to stop.
inline asyncio::Coro<> serve_until_stopped(asyncio::Server server) {
    fmt::print("Serving on {}\n", server.sockets().front());
    std::fflush(stdout);  // run.py waits for this line
    asyncio::EventLoop& loop = asyncio::get_running_loop();
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

/// A server's TLS context, as Python's ssl.create_default_context(
/// Purpose.CLIENT_AUTH) + load_cert_chain, the peer's settings.
inline asyncio::SSLContext server_context(const char* certfile, const char* keyfile) {
#if BENCH_WITH_TLS
    auto ctx = asyncio::SSLContext::create_default_context(asyncio::Purpose::CLIENT_AUTH);
    ctx.load_cert_chain(certfile, std::string(keyfile));
    return ctx;
#else
    (void)certfile, (void)keyfile;
    throw std::runtime_error("--tls: this build has no TLS (ASYNCIO_WITH_SSL=OFF)");
#endif
}

/// main() of a server: `serve(config)` runs on the backend ASYNCIO_BACKEND
/// names. Arguments: PORT [--tls CERTFILE KEYFILE].
inline int run_server(int argc, char** argv, asyncio::Coro<> (*serve)(ServerConfig)) {
    // Checked before the coroutine exists, so that no "never awaited"
    // warning hides the reason.
    try {
        ServerConfig config;
        if (argc > 1) config.port = std::atoi(argv[1]);
        if (argc > 2) {
            if (argc != 5 || std::strcmp(argv[2], "--tls") != 0) {
                fmt::print(stderr, "usage: {} PORT [--tls CERTFILE KEYFILE]\n", argv[0]);
                return 2;
            }
            config.ssl = server_context(argv[3], argv[4]);
        }
        asyncio::Backend backend = asyncio::default_backend();
        if (!asyncio::backend_available(backend)) {
            fmt::print(stderr, "{}: the {} backend is not available\n", argv[0],
                       asyncio::to_string(backend));
            return 1;
        }
        asyncio::run(serve(std::move(config)));
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}: {}\n", argv[0], e.what());
        return 1;
    }
    return 0;
}

}  // namespace bench
