// Backend names, availability and construction.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "asyncio/backend.hpp"
#include "asyncio/exceptions.hpp"

namespace asyncio {

namespace detail {
std::unique_ptr<IoBackend> make_epoll_backend(LoopCore& loop);
bool epoll_available() noexcept;
}  // namespace detail

std::string_view to_string(Backend backend) noexcept {
    switch (backend) {
        case Backend::epoll:
            return "epoll";
        case Backend::io_uring:
            return "io_uring";
        case Backend::kqueue:
            return "kqueue";
        case Backend::iocp:
            return "iocp";
        case Backend::poll:
            return "poll";
    }
    return "unknown";
}

std::optional<Backend> backend_from_string(std::string_view name) noexcept {
    for (Backend b :
         {Backend::epoll, Backend::io_uring, Backend::kqueue, Backend::iocp, Backend::poll}) {
        if (to_string(b) == name) return b;
    }
    return std::nullopt;
}

bool backend_available(Backend backend) noexcept {
    switch (backend) {
        case Backend::epoll:
            return detail::epoll_available();
        default:
            return false;
    }
}

std::vector<Backend> available_backends() {
    std::vector<Backend> out;
    for (Backend b :
         {Backend::io_uring, Backend::epoll, Backend::kqueue, Backend::iocp, Backend::poll}) {
        if (backend_available(b)) out.push_back(b);
    }
    return out;
}

Backend default_backend() {
    if (const char* name = std::getenv("ASYNCIO_BACKEND"); name != nullptr && *name != '\0') {
        if (auto backend = backend_from_string(name)) return *backend;
        throw std::invalid_argument(std::string("ASYNCIO_BACKEND names no backend: ") + name);
    }
    auto all = available_backends();
    if (all.empty()) throw RuntimeError("no I/O backend is available on this machine");
    return all.front();
}

std::unique_ptr<IoBackend> make_backend(Backend kind, detail::LoopCore& loop) {
    if (!backend_available(kind)) {
        throw RuntimeError(std::string("the ") + std::string(to_string(kind)) +
                           " backend is not available on this machine");
    }
    switch (kind) {
        case Backend::epoll:
            return detail::make_epoll_backend(loop);
        default:
            break;
    }
    throw RuntimeError(std::string("no implementation of the ") + std::string(to_string(kind)) +
                       " backend");
}

}  // namespace asyncio
