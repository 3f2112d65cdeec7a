// Helpers private to the compiled library (libuv's src/unix/internal.h):
// what several of src/'s files need and no header may show.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <memory>

#include "asyncio/coro.hpp"

namespace asyncio {
class EventLoop;
class IoBackend;
namespace detail {
class LoopCore;
}
}  // namespace asyncio

namespace asyncio::detail {

/// The exception as a report or a repr shows it: "TypeName: what()", with
/// the error code for a std::system_error; "None" for no exception.
std::string describe_exception(const std::exception_ptr& error);

/// The std::system_error (Python's OSError) for `error_number`, labelled
/// with the call that failed. Windows' system category holds Win32 codes,
/// so there the library's errno values (see errno_from_windows) are generic.
inline std::system_error os_error(int error_number, const std::string& call) {
#ifdef _WIN32
    return std::system_error(error_number, std::generic_category(), call);
#else
    return std::system_error(error_number, std::system_category(), call);
#endif
}

/// Throws the OSError for `errno` after a failed `call`. A label built at
/// the call (an allocation) may overwrite errno first: save errno and use
/// os_error for those.
[[noreturn]] inline void throw_errno(const std::string& call) {
    throw os_error(errno, call);
}

/// The errno of the socket call that just failed: errno, or on Windows
/// WSAGetLastError() mapped by errno_from_windows.
int socket_error() noexcept;
/// Throws the OSError for socket_error() after a failed `call`.
[[noreturn]] void throw_socket_error(const std::string& call);
/// close(2), or closesocket on Windows.
void close_socket(int fd) noexcept;

#ifdef _WIN32
/// The errno value the library reports for a winsock or Win32 error code,
/// so that its callers test one set of values on every OS (EIO for codes
/// with no POSIX counterpart).
int errno_from_windows(unsigned long error) noexcept;
/// WSAStartup, once per process, before the first socket call.
void ensure_winsock();
#endif

/// Throws the OSError for a backend result (a negated errno).
[[noreturn]] inline void throw_result(std::int64_t result, const std::string& call) {
    throw os_error(static_cast<int>(-result), call);
}

/// The OSError for a backend result, for a transport's connection_lost.
inline std::exception_ptr result_error(std::int64_t result, const std::string& call) {
    return std::make_exception_ptr(os_error(static_cast<int>(-result), call));
}

// -- backends --------------------------------------------------------------------------
// The factories behind backend.cpp's table; each throws std::system_error
// if the OS refuses it.

/// The poll(2) backend; the last resort on any POSIX system.
std::unique_ptr<IoBackend> make_poll_backend(LoopCore& loop);
/// The IOCP backend (Windows).
std::unique_ptr<IoBackend> make_iocp_backend(LoopCore& loop);
/// The epoll backend (Linux).
std::unique_ptr<IoBackend> make_epoll_backend(LoopCore& loop);
/// The kqueue backend (FreeBSD, macOS, NetBSD, DragonFly).
std::unique_ptr<IoBackend> make_kqueue_backend(LoopCore& loop);
/// Whether the kernel gives this process an io_uring with what the backend
/// needs (fast poll, the network operations); false where io_uring_setup is
/// refused (a seccomp filter, kernel.io_uring_disabled, an old kernel).
bool io_uring_available() noexcept;
/// The io_uring backend (Linux 5.11 and later, with liburing).
std::unique_ptr<IoBackend> make_io_uring_backend(LoopCore& loop);

// -- sendfile ------------------------------------------------------------------------

/// How much the sendfile fallback reads at a time (CPython's 256 KiB).
inline constexpr std::size_t kSendfileChunk = 256 * 1024;

/// Sends one chunk, returning once the chunk's memory may be reused.
using SendChunk = std::function<Coro<void>(std::string_view)>;

/// base_events' _sock_sendfile_fallback and _sendfile_fallback, written
/// once: reads `file_fd` from `offset` (up to `count` bytes, else to its
/// end) in the default executor, as CPython does, so that a slow source
/// such as a pipe does not stall the loop, and hands each chunk to `send`.
/// `sent` counts what `send` took, also when it fails half-way.
Coro<void> sendfile_fallback(EventLoop& loop, int file_fd, std::size_t offset,
                             std::optional<std::size_t> count, const SendChunk& send,
                             std::size_t& sent);

/// Leaves a regular file's position after what sendfile sent.
void seek_past_sent(int file_fd, std::size_t offset, std::size_t sent) noexcept;

}  // namespace asyncio::detail
