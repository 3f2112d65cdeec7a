// Sockets, addresses and name resolution.
#include "asyncio/socket.hpp"

#ifdef _WIN32
#include <netioapi.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "asyncio/backend.hpp"
#include "asyncio/loop.hpp"
#include "internal.hpp"

namespace asyncio {

namespace {

using detail::throw_errno;

std::optional<int> parse_port(std::string_view text) {
    // Digits only: from_chars also takes a sign, and "-0" is no port.
    if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
    int port = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (error != std::errc{} || end != text.data() + text.size() || port < 0 || port > 65535) {
        return std::nullopt;
    }
    return port;
}

/// A service that getaddrinfo(3) would read as a port number (digits, with
/// strtoul's optional sign) must be one: glibc wraps "70000" to 4464 and
/// "-1" to 65535 instead of failing.
void check_numeric_service(std::string_view service) {
    std::string_view digits = service;
    // strtoul skips leading white space: " 70000" is a port number too.
    while (!digits.empty() && std::isspace(static_cast<unsigned char>(digits.front())))
        digits.remove_prefix(1);
    const bool negative = !digits.empty() && digits.front() == '-';
    if (!digits.empty() && (digits.front() == '-' || digits.front() == '+'))
        digits.remove_prefix(1);
    if (digits.empty() ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return;  // a service name ("http"), looked up as such
    }
    long long port = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (error != std::errc{} || end != digits.data() + digits.size()) {
        port = std::numeric_limits<long long>::max();  // too many digits for any type
    }
    detail::check_port(negative && port != 0 ? -port : port);
}

}  // namespace

namespace detail {
void refuse_empty_host(const std::string& host) {
    if (host.empty()) throw std::system_error(EAI_NONAME, gai_category(), "getaddrinfo()");
}

void check_port(long long port) {
    if (port < 0 || port > 65535) {
        throw std::overflow_error(fmt::format("port must be 0-65535, got {}", port));
    }
}
}  // namespace detail

// -- Address ----------------------------------------------------------------------

Address Address::parse(std::string_view host, int port) {
    detail::check_port(port);
    // inet_pton reads a C string: a NUL would hide what follows it, and
    // "127.0.0.1\0junk" would be taken for 127.0.0.1.
    if (host.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("host: embedded null character");
    }
    Address out;
    std::string text(host);
    if (!text.empty() && text.front() == '[' && text.back() == ']')
        text = text.substr(1, text.size() - 2);
    auto* v4 = reinterpret_cast<::sockaddr_in*>(&out.storage_);
    if (::inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(port));
        out.length_ = sizeof(::sockaddr_in);
        return out;
    }
    auto* v6 = reinterpret_cast<::sockaddr_in6*>(&out.storage_);
    std::string address = text;
    std::string scope;
    if (auto percent = text.find('%'); percent != std::string::npos) {
        address = text.substr(0, percent);
        scope = text.substr(percent + 1);
    }
    if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (!scope.empty()) {
            unsigned index = ::if_nametoindex(scope.c_str());
            if (index == 0) {
                auto number = parse_port(scope);  // a numeric scope id
                if (!number) {
                    throw std::invalid_argument(fmt::format("unknown IPv6 scope '{}'", scope));
                }
                index = static_cast<unsigned>(*number);
            }
            v6->sin6_scope_id = index;
        }
        out.length_ = sizeof(::sockaddr_in6);
        return out;
    }
    throw std::invalid_argument(fmt::format(
        "'{}' is not a numeric IPv4 or IPv6 address (use getaddrinfo for names)", host));
}

Address Address::unix_path(std::string path) {
    Address out;
    auto* un = reinterpret_cast<::sockaddr_un*>(&out.storage_);
    if (path.size() >= sizeof(un->sun_path)) {
        throw std::invalid_argument(fmt::format("Unix socket path too long ({} bytes, at most {})",
                                                path.size(), sizeof(un->sun_path) - 1));
    }
    // A NUL would end the path early for the kernel, which would then name
    // another file than the one asked for (an abstract name may hold NULs).
    if ((path.empty() || path.front() != '@') && path.find('\0') != std::string::npos) {
        throw std::invalid_argument("Unix socket path: embedded null byte");
    }
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    if (!path.empty() && path.front() == '@') un->sun_path[0] = '\0';  // abstract namespace
    // The empty path is the unnamed address (binding it autobinds, as
    // Python's bind("") does); a path gets its terminating NUL counted.
    out.length_ = static_cast<::socklen_t>(offsetof(::sockaddr_un, sun_path) + path.size() +
                                           (!path.empty() && path.front() != '@' ? 1 : 0));
    return out;
}

Address Address::from_sockaddr(const ::sockaddr* address, ::socklen_t length) {
    Address out;
    if (static_cast<std::size_t>(length) > sizeof(out.storage_)) length = sizeof(out.storage_);
    std::memcpy(&out.storage_, address, length);
    out.length_ = length;
    return out;
}

Address Address::from_string(std::string_view text) {
    if (text.find('/') != std::string_view::npos || (!text.empty() && text.front() == '@')) {
        return unix_path(std::string(text));
    }
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        throw std::invalid_argument(fmt::format("'{}' is not host:port", text));
    }
    auto port = parse_port(text.substr(colon + 1));
    if (!port) throw std::invalid_argument(fmt::format("bad port in '{}'", text));
    return parse(text.substr(0, colon), *port);
}

std::string Address::host() const {
    char buffer[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = {};
    switch (family()) {
        case AF_INET: {
            auto* v4 = reinterpret_cast<const ::sockaddr_in*>(&storage_);
            ::inet_ntop(AF_INET, &v4->sin_addr, buffer, sizeof buffer);
            return buffer;
        }
        case AF_INET6: {
            auto* v6 = reinterpret_cast<const ::sockaddr_in6*>(&storage_);
            ::inet_ntop(AF_INET6, &v6->sin6_addr, buffer, sizeof buffer);
            std::string out = buffer;
            if (v6->sin6_scope_id != 0) {
                char name[IF_NAMESIZE] = {};
                out += '%';
                out += ::if_indextoname(v6->sin6_scope_id, name) != nullptr
                           ? std::string(name)
                           : std::to_string(v6->sin6_scope_id);
            }
            return out;
        }
        case AF_UNIX: {
            auto* un = reinterpret_cast<const ::sockaddr_un*>(&storage_);
            const std::size_t offset = offsetof(::sockaddr_un, sun_path);
            if (static_cast<std::size_t>(length_) <= offset) return {};  // unnamed
            std::size_t n = static_cast<std::size_t>(length_) - offset;
            if (un->sun_path[0] == '\0') {
                // An abstract name, shown with '@' as Python does. Not "@" +
                // std::string: GCC 12 -O3 warns there with -Wrestrict
                // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=105329).
                std::string name(un->sun_path, n);
                name[0] = '@';
                return name;
            }
            return std::string(un->sun_path, ::strnlen(un->sun_path, n));
        }
        default:
            return {};
    }
}

int Address::port() const noexcept {
    switch (family()) {
        case AF_INET:
            return ntohs(reinterpret_cast<const ::sockaddr_in*>(&storage_)->sin_port);
        case AF_INET6:
            return ntohs(reinterpret_cast<const ::sockaddr_in6*>(&storage_)->sin6_port);
        default:
            return 0;
    }
}

std::string Address::to_string() const {
    switch (family()) {
        case AF_INET:
            return fmt::format("{}:{}", host(), port());
        case AF_INET6:
            return fmt::format("[{}]:{}", host(), port());
        case AF_UNIX:
            return host();
        default:
            return "<unspecified address>";
    }
}

bool operator==(const Address& a, const Address& b) noexcept {
    return a.length_ == b.length_ && std::memcmp(&a.storage_, &b.storage_, a.length_) == 0;
}

// -- Socket ---------------------------------------------------------------------------

#ifdef _WIN32
namespace {

/// The Windows side of "non-blocking and close-on-exec": not inherited by
/// child processes; non-blocking for the calls made outside the backend.
/// A pipe handle (a pipe transport's) is only made non-inheritable: its
/// I/O is overlapped, which it was opened for.
void make_nonblocking(SOCKET sock) {
    const auto handle = reinterpret_cast<HANDLE>(sock);
    ::SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0);
    int type = 0;
    int length = sizeof type;
    if (::getsockopt(sock, SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type), &length) != 0) {
        // Not a socket (sockets are FILE_TYPE_PIPE too, so ask this first).
        const DWORD file_type = ::GetFileType(handle);
        if (file_type == FILE_TYPE_PIPE || file_type == FILE_TYPE_CHAR) return;
        throw detail::os_error(ENOTSOCK, "from_fd");
    }
    u_long on = 1;
    if (::ioctlsocket(sock, FIONBIO, &on) != 0) detail::throw_socket_error("ioctlsocket(FIONBIO)");
}

}  // namespace

Socket::Socket(int family, int type, int proto) {
    detail::ensure_winsock();
    // Overlapped, so that the IOCP backend can use it.
    const SOCKET sock = ::WSASocketW(family, type, proto, nullptr, 0,
                                     WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (sock == INVALID_SOCKET) detail::throw_socket_error("socket");
    fd_ = static_cast<int>(sock);
    try {
        make_nonblocking(sock);
    } catch (...) {
        close();
        throw;
    }
}

Socket Socket::from_fd(int fd) {
    if (fd < 0) throw std::invalid_argument(fmt::format("Invalid file descriptor: {}", fd));
    detail::ensure_winsock();
    make_nonblocking(static_cast<SOCKET>(fd));
    Socket out;
#else
Socket::Socket(int family, int type, int proto) {
    fd_ = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    if (fd_ < 0) throw_errno("socket");
}

Socket Socket::from_fd(int fd) {
    if (fd < 0) throw std::invalid_argument(fmt::format("Invalid file descriptor: {}", fd));
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) throw_errno("fcntl(O_NONBLOCK)");
    const int fd_flags = ::fcntl(fd, F_GETFD);
    if (fd_flags < 0 || ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) < 0)
        throw_errno("fcntl(FD_CLOEXEC)");
    Socket out;
#endif
    out.fd_ = fd;
    return out;
}

Socket& Socket::operator=(Socket&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        loop_ = std::exchange(other.loop_, nullptr);
    }
    return *this;
}

void Socket::bind(const Address& address) {
    if (::bind(fd_, address.data(), address.size()) < 0) {
        const int error = detail::socket_error();  // before formatting the label can touch it
        throw detail::os_error(error, fmt::format("bind({})", address.to_string()));
    }
}

void Socket::listen(int backlog) {
    if (::listen(fd_, backlog) < 0) detail::throw_socket_error("listen");
}

void Socket::setsockopt(int level, int option, int value) {
    // Windows declares the value as char*.
    if (::setsockopt(fd_, level, option, reinterpret_cast<const char*>(&value), sizeof value) < 0)
        detail::throw_socket_error("setsockopt");
}

int Socket::getsockopt(int level, int option) const {
    int value = 0;
    ::socklen_t length = sizeof value;
    if (::getsockopt(fd_, level, option, reinterpret_cast<char*>(&value), &length) < 0)
        detail::throw_socket_error("getsockopt");
    return value;
}

Address Socket::getsockname() const {
    Address out;
    ::socklen_t length = Address::capacity();
    if (::getsockname(fd_, out.data(), &length) < 0) detail::throw_socket_error("getsockname");
    out.set_size(detail::library_key, length);
    return out;
}

Address Socket::getpeername() const {
    Address out;
    ::socklen_t length = Address::capacity();
    if (::getpeername(fd_, out.data(), &length) < 0) detail::throw_socket_error("getpeername");
    out.set_size(detail::library_key, length);
    return out;
}

void Socket::shutdown(int how) {
    if (::shutdown(fd_, how) < 0) detail::throw_socket_error("shutdown");
}

int Socket::family() const {
#ifdef _WIN32
    WSAPROTOCOL_INFOW info{};
    int length = sizeof info;
    if (::getsockopt(fd_, SOL_SOCKET, SO_PROTOCOL_INFOW, reinterpret_cast<char*>(&info), &length) <
        0) {
        detail::throw_socket_error("getsockopt");
    }
    return info.iAddressFamily;
#else
    return getsockopt(SOL_SOCKET, SO_DOMAIN);
#endif
}
int Socket::type() const {
    return getsockopt(SOL_SOCKET, SO_TYPE);
}

void Socket::forget() noexcept {
    if (loop_ != nullptr && detail::LoopCore::alive(loop_)) loop_->owner().backend().forget_fd(fd_);
    loop_ = nullptr;
}

void Socket::close() noexcept {
    if (fd_ < 0) return;
    forget();
    detail::close_socket(std::exchange(fd_, -1));
}

int Socket::detach() noexcept {
    forget();
    return std::exchange(fd_, -1);
}

std::pair<Socket, Socket> socketpair(int family, int type, int proto) {
#ifdef _WIN32
    // CPython's socket.socketpair fallback: a listener on loopback, one
    // connection, and a check that the accepted peer is the one we made.
    if (family != AF_INET && family != AF_INET6) {
        throw std::invalid_argument(
            "Only AF_INET and AF_INET6 socket address families are supported");
    }
    if (type != SOCK_STREAM)
        throw std::invalid_argument("Only SOCK_STREAM socket type is supported");
    if (proto != 0) throw std::invalid_argument("Only protocol zero is supported");
    Socket listener(family, type, proto);
    listener.bind(Address::parse(family == AF_INET ? "127.0.0.1" : "::1", 0));
    listener.listen(1);
    const Address address = listener.getsockname();
    Socket client(family, type, proto);
    // Blocking for the connect and accept, which finish at once on loopback.
    const auto blocking = [](const Socket& sock, u_long nonblocking) {
        ::ioctlsocket(static_cast<SOCKET>(sock.fileno()), FIONBIO, &nonblocking);
    };
    blocking(client, 0);
    blocking(listener, 0);
    if (::connect(static_cast<SOCKET>(client.fileno()), address.data(), address.size()) != 0) {
        detail::throw_socket_error("connect");
    }
    const SOCKET accepted = ::accept(static_cast<SOCKET>(listener.fileno()), nullptr, nullptr);
    if (accepted == INVALID_SOCKET) detail::throw_socket_error("accept");
    Socket server = Socket::from_fd(static_cast<int>(accepted));
    blocking(client, 1);
    if (server.getpeername() != client.getsockname()) {
        throw std::system_error(ECONNABORTED, std::generic_category(), "socketpair: wrong peer");
    }
    return {std::move(server), std::move(client)};
#else
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;  // never inherited, not even by a fork in between
#endif
    int fds[2];
    if (::socketpair(family, type, proto, fds) != 0) throw_errno("socketpair");
    Socket first;
    Socket second;
    try {
        first = Socket::from_fd(fds[0]);
    } catch (...) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw;
    }
    try {
        second = Socket::from_fd(fds[1]);
    } catch (...) {
        ::close(fds[1]);
        throw;
    }
    return {std::move(first), std::move(second)};
#endif
}

// -- name resolution -------------------------------------------------------------------

namespace {

class GaiCategory final : public std::error_category {
  public:
    const char* name() const noexcept override { return "getaddrinfo"; }
    std::string message(int code) const override { return ::gai_strerror(code); }
};

}  // namespace

const std::error_category& gai_category() noexcept {
    static const GaiCategory category;
    return category;
}

namespace detail {

std::vector<AddrInfo> resolve_blocking(const std::string& host, const std::string& port,
                                       const AddrInfoOptions& options) {
    // As in Address::parse: getaddrinfo would resolve only the part before
    // a NUL, a different name than the one given.
    if (host.find('\0') != std::string::npos || port.find('\0') != std::string::npos) {
        throw std::invalid_argument("getaddrinfo: embedded null character");
    }
    check_numeric_service(port);
    ::addrinfo hints{};
    hints.ai_family = options.family;
    hints.ai_socktype = options.type;
    hints.ai_protocol = options.proto;
    hints.ai_flags = options.flags;
    ::addrinfo* results = nullptr;
#ifdef _WIN32
    ensure_winsock();
#endif
    const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(),
                                 port.empty() ? nullptr : port.c_str(), &hints, &results);
    if (rc != 0) {
#ifdef EAI_SYSTEM
        if (rc == EAI_SYSTEM) {
            const int error = errno;  // before building the label can touch it
            throw detail::os_error(error, "getaddrinfo(" + host + ")");
        }
#endif
        throw std::system_error(rc, gai_category(), "getaddrinfo(" + host + ")");
    }
    std::vector<AddrInfo> out;
    for (::addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
        AddrInfo info;
        info.family = ai->ai_family;
        info.type = ai->ai_socktype;
        info.protocol = ai->ai_protocol;
        if (ai->ai_canonname != nullptr) info.canonname = ai->ai_canonname;
        info.address = Address::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
        out.push_back(std::move(info));
    }
    ::freeaddrinfo(results);
    return out;
}

std::optional<std::vector<AddrInfo>> resolve_numeric(const std::string& host,
                                                     const std::string& port,
                                                     const AddrInfoOptions& options) {
    // CPython's _ipaddr_info: a numeric host needs no resolver, given a
    // definite socket type.
    check_numeric_service(port);
    if (options.flags != 0 || (options.type != SOCK_STREAM && options.type != SOCK_DGRAM)) {
        return std::nullopt;
    }
    auto port_number = port.empty() ? std::optional<int>(0) : parse_port(port);
    if (!port_number) return std::nullopt;
    Address address;
    try {
        address = Address::parse(host, *port_number);
    } catch (const std::invalid_argument&) {
        return std::nullopt;
    }
    if (options.family != AF_UNSPEC && options.family != address.family()) return std::nullopt;
    AddrInfo info;
    info.family = address.family();
    info.type = options.type;
    info.protocol = options.proto != 0 ? options.proto
                                       : (options.type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
    info.address = address;
    return std::vector<AddrInfo>{std::move(info)};
}

#ifndef _WIN32
int socket_error() noexcept {
    return errno;
}

void throw_socket_error(const std::string& call) {
    throw_errno(call);
}

void close_socket(int fd) noexcept {
    ::close(fd);
}
#endif

void ignore_sigpipe() noexcept {
#ifndef _WIN32  // no SIGPIPE: a send to a reset connection fails with an error
    static const bool done = [] {
        struct ::sigaction current {};
        if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL &&
            (current.sa_flags & SA_SIGINFO) == 0) {
            ::signal(SIGPIPE, SIG_IGN);
        }
        return true;
    }();
    (void)done;
#endif
}

std::pair<std::string, std::string> name_info_blocking(const Address& address, int flags) {
#ifdef _WIN32
    ensure_winsock();
#endif
    char host[NI_MAXHOST] = {};
    char service[NI_MAXSERV] = {};
    const int rc = ::getnameinfo(address.data(), address.size(), host, sizeof host, service,
                                 sizeof service, flags);
    if (rc != 0) {
#ifdef EAI_SYSTEM
        if (rc == EAI_SYSTEM) throw_errno("getnameinfo");
#endif
        throw std::system_error(rc, gai_category(), "getnameinfo");
    }
    return {host, service};
}

}  // namespace detail
}  // namespace asyncio
