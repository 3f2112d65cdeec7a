// What the library's benchmark servers share: print "Serving on HOST:PORT"
// once `server` listens, serve until SIGINT or SIGTERM, and report a backend
// this build or machine lacks in one line with exit code 1 (run.py then
// reports the run as skipped with that line).
#pragma once

#include <asyncio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>

namespace bench {

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

/// main() of a server: `serve(port)` runs on the backend ASYNCIO_BACKEND names.
inline int run_server(int argc, char** argv, asyncio::Coro<> (*serve)(int)) {
    // Checked before the coroutine exists, so that no "never awaited"
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
    return 0;
}

}  // namespace bench
