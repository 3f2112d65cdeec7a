// Socket, Address and the loop's sock_* operations: ports of CPython's
// test_sock_lowlevel.py plus address parsing and name resolution.
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Address;
using asyncio::Coro;
using asyncio::Socket;
using asyncio::Task;
using asyncio_test::run_guarded;

namespace {

/// A listening TCP socket on an ephemeral loopback port.
Socket listener(int family = AF_INET) {
    Socket sock(family, SOCK_STREAM);
    sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
    sock.bind(Address::parse(family == AF_INET ? "127.0.0.1" : "::1", 0));
    sock.listen();
    return sock;
}

/// Accepts one connection and echoes everything back until EOF.
Coro<std::size_t> echo_one(Socket& server) {
    auto& loop = asyncio::get_running_loop();
    auto [conn, peer] = co_await loop.sock_accept(server);
    std::size_t total = 0;
    for (;;) {
        std::string data = co_await loop.sock_recv(conn, 64 * 1024);
        if (data.empty()) break;
        total += data.size();
        co_await loop.sock_sendall(conn, data);
    }
    co_return total;
}

}  // namespace

// -- Address ------------------------------------------------------------------------

TEST_CASE("Address parses and formats IPv4, IPv6 and Unix addresses") {
    Address v4 = Address::parse("127.0.0.1", 8080);
    CHECK(v4.family() == AF_INET);
    CHECK(v4.host() == "127.0.0.1");
    CHECK(v4.port() == 8080);
    CHECK(v4.to_string() == "127.0.0.1:8080");
    CHECK(fmt::format("{}", v4) == "127.0.0.1:8080");

    Address v6 = Address::parse("::1", 443);
    CHECK(v6.family() == AF_INET6);
    CHECK(v6.to_string() == "[::1]:443");
    CHECK(Address::parse("[::1]", 443) == v6);

    Address path = Address::unix_path("/tmp/asyncio.sock");
    CHECK(path.family() == AF_UNIX);
    CHECK(path.to_string() == "/tmp/asyncio.sock");
    CHECK(path.port() == 0);
    CHECK(Address::unix_path("@abstract").to_string() == "@abstract");

    CHECK(Address::from_string("10.0.0.1:53") == Address::parse("10.0.0.1", 53));
    CHECK(Address::from_string("[::1]:80") == Address::parse("::1", 80));
    CHECK(Address::from_string("/run/x.sock").family() == AF_UNIX);
}

TEST_CASE("Address refuses what it cannot parse") {
    CHECK_THROWS_AS(Address::parse("localhost", 80), std::invalid_argument);
    CHECK_THROWS_AS(Address::parse("1.2.3.4", 70000), std::overflow_error);
    CHECK_THROWS_AS(Address::parse("::1%nosuchif0", 1), std::invalid_argument);
    CHECK_THROWS_AS(Address::unix_path(std::string(200, 'x')), std::invalid_argument);
    CHECK_THROWS_AS(Address::from_string("1.2.3.4"), std::invalid_argument);
}

TEST_CASE("Address refuses a NUL that would cut a host or path short") {
    // Found by fuzz/fuzz_address: both were truncated at the NUL, naming
    // another host or file than the one given.
    using namespace std::string_literals;
    CHECK_THROWS_AS(Address::parse("127.0.0.1\0junk"s, 80), std::invalid_argument);
    CHECK_THROWS_AS(Address::from_string("::1\0:1:80"s), std::invalid_argument);
    CHECK_THROWS_AS(Address::unix_path("/tmp/a\0b"s), std::invalid_argument);
    // An abstract name is bytes, NULs included.
    CHECK(Address::unix_path("@a\0b"s).host() == "@a\0b"s);

    auto main = []() -> Coro<bool> {
        try {
            co_await asyncio::get_running_loop().getaddrinfo("127.0.0.1\0junk"s, "80");
        } catch (const std::invalid_argument&) {
            co_return true;
        }
        co_return false;
    };
    CHECK(asyncio::run(main()));
}

TEST_CASE("a port is digits only") {
    // Found by fuzz/fuzz_address: from_chars took "-0" for port 0, which
    // getaddrinfo(3) refuses.
    CHECK_THROWS_AS(Address::from_string("127.0.0.1:-0"), std::invalid_argument);
    CHECK_THROWS_AS(Address::from_string("127.0.0.1:+80"), std::invalid_argument);
    CHECK(Address::from_string("127.0.0.1:080").port() == 80);
}

TEST_CASE("the empty Unix path is the unnamed address, and binding it autobinds", "[posix]") {
    // Found by fuzz/fuzz_address: unix_path("") was the abstract name "@".
    // Autobinding to an abstract name is Linux's.
    const Address unnamed = Address::unix_path("");
    CHECK(unnamed.host().empty());
    CHECK(unnamed != Address::unix_path("@"));
    Socket sock(AF_UNIX, SOCK_DGRAM);
    sock.bind(unnamed);
    const std::string name = sock.getsockname().host();
    CHECK(name.size() > 1);  // the kernel picked an abstract name
    CHECK(name.front() == '@');
}

// -- Socket ---------------------------------------------------------------------------

TEST_CASE("a Socket is non-blocking and close-on-exec, and closes once") {
    Socket sock(AF_INET, SOCK_STREAM);
    const int fd = sock.fileno();
#ifdef _WIN32
    // Winsock cannot be asked whether a socket is non-blocking: a connect
    // to a listener shows it (a blocking one would simply succeed).
    Socket server = listener();
    const Address address = server.getsockname();
    CHECK(::connect(static_cast<SOCKET>(fd), address.data(), address.size()) == SOCKET_ERROR);
    CHECK(::WSAGetLastError() == WSAEWOULDBLOCK);
    DWORD flags = 0;
    REQUIRE(
        ::GetHandleInformation(reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd)), &flags));
    CHECK((flags & HANDLE_FLAG_INHERIT) == 0);
#else
    CHECK((::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
#endif
    CHECK(sock.type() == SOCK_STREAM);
    CHECK(sock.family() == AF_INET);
    sock.close();
    CHECK(sock.fileno() == -1);
    sock.close();
    Socket other(AF_INET, SOCK_DGRAM);
    const int raw = other.detach();
    CHECK(other.fileno() == -1);
    Socket adopted = Socket::from_fd(raw);
    CHECK(adopted.fileno() == raw);
}

TEST_CASE("socketpair: two connected non-blocking stream sockets") {
    // socket.socketpair(): AF_UNIX, or on Windows a loopback TCP connection.
    auto [a, b] = asyncio::socketpair();
#ifdef _WIN32
    CHECK(a.family() == AF_INET);
    CHECK_THROWS_AS(asyncio::socketpair(AF_UNIX), std::invalid_argument);
#else
    CHECK(a.family() == AF_UNIX);
#endif
    CHECK(a.type() == SOCK_STREAM);
    CHECK(b.type() == SOCK_STREAM);
    char byte = 0;
    CHECK(asyncio_test::raw_recv(a.fileno(), &byte, 1) < 0);  // non-blocking: nothing there
    auto main = [](asyncio::Socket& x, asyncio::Socket& y) -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        co_await loop.sock_sendall(x, "ping");
        std::string got = co_await loop.sock_recv(y, 4);
        co_await loop.sock_sendall(y, "pong");
        got += co_await loop.sock_recv(x, 4);
        co_return got;
    };
    CHECK(run_guarded(main(a, b)) == "pingpong");
}

TEST_CASE("socket errors carry the OS error") {
    Socket a = listener();
    Socket b(AF_INET, SOCK_STREAM);
    try {
        b.bind(a.getsockname());  // in use
        FAIL("bind succeeded");
    } catch (const std::system_error& e) {
        CHECK(e.code() == std::errc::address_in_use);
    }
}

// -- sock_* -----------------------------------------------------------------------------

TEST_CASE("sock_connect, sock_sendall, sock_recv and sock_accept over TCP") {
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Socket server = listener();
        auto echo = asyncio::create_task(echo_one(server));
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, server.getsockname());
        co_await loop.sock_sendall(client, "hello");
        std::string reply = co_await loop.sock_recv(client, 5);
        client.shutdown(SHUT_WR);
        const std::size_t echoed = co_await echo;
        CHECK(echoed == 5);
        std::string eof = co_await loop.sock_recv(client, 10);
        CHECK(eof.empty());
        co_return reply;
    };
    CHECK(run_guarded(main()) == "hello");
}

TEST_CASE("a large transfer through sock_sendall and sock_recv_into") {
    auto main = []() -> Coro<std::size_t> {
        auto& loop = asyncio::get_running_loop();
        Socket server = listener();
        auto echo = asyncio::create_task(echo_one(server));
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, server.getsockname());
        std::string payload(8 << 20, '\0');
        for (std::size_t i = 0; i < payload.size(); ++i)
            payload[i] = static_cast<char>(i * 7);
        auto sender = [](Socket& s, const std::string& data) -> Coro<void> {
            co_await asyncio::get_running_loop().sock_sendall(s, data);
            s.shutdown(SHUT_WR);
        };
        auto send_task = asyncio::create_task(sender(client, payload));
        std::string received;
        std::vector<std::byte> buffer(100'000);
        for (;;) {
            const std::size_t n = co_await loop.sock_recv_into(client, buffer);
            if (n == 0) break;
            received.append(reinterpret_cast<const char*>(buffer.data()), n);
        }
        co_await send_task;
        co_await echo;
        CHECK(received == payload);
        co_return received.size();
    };
    CHECK(run_guarded(main()) == 8u << 20);
}

TEST_CASE("sock_connect to a closed port raises ECONNREFUSED") {
    auto main = []() -> Coro<std::error_code> {
        // Bound but not listening, and kept open: a port closed before the
        // connect could become the client's own (a connect from a port to
        // itself succeeds), as under IOCP, whose ConnectEx binds the client
        // to an ephemeral port first.
        Socket probe(AF_INET, SOCK_STREAM);
        probe.bind(Address::parse("127.0.0.1", 0));
        const Address nowhere = probe.getsockname();
        Socket client(AF_INET, SOCK_STREAM);
        try {
            co_await asyncio::get_running_loop().sock_connect(client, nowhere);
        } catch (const std::system_error& e) {
            co_return e.code();
        }
        co_return std::error_code{};
    };
    CHECK(run_guarded(main()) == std::errc::connection_refused);
}

TEST_CASE("cancelling sock_recv and sock_accept") {
    auto main = []() -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        Socket server = listener();
        auto accepting = [](Socket& s) -> Coro<void> {
            co_await asyncio::get_running_loop().sock_accept(s);
        };
        Task<void> a = asyncio::create_task(accepting(server));
        co_await asyncio::sleep(0);
        a.cancel();
        int cancelled = 0;
        try {
            co_await a;
        } catch (const asyncio::CancelledError&) {
            ++cancelled;
        }
        // The listener still works for the next accept.
        auto echo = asyncio::create_task(echo_one(server));
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, server.getsockname());
        auto receiving = [](Socket& s) -> Coro<std::string> {
            co_return co_await asyncio::get_running_loop().sock_recv(s, 10);
        };
        Task<std::string> r = asyncio::create_task(receiving(client));
        co_await asyncio::sleep(0);
        r.cancel();
        try {
            co_await r;
        } catch (const asyncio::CancelledError&) {
            ++cancelled;
        }
        client.shutdown(SHUT_WR);
        co_await echo;
        co_return cancelled;
    };
    CHECK(run_guarded(main()) == 2);
}

TEST_CASE("sock_sendto and sock_recvfrom over UDP") {
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Socket receiver(AF_INET, SOCK_DGRAM);
        receiver.bind(Address::parse("127.0.0.1", 0));
        Socket sender(AF_INET, SOCK_DGRAM);
        sender.bind(Address::parse("127.0.0.1", 0));
        const std::size_t sent =
            co_await loop.sock_sendto(sender, "datagram", receiver.getsockname());
        CHECK(sent == 8);
        auto [data, from] = co_await loop.sock_recvfrom(receiver, 100);
        CHECK(from == sender.getsockname());
        co_return data;
    };
    CHECK(run_guarded(main()) == "datagram");
}

TEST_CASE("sock_* over a Unix socket", "[posix]") {
    // An abstract Unix socket name is Linux's.
#ifndef _WIN32
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        const Address path = Address::unix_path("@asyncio-test-" + std::to_string(::getpid()));
        Socket server(AF_UNIX, SOCK_STREAM);
        server.bind(path);
        server.listen();
        auto echo = asyncio::create_task(echo_one(server));
        Socket client(AF_UNIX, SOCK_STREAM);
        co_await loop.sock_connect(client, path);
        co_await loop.sock_sendall(client, "unix");
        std::string reply = co_await loop.sock_recv(client, 4);
        client.shutdown(SHUT_WR);
        co_await echo;
        co_return reply;
    };
    CHECK(run_guarded(main()) == "unix");
#endif
}

TEST_CASE("sock_sendfile sends a file, zero-copy or by the fallback") {
    std::string content(300'000, '\0');
    for (std::size_t i = 0; i < content.size(); ++i)
        content[i] = static_cast<char>('a' + i % 26);
    const asyncio_test::TempFile temp(content);
    const int file = temp.fd;

    auto main = [](int fd, std::size_t offset,
                   std::optional<std::size_t> count) -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Socket server = listener();
        auto collect = [](Socket& s) -> Coro<std::string> {
            auto& l = asyncio::get_running_loop();
            auto [conn, peer] = co_await l.sock_accept(s);
            std::string all;
            for (;;) {
                std::string part = co_await l.sock_recv(conn, 65536);
                if (part.empty()) break;
                all += part;
            }
            co_return all;
        };
        auto collector = asyncio::create_task(collect(server));
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, server.getsockname());
        const std::size_t sent = co_await loop.sock_sendfile(client, fd, offset, count);
        client.shutdown(SHUT_WR);
        std::string got = co_await collector;
        CHECK(sent == got.size());
        co_return got;
    };
    CHECK(run_guarded(main(file, 0, std::nullopt)) == content);
    CHECK(run_guarded(main(file, 1000, 5000)) == content.substr(1000, 5000));

    // A pipe cannot be sent with sendfile(2) from here: the fallback reads it.
    const auto pipe_fds = asyncio_test::os_pipe();
    auto refuse = [](int fd) -> Coro<void> {
        Socket s(AF_INET, SOCK_STREAM);
        co_await asyncio::get_running_loop().sock_sendfile(s, fd, 0, std::nullopt, false);
    };
    CHECK_THROWS_AS(run_guarded(refuse(pipe_fds[0])), asyncio::SendfileNotAvailableError);
    asyncio_test::close_fd(pipe_fds[0]);
    asyncio_test::close_fd(pipe_fds[1]);
}

// -- name resolution --------------------------------------------------------------------

TEST_CASE("getaddrinfo resolves names without blocking and numeric hosts at once") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto numeric = co_await loop.getaddrinfo("127.0.0.1", "80", {.type = SOCK_STREAM});
        REQUIRE(numeric.size() == 1);
        CHECK(numeric[0].address == Address::parse("127.0.0.1", 80));
        CHECK(numeric[0].protocol == IPPROTO_TCP);
        auto local = co_await loop.getaddrinfo("localhost", "443", {.type = SOCK_STREAM});
        REQUIRE_FALSE(local.empty());
        for (const auto& info : local)
            CHECK(info.address.port() == 443);
        auto [host, service] = co_await loop.getnameinfo(Address::parse("127.0.0.1", 80),
                                                         NI_NUMERICHOST | NI_NUMERICSERV);
        CHECK(host == "127.0.0.1");
        CHECK(service == "80");
    };
    run_guarded(main());
}

TEST_CASE("getaddrinfo of an unknown host raises a gaierror") {
    auto main = []() -> Coro<std::string> {
        try {
            co_await asyncio::get_running_loop().getaddrinfo("no-such-host.invalid", "80");
        } catch (const std::system_error& e) {
            co_return e.code().category().name();
        }
        co_return "resolved";
    };
    CHECK(run_guarded(main()) == std::string("getaddrinfo"));
}

TEST_CASE("a port outside 0-65535 raises OverflowError, never wraps") {
    // glibc's getaddrinfo(3) read "70000" as port 4464 and "-1" as 65535;
    // CPython raises OverflowError("port must be 0-65535").
    CHECK_THROWS_AS(Address::parse("127.0.0.1", -1), std::overflow_error);
    CHECK_THROWS_AS(Address::parse("127.0.0.1", 65536), std::overflow_error);
    CHECK(Address::parse("127.0.0.1", 65535).port() == 65535);
    struct Seen {
        int overflows = 0, other = 0;
        std::string message;
        int edge_port = -1;
    };
    auto main = []() -> Coro<Seen> {
        auto& loop = asyncio::get_running_loop();
        Seen seen;
        // Numeric hosts (the fast path) and names (the resolver), with and
        // without a socket type, sign, leading zeros or white space.
        const std::vector<std::pair<std::string, std::string>> queries{
            {"127.0.0.1", "70000"},    {"localhost", "65536"},
            {"127.0.0.1", "-1"},       {"::1", "99999999999999999999999"},
            {"127.0.0.1", " \t70000"},  // strtoul skips leading white space
            {"localhost", "+65536"}};
        for (std::size_t i = 0; i < queries.size() * 2; ++i) {
            const auto& query = queries[i / 2];
            const int type = i % 2 == 0 ? 0 : SOCK_STREAM;
            try {
                co_await loop.getaddrinfo(query.first, query.second, {.type = type});
                ++seen.other;
            } catch (const std::overflow_error& e) {
                ++seen.overflows;
                seen.message = e.what();
            }
        }
        auto edge = co_await loop.getaddrinfo("127.0.0.1", "65535", {.type = SOCK_STREAM});
        seen.edge_port = edge.front().address.port();
        co_return seen;
    };
    const Seen seen = run_guarded(main());
    CHECK(seen.overflows == 12);
    CHECK(seen.other == 0);
    CHECK(seen.message == "port must be 0-65535, got 65536");
    CHECK(seen.edge_port == 65535);
}

TEST_CASE("a closed socket's descriptor can be reused by a new one") {
    // The loop forgets a socket when it is closed, so a new socket that gets
    // the same descriptor number is watched afresh.
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Socket server = listener();
        std::string last;
        for (int round = 0; round < 3; ++round) {
            auto echo = asyncio::create_task(echo_one(server));
            Socket client(AF_INET, SOCK_STREAM);
            co_await loop.sock_connect(client, server.getsockname());
            co_await loop.sock_sendall(client, "r" + std::to_string(round));
            last = co_await loop.sock_recv(client, 2);
            client.shutdown(SHUT_WR);
            co_await echo;
        }
        co_return last;
    };
    CHECK(run_guarded(main()) == "r2");
}
