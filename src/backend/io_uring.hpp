// The io_uring backend (Linux 5.11 and later, with liburing).
#pragma once

#include <memory>

#include "asyncio/backend.hpp"

namespace asyncio::detail {

/// Whether the kernel gives this process an io_uring with what the backend
/// needs (fast poll, the network operations); false where io_uring_setup is
/// refused (a seccomp filter, kernel.io_uring_disabled, an old kernel).
bool io_uring_available() noexcept;

/// std::system_error if the kernel refuses a ring.
std::unique_ptr<IoBackend> make_io_uring_backend(LoopCore& loop);

}  // namespace asyncio::detail
