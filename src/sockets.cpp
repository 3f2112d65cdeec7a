// The loop's low-level socket operations (selector_events.sock_*,
// base_events.getaddrinfo / getnameinfo / sock_sendfile), written on the
// backend's operations so that they work on every backend.
#include <sys/stat.h>
#include <unistd.h>
#ifdef _WIN32
#include <io.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/socket.hpp"
#include "asyncio/threads.hpp"
#include "internal.hpp"

namespace asyncio {

namespace {

void check_socket(const Socket& sock) {
    if (sock.fileno() < 0) throw std::invalid_argument("the socket is closed");
}

/// Points `op` at `sock` and attaches the socket to the loop.
void prepare(detail::IoAwaiter& op, EventLoop& loop, Socket& sock, IoOp::Kind kind) {
    check_socket(sock);
    sock.attach(detail::library_key, loop);
    op.kind = kind;
    op.fd = sock.fileno();
}

/// sock_sendfile's sending, up to `end` (else to the file's end): with
/// sendfile(2) while the kernel takes it, else, if `fallback`, by reading
/// and sending chunks. `sent` counts what left, also when it fails.
Coro<void> send_file(EventLoop& loop, Socket& sock, int file_fd, std::size_t offset,
                     std::optional<std::size_t> end, bool zero_copy, bool fallback,
                     std::size_t& sent) {
    while (zero_copy && offset + sent < *end) {
        detail::IoAwaiter op(loop.backend());
        prepare(op, loop, sock, IoOp::Kind::sendfile);
        op.in_fd = file_fd;
        op.offset = static_cast<std::int64_t>(offset + sent);
        op.len = std::min<std::size_t>(*end - offset - sent, 0x7ffff000);
        const std::int64_t r = co_await op;
        if (r == -EINVAL || r == -ENOSYS || r == -EOPNOTSUPP) {
            if (sent != 0) detail::throw_result(r, "sendfile");  // it worked before: a real error
            zero_copy = false;
            break;
        }
        if (r < 0) detail::throw_result(r, "sendfile");
        if (r == 0) co_return;  // the file is shorter than it said
        sent += static_cast<std::size_t>(r);
    }
    if (zero_copy) co_return;
    if (!fallback) throw SendfileNotAvailableError("os.sendfile() is not available for this file");
    std::optional<std::size_t> left;
    if (end) left = *end - offset;
    // A named callable, not a lambda temporary in the co_await (GCC PR 100611).
    detail::SendChunk send = [&loop, &sock](std::string_view chunk) {
        return loop.sock_sendall(sock, chunk);
    };
    co_await detail::sendfile_fallback(loop, file_fd, offset, left, send, sent);
}

}  // namespace

Coro<std::string> EventLoop::sock_recv(Socket& sock, std::size_t n) {
    std::string buffer(n, '\0');
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::recv);
    op.buf = buffer.data();
    op.len = n;
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "recv");
    buffer.resize(static_cast<std::size_t>(r));
    co_return buffer;
}

Coro<std::size_t> EventLoop::sock_recv_into(Socket& sock, std::span<std::byte> buffer) {
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::recv);
    op.buf = buffer.data();
    op.len = buffer.size();
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "recv");
    co_return static_cast<std::size_t>(r);
}

Coro<std::pair<std::size_t, Address>> EventLoop::sock_recvfrom_into(Socket& sock,
                                                                    std::span<std::byte> buffer) {
    Address from;
    detail::iovec iov{buffer.data(), buffer.size()};
    detail::msghdr msg{};
    msg.msg_name = from.data();
    msg.msg_namelen = Address::capacity();
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::recvmsg);
    op.msg = &msg;
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "recvfrom");
    from.set_size(detail::library_key, msg.msg_namelen);
    co_return std::pair{static_cast<std::size_t>(r), std::move(from)};
}

Coro<std::pair<std::string, Address>> EventLoop::sock_recvfrom(Socket& sock, std::size_t bufsize) {
    std::string buffer(bufsize, '\0');
    auto [n, from] = co_await sock_recvfrom_into(
        sock, std::as_writable_bytes(std::span(buffer.data(), bufsize)));
    buffer.resize(n);
    co_return std::pair{std::move(buffer), std::move(from)};
}

Coro<std::size_t> EventLoop::sock_sendto(Socket& sock, std::string_view data, Address address) {
    detail::iovec iov{const_cast<char*>(data.data()), data.size()};
    detail::msghdr msg{};
    msg.msg_name = address.data();
    msg.msg_namelen = address.size();
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::sendmsg);
    op.msg = &msg;
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "sendto(" + address.to_string() + ")");
    co_return static_cast<std::size_t>(r);
}

Coro<void> EventLoop::sock_sendall(Socket& sock, std::string_view data) {
    while (!data.empty()) {
        detail::IoAwaiter op(*backend_);
        prepare(op, *this, sock, IoOp::Kind::send);
        op.buf = const_cast<char*>(data.data());
        op.len = data.size();
        const std::int64_t r = co_await op;
        if (r < 0) detail::throw_result(r, "send");
        data.remove_prefix(static_cast<std::size_t>(r));
    }
}

Coro<void> EventLoop::sock_connect(Socket& sock, Address address) {
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::connect);
    op.addr = address.data();
    op.addrlen = address.size();
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "Connect call failed " + address.to_string());
}

Coro<std::pair<Socket, Address>> EventLoop::sock_accept(Socket& sock) {
    Address peer;
    detail::IoAwaiter op(*backend_);
    prepare(op, *this, sock, IoOp::Kind::accept);
    op.addr = peer.data();
    op.addrlen = Address::capacity();
    const std::int64_t r = co_await op;
    if (r < 0) detail::throw_result(r, "accept");
    peer.set_size(detail::library_key, op.addrlen);
    co_return std::pair{Socket::from_fd(static_cast<int>(r)), std::move(peer)};
}

Coro<std::size_t> EventLoop::sock_sendfile(Socket& sock, int file_fd, std::size_t offset,
                                           std::optional<std::size_t> count, bool fallback) {
    check_socket(sock);
    if (sock.type() != SOCK_STREAM) {
        throw std::invalid_argument("only SOCK_STREAM type sockets are supported");
    }
    if (count && *count == 0) {
        throw std::invalid_argument("count must be a positive integer (got 0)");
    }
    struct ::stat info {};
    if (::fstat(file_fd, &info) < 0) detail::throw_errno("fstat");
    detail::ignore_sigpipe();  // sendfile(2) to a reset connection raises SIGPIPE
    // Only a regular file has a size to send up to; anything else is read
    // to its end (or `count`).
    const bool regular = S_ISREG(info.st_mode);
    std::optional<std::size_t> end;
    if (count) end = offset + *count;
    if (regular) end = std::min(end.value_or(SIZE_MAX), static_cast<std::size_t>(info.st_size));
    std::size_t sent = 0;
    Coro<void> sending = send_file(*this, sock, file_fd, offset, end, regular, fallback, sent);
    Outcome<void> outcome = co_await detail::try_await(std::move(sending));
    if (regular) detail::seek_past_sent(file_fd, offset, sent);
    std::move(outcome).get();
    co_return sent;
}

namespace detail {

namespace {

/// pread(2): `want` bytes of `fd` from `position`; -1 with errno set on
/// failure. Windows' CRT has no pread: ReadFile at an offset does it.
std::int64_t read_at(int fd, char* into, std::size_t want, std::int64_t position) {
#ifdef _WIN32
    OVERLAPPED at{};
    at.Offset = static_cast<DWORD>(position);
    at.OffsetHigh = static_cast<DWORD>(static_cast<std::uint64_t>(position) >> 32);
    DWORD n = 0;
    const auto file = reinterpret_cast<HANDLE>(::_get_osfhandle(fd));
    if (!::ReadFile(file, into, static_cast<DWORD>(want), &n, &at)) {
        const DWORD error = ::GetLastError();
        if (error == ERROR_HANDLE_EOF) return 0;
        errno = errno_from_windows(error);
        return -1;
    }
    return n;
#else
    return ::pread(fd, into, want, static_cast<off_t>(position));
#endif
}

}  // namespace

Coro<void> sendfile_fallback(EventLoop& loop, int file_fd, std::size_t offset,
                             std::optional<std::size_t> count, const SendChunk& send,
                             std::size_t& sent) {
    struct ::stat info {};
    const bool regular = ::fstat(file_fd, &info) == 0 && S_ISREG(info.st_mode);
    // Shared with the reads in flight: a cancelled sendfile returns while
    // a worker thread may still be filling it.
    auto chunk = std::make_shared<std::string>(kSendfileChunk, '\0');
    while (!count || sent < *count) {
        std::size_t want = chunk->size();
        if (count) want = std::min(want, *count - sent);
        const auto position = static_cast<std::int64_t>(offset + sent);
        auto read = [chunk, file_fd, want, position, regular] {
            const std::int64_t n = regular ? read_at(file_fd, chunk->data(), want, position)
                                           : ::read(file_fd, chunk->data(), want);
            if (n < 0) throw_errno(regular ? "pread" : "read");
            return static_cast<std::size_t>(n);
        };
        const std::size_t n = co_await loop.run_in_executor(nullptr, std::move(read));
        if (n == 0) break;
        co_await send(std::string_view(chunk->data(), n));
        sent += n;
    }
}

void seek_past_sent(int file_fd, std::size_t offset, std::size_t sent) noexcept {
    // As CPython's file.seek(offset + total_sent): the file position tells
    // what was sent, also when sending failed half-way.
#ifdef _WIN32
    if (sent > 0) ::_lseeki64(file_fd, static_cast<std::int64_t>(offset + sent), SEEK_SET);
#else
    if (sent > 0) ::lseek(file_fd, static_cast<off_t>(offset + sent), SEEK_SET);
#endif
}

}  // namespace detail

Coro<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port) {
    return getaddrinfo(std::move(host), std::move(port), AddrInfoOptions{});
}

Coro<std::vector<AddrInfo>> EventLoop::getaddrinfo(std::string host, std::string port,
                                                   AddrInfoOptions options) {
    if (auto numeric = detail::resolve_numeric(host, port, options)) co_return std::move(*numeric);
    // A named local, not a temporary in the co_await: GCC 12 PR 100611
    // destroys a lambda's captures twice there.
    auto resolve = [host = std::move(host), port = std::move(port), options] {
        return detail::resolve_blocking(host, port, options);
    };
    co_return co_await run_in_executor(nullptr, std::move(resolve));
}

Coro<std::pair<std::string, std::string>> EventLoop::getnameinfo(Address address, int flags) {
    auto lookup = [address, flags] {
        return detail::name_info_blocking(address, flags);
    };  // PR 100611
    co_return co_await run_in_executor(nullptr, std::move(lookup));
}

}  // namespace asyncio
