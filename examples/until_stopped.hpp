// What the servers among the examples await where the Python examples serve
// until Ctrl-C: until_stopped() returns once SIGINT or SIGTERM arrives, so
// the server closes and the program exits 0. It is the self-pipe that
// loop.add_signal_handler would install; signals are not implemented yet.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <asyncio.hpp>
#include <cerrno>
#include <csignal>
#include <system_error>

namespace examples {

inline int stop_pipe[2] = {-1, -1};

inline asyncio::Coro<> until_stopped() {
    if (stop_pipe[0] < 0 && ::pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        throw std::system_error(errno, std::generic_category(), "pipe2");
    struct sigaction action {};
    action.sa_handler = [](int) {
        const int saved_errno = errno;  // the interrupted code may be about to read it
        const char byte = 0;
        (void)!::write(stop_pipe[1], &byte, 1);
        errno = saved_errno;
    };
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);

    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Future<> stopped = loop.create_future();
    loop.add_reader(stop_pipe[0], [stopped]() mutable {
        if (!stopped.done()) stopped.set_result();
    });
    co_await stopped;
    loop.remove_reader(stop_pipe[0]);
}

}  // namespace examples
