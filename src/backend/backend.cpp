// The table of backends: each one's kind, name, availability probe and
// factory, best first. Adding a backend means adding its row.
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>

#include "asyncio/backend.hpp"
#include "asyncio/exceptions.hpp"
#include "backend/readiness.hpp"
#include "internal.hpp"
#ifdef ASYNCIO_HAVE_IO_URING
#endif

namespace asyncio {
namespace {

using Factory = std::unique_ptr<IoBackend> (*)(detail::LoopCore&);
using Probe = bool (*)() noexcept;

struct BackendEntry {
    Backend kind;
    std::string_view name;
    Probe available;  // null: not built for this platform
    Factory make;
};

bool always() noexcept {
    return true;
}

constexpr BackendEntry kBackends[] = {
#ifdef ASYNCIO_HAVE_IO_URING
    {Backend::io_uring, "io_uring", &detail::io_uring_available, &detail::make_io_uring_backend},
#else
    {Backend::io_uring, "io_uring", nullptr, nullptr},
#endif
#ifdef __linux__
    {Backend::epoll, "epoll", &always, &detail::make_epoll_backend},
#else
    {Backend::epoll, "epoll", nullptr, nullptr},
#endif
#ifdef ASYNCIO_HAVE_KQUEUE
    {Backend::kqueue, "kqueue", &always, &detail::make_kqueue_backend},
#else
    {Backend::kqueue, "kqueue", nullptr, nullptr},
#endif
#ifdef _WIN32
    {Backend::iocp, "iocp", &always, &detail::make_iocp_backend},
    {Backend::poll, "poll", nullptr, nullptr},
#else
    {Backend::iocp, "iocp", nullptr, nullptr},
    {Backend::poll, "poll", &always, &detail::make_poll_backend},
#endif
};

const BackendEntry& entry(Backend kind) noexcept {
    for (const BackendEntry& e : kBackends) {
        if (e.kind == kind) return e;
    }
    std::abort();  // every enumerator has a row
}

/// The backend ASYNCIO_BACKEND names, if it names one.
std::optional<Backend> from_environment() {
    const char* name = std::getenv("ASYNCIO_BACKEND");
    if (name == nullptr || *name == '\0') return std::nullopt;
    if (auto backend = backend_from_string(name)) return backend;
    throw std::invalid_argument(std::string("ASYNCIO_BACKEND names no backend: ") + name);
}

}  // namespace

std::string_view to_string(Backend backend) noexcept {
    return entry(backend).name;
}

std::optional<Backend> backend_from_string(std::string_view name) noexcept {
    for (const BackendEntry& e : kBackends) {
        if (e.name == name) return e.kind;
    }
    return std::nullopt;
}

bool backend_available(Backend backend) noexcept {
    const BackendEntry& e = entry(backend);
    return e.available != nullptr && e.available();
}

std::vector<Backend> available_backends() {
    std::vector<Backend> out;
    for (const BackendEntry& e : kBackends) {
        if (e.available != nullptr && e.available()) out.push_back(e.kind);
    }
    return out;
}

Backend default_backend() {
    if (auto named = from_environment()) return *named;
    auto all = available_backends();
    if (all.empty()) throw RuntimeError("no I/O backend is available on this machine");
    return all.front();
}

std::unique_ptr<IoBackend> make_backend(Backend kind, detail::LoopCore& loop) {
    const BackendEntry& e = entry(kind);
    if (e.make == nullptr || !e.available()) {
        throw RuntimeError(std::string("the ") + std::string(e.name) +
                           " backend is not available on this machine");
    }
    return e.make(loop);
}

std::unique_ptr<IoBackend> make_default_backend(detail::LoopCore& loop,
                                                std::string* fallback_reason) {
    if (auto named = from_environment()) return make_backend(*named, loop);
    // Construct rather than probe: what the OS refuses (io_uring under a
    // seccomp filter, say) shows when the backend is made, and the next one
    // is tried.
    std::string reasons;
    for (const BackendEntry& e : kBackends) {
        if (e.make == nullptr) continue;
        try {
            auto backend = e.make(loop);
            if (fallback_reason != nullptr) *fallback_reason = std::move(reasons);
            return backend;
        } catch (const std::system_error& error) {
            if (!reasons.empty()) reasons += "; ";
            reasons += std::string(e.name) + ": " + error.what();
        }
    }
    throw RuntimeError("no I/O backend is available on this machine: " + reasons);
}

}  // namespace asyncio
