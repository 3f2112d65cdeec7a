// Sockets and addresses (Python's socket module, as asyncio uses it).
//
// clang-format off
//     sock = socket.socket(AF_INET, SOCK_STREAM)   asyncio::Socket sock(AF_INET, SOCK_STREAM);
//     sock.bind(("127.0.0.1", 0))                  sock.bind(
//                                                      asyncio::Address::parse("127.0.0.1", 0));
//     sock.listen()                                sock.listen();
//     conn, addr = await loop.sock_accept(sock)    auto [conn, addr] =
//                                                      co_await loop.sock_accept(sock);
// clang-format on
//
// A Socket is an RAII owner of a non-blocking, close-on-exec descriptor.
// An Address is an IPv4, IPv6 or Unix socket address; it formats with fmt as
// "127.0.0.1:80", "[::1]:80" or "/tmp/socket". Name resolution
// (loop.getaddrinfo) runs in the default executor and never blocks the loop.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "asyncio/detail/library_key.hpp"
#include "asyncio/detail/native.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

namespace detail {
class LoopCore;
#ifdef _WIN32
inline constexpr int kSocketpairFamily = AF_INET;
/// create_server's reuse_address default (CPython: only on POSIX).
inline constexpr bool kReuseAddressByDefault = false;
#else
inline constexpr int kSocketpairFamily = AF_UNIX;
inline constexpr bool kReuseAddressByDefault = true;
#endif
}  // namespace detail

/// A socket address: IPv4, IPv6 (with scope id) or a Unix path ("@name" for
/// Linux's abstract namespace).
class ASYNCIO_EXPORT Address {
  public:
    /// An empty address (family AF_UNSPEC).
    Address() noexcept = default;

    /// A numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "fe80::1%eth0")
    /// and a port. std::overflow_error for a port outside 0-65535 (Python's
    /// OverflowError), std::invalid_argument for anything else: host names
    /// need loop.getaddrinfo.
    static Address parse(std::string_view host, int port);
    /// A Unix socket path; a leading '@' selects the abstract namespace.
    static Address unix_path(std::string path);
    /// From a sockaddr the OS filled in.
    static Address from_sockaddr(const ::sockaddr* address, ::socklen_t length);
    /// Parses "host:port", "[v6]:port" or a Unix path (containing '/').
    static Address from_string(std::string_view text);

    int family() const noexcept { return storage_.ss_family; }
    /// The numeric host ("127.0.0.1", "::1"), or the Unix path.
    std::string host() const;
    /// The port; 0 for Unix addresses.
    int port() const noexcept;
    /// "127.0.0.1:80", "[::1]:80", "/tmp/s".
    std::string to_string() const;

    const ::sockaddr* data() const noexcept {
        return reinterpret_cast<const ::sockaddr*>(&storage_);
    }
    ::sockaddr* data() noexcept { return reinterpret_cast<::sockaddr*>(&storage_); }
    ::socklen_t size() const noexcept { return length_; }
    /// Library use: the capacity to pass to accept/recvfrom, then fix with set_size.
    static constexpr ::socklen_t capacity() noexcept { return sizeof(::sockaddr_storage); }
    void set_size(detail::LibraryKey, ::socklen_t length) noexcept { length_ = length; }

    friend ASYNCIO_EXPORT bool operator==(const Address& a, const Address& b) noexcept;

  private:
    ::sockaddr_storage storage_{};
    ::socklen_t length_ = 0;
};

/// One result of getaddrinfo.
struct AddrInfo {
    int family = 0, type = 0, protocol = 0;
    std::string canonname{};
    Address address{};
};

/// Keyword arguments of loop.getaddrinfo.
struct AddrInfoOptions {
    int family = AF_UNSPEC;
    int type = 0;
    int proto = 0;
    int flags = 0;
};

/// socket.socket: an RAII, non-blocking, close-on-exec socket.
class ASYNCIO_EXPORT Socket {
  public:
    /// An empty socket (fileno() == -1).
    Socket() noexcept = default;
    /// socket(2); std::system_error on failure.
    Socket(int family, int type, int proto = 0);
    /// Adopts `fd`, making it non-blocking and close-on-exec.
    static Socket from_fd(int fd);
    Socket(Socket&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), loop_(std::exchange(other.loop_, nullptr)) {}
    Socket& operator=(Socket&& other) noexcept;
    ~Socket() { close(); }

    int fileno() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

    void bind(const Address& address);
    void listen(int backlog = 128);
    void setsockopt(int level, int option, int value);
    int getsockopt(int level, int option) const;
    Address getsockname() const;
    Address getpeername() const;
    /// shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR.
    void shutdown(int how);
    int family() const;
    int type() const;

    /// Closes the descriptor (once; later calls do nothing) and tells the
    /// loop that waited on it to forget it.
    void close() noexcept;
    /// Gives up ownership of the descriptor without closing it.
    int detach() noexcept;

    /// Library use: the loop whose backend has state for this descriptor.
    void attach(detail::LibraryKey, detail::LoopCore& loop) noexcept { loop_ = &loop; }

  private:
    void forget() noexcept;

    int fd_ = -1;
    detail::LoopCore* loop_ = nullptr;
};

/// socket.socketpair: two connected sockets, non-blocking and close-on-exec.
/// The family defaults to AF_UNIX, and to AF_INET on Windows, where CPython
/// too makes the pair from a loopback listener.
ASYNCIO_EXPORT std::pair<Socket, Socket> socketpair(int family = detail::kSocketpairFamily,
                                                    int type = SOCK_STREAM, int proto = 0);

/// The category of getaddrinfo's EAI_* errors (Python's socket.gaierror).
ASYNCIO_EXPORT const std::error_category& gai_category() noexcept;

namespace detail {
/// CPython's OverflowError("port must be 0-65535"), as std::overflow_error,
/// unless 0 <= port <= 65535. Every entry point that takes a port gets here
/// (Address::parse, or the resolver for a numeric service), so that no
/// port is wrapped modulo 65536 on its way to the kernel.
ASYNCIO_EXPORT void check_port(long long port);
/// The gaierror (EAI_NONAME) of CPython's create_connection for host "",
/// which the library's resolver would read as no host (loopback).
ASYNCIO_EXPORT void refuse_empty_host(const std::string& host);
/// getaddrinfo(3), blocking: run it in an executor.
ASYNCIO_EXPORT std::vector<AddrInfo> resolve_blocking(const std::string& host,
                                                      const std::string& port,
                                                      const AddrInfoOptions& options);
/// The numeric fast path of getaddrinfo (no resolver needed), if it applies.
ASYNCIO_EXPORT std::optional<std::vector<AddrInfo>> resolve_numeric(const std::string& host,
                                                                    const std::string& port,
                                                                    const AddrInfoOptions& options);
ASYNCIO_EXPORT std::pair<std::string, std::string> name_info_blocking(const Address& address,
                                                                      int flags);
/// Sets SIGPIPE to SIG_IGN unless the program installed its own handler, as
/// CPython does at startup: write(2) to a pipe and sendfile(2) to a socket
/// whose reader is gone then fail with EPIPE instead of killing the process.
ASYNCIO_EXPORT void ignore_sigpipe() noexcept;
}  // namespace detail

}  // namespace asyncio

// fmt's customization point, not part of asyncio's API: kept out of the
// docs site, as doxygen (whose input has no fmt) cannot place a
// specialization of fmt::formatter and warns.
/// \cond
template <>
struct fmt::formatter<asyncio::Address> : fmt::formatter<std::string_view> {
    template <class Context>
    auto format(const asyncio::Address& address, Context& context) const {
        return fmt::formatter<std::string_view>::format(address.to_string(), context);
    }
};
/// \endcond
