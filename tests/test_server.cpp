// Servers: ports of CPython's test_server.py (start_server, serve_forever,
// wait_closed, close_clients / abort_clients, Unix socket cleanup) and of
// test_base_events.py / test_events.py create_server cases (port 0, several
// hosts, reuse_address / reuse_port, start_serving=False, sock=), plus the
// accept path under stress: EMFILE without spinning, a 10,000-connection
// accept storm, and 10,000 connections held open at once (the clients in a
// forked child, for the per-process descriptor limit).
#ifndef _WIN32
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#endif

#include <any>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

using asyncio_test::iterations;
using asyncio_test::run_guarded;

using namespace std::chrono_literals;
using asyncio::Address;
using asyncio::Coro;
using asyncio::Socket;
using asyncio::StreamReader;
using asyncio::StreamWriter;

namespace {

/// Counts the connections of every Echo made by the same factory.
struct EchoStats {
    int made = 0;
    int active = 0;
    int peak = 0;
    int lost = 0;
    asyncio::Event changed;

    Coro<void> wait_made(int n) {
        while (made < n) {
            changed.clear();
            co_await changed.wait();
        }
    }
    Coro<void> wait_lost(int n) {
        while (lost < n) {
            changed.clear();
            co_await changed.wait();
        }
    }
};

/// Echoes what it receives; closes at EOF.
struct Echo : asyncio::Protocol {
    explicit Echo(std::shared_ptr<EchoStats> s) : stats(std::move(s)) {}
    std::shared_ptr<EchoStats> stats;
    asyncio::Transport* transport = nullptr;

    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
        ++stats->made;
        stats->peak = std::max(stats->peak, ++stats->active);
        stats->changed.set();
    }
    void data_received(std::string_view data) override { transport->write(data); }
    void connection_lost(std::exception_ptr) override {
        --stats->active;
        ++stats->lost;
        stats->changed.set();
    }
};

auto echo_factory(std::shared_ptr<EchoStats> stats) {
    return [stats] { return std::make_shared<Echo>(stats); };
}

/// Connects a raw socket to `address`, sends `message`, returns the echo.
Coro<std::string> echo_once(Address address, std::string message) {
    auto& loop = asyncio::get_running_loop();
    Socket sock(address.family(), SOCK_STREAM);
    co_await loop.sock_connect(sock, address);
    co_await loop.sock_sendall(sock, message);
    std::string reply;
    while (reply.size() < message.size()) {
        std::string part = co_await loop.sock_recv(sock, 65536);
        if (part.empty()) break;
        reply += part;
    }
    co_return reply;
}

/// Whether connecting to `address` is refused.
Coro<bool> refused(Address address) {
    Socket sock(address.family(), SOCK_STREAM);
    try {
        co_await asyncio::get_running_loop().sock_connect(sock, address);
    } catch (const std::system_error& e) {
        co_return e.code() == std::errc::connection_refused;
    }
    co_return false;
}

#ifndef _WIN32
std::string unix_path(const char* tag) {
    return "/tmp/asyncio-test-server-" + std::string(tag) + "-" + std::to_string(::getpid()) +
           ".sock";
}

bool exists(const std::string& path) {
    struct ::stat info {};
    return ::lstat(path.c_str(), &info) == 0;
}
#endif

}  // namespace

// -- create_server --------------------------------------------------------------------------

TEST_CASE("create_server on 127.0.0.1 port 0: sockets, is_serving, close") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0);
        CHECK(server.is_serving());
        CHECK(&server.get_loop() == &loop);
        const std::vector<Address> addresses = server.sockets();
        REQUIRE(addresses.size() == 1);
        CHECK(addresses[0].host() == "127.0.0.1");
        CHECK(addresses[0].port() != 0);
        const std::string reply = co_await echo_once(addresses[0], "hello");
        CHECK(reply == "hello");
        co_await stats->wait_lost(1);
        server.close();
        CHECK_FALSE(server.is_serving());
        CHECK(server.sockets().empty());
        co_await server.wait_closed();
        const bool is_refused = co_await refused(addresses[0]);
        CHECK(is_refused);
        server.close();  // twice is fine
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("create_server on several hosts listens on each") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        std::vector<std::string> hosts{"127.0.0.1", "127.0.0.2", "127.0.0.1"};
        auto server = co_await loop.create_server(factory, hosts, 0);
        const std::vector<Address> addresses = server.sockets();
        REQUIRE(addresses.size() == 2);  // the repeated host is bound once
        CHECK(addresses[0].host() == "127.0.0.1");
        CHECK(addresses[1].host() == "127.0.0.2");
        for (const Address& address : addresses) {
            const std::string reply = co_await echo_once(address, address.to_string());
            CHECK(reply == address.to_string());
        }
        co_await stats->wait_lost(2);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("create_server on a fixed port for every interface") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        // The port of a first server on all IPv4 interfaces, then reused by name.
        auto first = co_await loop.create_server(factory, "0.0.0.0", 0);
        const int port = first.sockets().front().port();
        first.close();
        co_await first.wait_closed();
        auto server = co_await loop.create_server(factory, "", port);
        const std::vector<Address> addresses = server.sockets();
        REQUIRE_FALSE(addresses.empty());
        for (const Address& address : addresses)
            CHECK(address.port() == port);
        const std::string reply = co_await echo_once(Address::parse("127.0.0.1", port), "any");
        CHECK(reply == "any");
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("create_server on a port in use raises EADDRINUSE; reuse_port shares it") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions reuse_port{.reuse_port = true};
#ifndef SO_REUSEPORT
        // Windows has no SO_REUSEPORT: reuse_port is refused (CPython's
        // ValueError "reuse_port not supported by socket module").
        std::string refusal;
        try {
            co_await loop.create_server(factory, "127.0.0.1", 0, reuse_port);
        } catch (const std::invalid_argument& e) {
            refusal = e.what();
        }
        CHECK(refusal == "reuse_port not supported by socket module");
        auto only = co_await loop.create_server(factory, "127.0.0.1", 0);
        std::error_code in_use;
        try {
            co_await loop.create_server(factory, "127.0.0.1", only.sockets().front().port());
        } catch (const std::system_error& e) {
            in_use = e.code();
        }
        CHECK(in_use == std::errc::address_in_use);
        only.close();
        co_await only.wait_closed();
#else
        auto first = co_await loop.create_server(factory, "127.0.0.1", 0, reuse_port);
        const int port = first.sockets().front().port();
        std::error_code code;
        try {
            co_await loop.create_server(factory, "127.0.0.1", port);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::address_in_use);
        auto second = co_await loop.create_server(factory, "127.0.0.1", port, reuse_port);
        CHECK(second.sockets().front().port() == port);
        // Either may take a connection; both serve.
        for (int i = 0; i < 4; ++i) {
            const std::string reply = co_await echo_once(Address::parse("127.0.0.1", port), "rp");
            CHECK(reply == "rp");
        }
        first.close();
        second.close();
        co_await first.wait_closed();
        co_await second.wait_closed();
#endif
    };
    run_guarded(main());
}

TEST_CASE("reuse_address lets a server bind a port left in TIME_WAIT", "[posix]") {
    // SO_REUSEADDR's TIME_WAIT meaning is POSIX's: on Windows it lets
    // sockets share a bound port (CPython leaves it off there).
#ifndef _WIN32
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions reuse{.reuse_address = true};
        const asyncio::ServerOptions no_reuse{.reuse_address = false};
        auto first = co_await loop.create_server(factory, "127.0.0.1", 0, reuse);
        const Address address = first.sockets().front();
        // The server side closes first, so its end of the connection stays in TIME_WAIT.
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", address.port());
        co_await stats->wait_made(1);
        first.close_clients();
        const std::string eof = co_await reader.read();
        CHECK(eof.empty());
        writer.close();
        co_await writer.wait_closed();
        first.close();
        co_await first.wait_closed();

        std::error_code code;
        try {
            co_await loop.create_server(factory, "127.0.0.1", address.port(), no_reuse);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::address_in_use);
        auto second = co_await loop.create_server(factory, "127.0.0.1", address.port(), reuse);
        const std::string reply = co_await echo_once(address, "again");
        CHECK(reply == "again");
        second.close();
        co_await second.wait_closed();
    };
    run_guarded(main());
#endif
}

TEST_CASE("create_server on a socket made elsewhere (sock=)") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        Socket sock(AF_INET, SOCK_STREAM);
        sock.bind(Address::parse("127.0.0.1", 0));
        const Address address = sock.getsockname();
        auto server = co_await loop.create_server(factory, std::move(sock));
        CHECK(server.sockets() == std::vector<Address>{address});
        const std::string reply = co_await echo_once(address, "sock");
        CHECK(reply == "sock");
        server.close();
        co_await server.wait_closed();

        Socket datagram(AF_INET, SOCK_DGRAM);
        bool refused_type = false;
        try {
            co_await loop.create_server(factory, std::move(datagram));
        } catch (const std::invalid_argument&) {
            refused_type = true;
        }
        CHECK(refused_type);
    };
    run_guarded(main());
}

TEST_CASE("create_server refuses a port outside 0-65535 instead of wrapping it") {
    // glibc's getaddrinfo(3) read 65536 as port 0: the server listened on a
    // random port. CPython raises OverflowError.
    auto main = []() -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        auto factory = echo_factory(std::make_shared<EchoStats>());
        int refused = 0;
        const int ports[] = {65536, -1, 70000};
        for (int port : ports) {
            try {
                auto server = co_await loop.create_server(factory, "127.0.0.1", port);
                server.close();
                co_await server.wait_closed();
            } catch (const std::overflow_error&) {
                ++refused;
            }
        }
        try {
            const std::vector<std::string> every_interface{""};
            auto server = co_await loop.create_server(factory, every_interface, 65536);
            server.close();
            co_await server.wait_closed();
        } catch (const std::overflow_error&) {
            ++refused;
        }
        co_return refused;
    };
    CHECK(run_guarded(main()) == 4);
}

namespace {
/// Records whether the accepted socket has SO_KEEPALIVE set.
struct KeepAliveProbe : asyncio::Protocol {
    explicit KeepAliveProbe(asyncio::Future<bool> f) : seen(std::move(f)) {}
    asyncio::Future<bool> seen;
    void connection_made(asyncio::BaseTransport& t) override {
        const int fd = std::any_cast<int>(t.get_extra_info("socket"));
        const int value = asyncio_test::get_socket_option(fd, SOL_SOCKET, SO_KEEPALIVE);
        REQUIRE(value >= 0);
        if (!seen.done()) seen.set_result(value != 0);
    }
};

Coro<bool> accepted_keep_alive(bool keep_alive) {
    auto& loop = asyncio::get_running_loop();
    asyncio::Future<bool> seen = loop.create_future<bool>();
    auto factory = [seen] { return std::make_shared<KeepAliveProbe>(seen); };
    const asyncio::ServerOptions opts{.keep_alive = keep_alive};
    auto server = co_await loop.create_server(factory, "127.0.0.1", 0, opts);
    Socket client(AF_INET, SOCK_STREAM);
    co_await loop.sock_connect(client, server.sockets().front());
    const bool set = co_await seen;
    client.close();  // EOF: the probe's transport closes, and the server can finish
    server.close();
    co_await server.wait_closed();
    co_return set;
}
}  // namespace

TEST_CASE("keep_alive sets SO_KEEPALIVE on the accepted connections") {
    auto main = []() -> Coro<std::pair<bool, bool>> {
        const bool without = co_await accepted_keep_alive(false);
        const bool with = co_await accepted_keep_alive(true);
        co_return std::pair{without, with};
    };
    CHECK(run_guarded(main()) == std::pair{false, true});
}

TEST_CASE("start_serving=false: not listening until start_serving()") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions later{.start_serving = false};
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0, later);
        CHECK_FALSE(server.is_serving());
        const Address address = server.sockets().front();
        const bool before = co_await refused(address);
        CHECK(before);
        co_await server.start_serving();
        CHECK(server.is_serving());
        co_await server.start_serving();  // again: nothing happens
        CHECK(server.is_serving());
        const std::string reply = co_await echo_once(address, "serving");
        CHECK(reply == "serving");
        server.close();
        co_await server.wait_closed();
        co_await server.start_serving();  // closed: nothing happens
        CHECK_FALSE(server.is_serving());
    };
    run_guarded(main());
}

// -- wait_closed, serve_forever ------------------------------------------------------------

TEST_CASE("wait_closed waits for close() and for every connection to end") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0);
        const Address address = server.sockets().front();
        auto waiting = asyncio::create_task(server.wait_closed());
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", address.port());
        co_await stats->wait_made(1);
        co_await iterations(3);
        CHECK_FALSE(waiting.done());  // not closed yet

        server.close();
        co_await iterations(3);
        CHECK_FALSE(waiting.done());  // a connection is still open
        const bool now_refused = co_await refused(address);
        CHECK(now_refused);
        writer.write("still served\n");  // the open connection keeps working
        const std::string line = co_await reader.readline();
        CHECK(line == "still served\n");

        writer.close();
        co_await writer.wait_closed();
        co_await waiting;
        CHECK(stats->lost == 1);
        co_await server.wait_closed();  // done: returns at once
    };
    run_guarded(main());
}

TEST_CASE("serve_forever serves until cancelled, then the server is closed") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions later{.start_serving = false};
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0, later);
        const Address address = server.sockets().front();
        auto serving = asyncio::create_task(server.serve_forever());
        co_await asyncio::sleep(0);
        CHECK(server.is_serving());
        bool second_refused = false;
        try {
            co_await server.serve_forever();
        } catch (const asyncio::RuntimeError&) {
            second_refused = true;
        }
        CHECK(second_refused);
        const std::string reply = co_await echo_once(address, "forever");
        CHECK(reply == "forever");
        co_await stats->wait_lost(1);

        serving.cancel();
        bool cancelled = false;
        try {
            co_await serving;
        } catch (const asyncio::CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
        CHECK_FALSE(server.is_serving());
        CHECK(server.sockets().empty());
        co_await server.wait_closed();
        bool closed_refused = false;
        try {
            co_await server.serve_forever();
        } catch (const asyncio::RuntimeError&) {
            closed_refused = true;
        }
        CHECK(closed_refused);
    };
    run_guarded(main());
}

TEST_CASE("serve_forever ends when the server is closed from elsewhere") {
    auto main = []() -> Coro<bool> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0);
        auto serving = asyncio::create_task(server.serve_forever());
        co_await asyncio::sleep(0);
        server.close();
        bool cancelled = false;
        try {
            co_await serving;
        } catch (const asyncio::CancelledError&) {
            cancelled = true;
        }
        co_await server.wait_closed();
        co_return cancelled;
    };
    CHECK(run_guarded(main()));
}

// -- close_clients, abort_clients ------------------------------------------------------------

TEST_CASE("close_clients closes every connection, flushing; wait_closed then returns") {
    auto main = []() -> Coro<void> {
        auto connected = std::make_shared<int>(0);
        auto writes_then_waits = [connected](StreamReader reader,
                                             StreamWriter writer) -> Coro<void> {
            ++*connected;
            writer.write("goodbye");
            co_await reader.read();  // until the client's EOF
            writer.close();
        };
        auto server = co_await asyncio::start_server(writes_then_waits, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        auto [r1, w1] = co_await asyncio::open_connection("127.0.0.1", port);
        auto [r2, w2] = co_await asyncio::open_connection("127.0.0.1", port);
        while (*connected < 2)
            co_await asyncio::sleep(0);
        server.close();
        auto waiting = asyncio::create_task(server.wait_closed());
        co_await iterations(3);
        CHECK_FALSE(waiting.done());
        server.close_clients();
        const std::string got1 = co_await r1.read();
        const std::string got2 = co_await r2.read();
        CHECK(got1 == "goodbye");
        CHECK(got2 == "goodbye");
        co_await waiting;
        w1.close();
        w2.close();
    };
    run_guarded(main());
}

TEST_CASE("abort_clients drops what the connections had buffered") {
    auto main = []() -> Coro<void> {
        auto buffered = std::make_shared<std::size_t>(0);
        constexpr std::size_t kBig = 16u << 20;
        auto floods = [buffered](StreamReader reader, StreamWriter writer) -> Coro<void> {
            writer.write(std::string(kBig, 'f'));  // the client does not read
            *buffered = writer.transport().get_write_buffer_size();
            co_await reader.read();
        };
        auto server = co_await asyncio::start_server(floods, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
        while (*buffered == 0)
            co_await asyncio::sleep(0);
        server.close();
        auto waiting = asyncio::create_task(server.wait_closed());
        server.abort_clients();
        co_await waiting;  // without waiting for the client to read
        std::size_t total = 0;
        try {
            for (;;) {
                std::string part = co_await reader.read(1 << 20);
                if (part.empty()) break;
                total += part.size();
            }
        } catch (const std::system_error&) {
            // A reset is fine too: the point is that the data was dropped.
        }
        CHECK(total < kBig);
        writer.close();
    };
    run_guarded(main());
}

// -- Unix sockets ------------------------------------------------------------------------------

TEST_CASE("create_unix_server and create_unix_connection; the socket file is removed", "[posix]") {
    // Unix sockets: POSIX only, as in CPython (no AF_UNIX on Windows there).
#ifndef _WIN32
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const std::string path = unix_path("basic");
        ::unlink(path.c_str());
        auto server = co_await loop.create_unix_server(factory, path);
        CHECK(exists(path));
        CHECK(server.sockets() == std::vector<Address>{Address::unix_path(path)});
        struct Client : asyncio::Protocol {
            std::string received;
            asyncio::Event got;
            void data_received(std::string_view data) override {
                received += data;
                got.set();
            }
        };
        auto client = std::make_shared<Client>();
        auto client_factory = [client] { return client; };
        auto [transport, proto] = co_await loop.create_unix_connection(client_factory, path);
        CHECK(proto == client.get());
        transport->write("over a unix socket");
        while (client->received.size() < 18) {
            client->got.clear();
            co_await client->got.wait();
        }
        CHECK(client->received == "over a unix socket");
        CHECK(transport->peername() == Address::unix_path(path));
        transport->close();
        co_await stats->wait_lost(1);
        server.close();
        co_await server.wait_closed();
        CHECK_FALSE(exists(path));
    };
    run_guarded(main());
#endif
}

TEST_CASE("a Unix server replaces a stale socket file and leaves files it does not own",
          "[posix]") {
    // Unix sockets: POSIX only, as in CPython (no AF_UNIX on Windows there).
#ifndef _WIN32
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const std::string path = unix_path("stale");
        {
            Socket stale(AF_UNIX, SOCK_STREAM);  // bound, never listening, then closed
            ::unlink(path.c_str());
            stale.bind(Address::unix_path(path));
        }
        REQUIRE(exists(path));
        auto server = co_await loop.create_unix_server(factory, path);
        const std::string reply = co_await echo_once(Address::unix_path(path), "fresh");
        CHECK(reply == "fresh");
        // Replaced by a regular file: not the server's any more
        // (test_unix_server_cleanup_replaced).
        ::unlink(path.c_str());
        const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
        REQUIRE(fd >= 0);
        ::close(fd);
        server.close();
        co_await server.wait_closed();
        CHECK(exists(path));
        ::unlink(path.c_str());

        // cleanup_socket=false keeps the file (test_unix_server_cleanup_prevented).
        const asyncio::ServerOptions keep_file{.cleanup_socket = false};
        auto kept = co_await loop.create_unix_server(factory, path, keep_file);
        kept.close();
        co_await kept.wait_closed();
        CHECK(exists(path));

        // Gone before close: no error (test_unix_server_cleanup_gone).
        auto gone = co_await loop.create_unix_server(factory, path);
        ::unlink(path.c_str());
        gone.close();
        co_await gone.wait_closed();
        CHECK_FALSE(exists(path));
    };
    run_guarded(main());
#endif
}

TEST_CASE("a Unix server leaves a regular file in its way: EADDRINUSE", "[posix]") {
    // Unix sockets: POSIX only, as in CPython (no AF_UNIX on Windows there).
#ifndef _WIN32
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const std::string path = unix_path("busy");
        ::unlink(path.c_str());
        // A regular file in the way is not removed.
        const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
        REQUIRE(fd >= 0);
        ::close(fd);
        std::error_code code;
        try {
            co_await loop.create_unix_server(factory, path);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::address_in_use);
        CHECK(exists(path));
        ::unlink(path.c_str());
    };
    run_guarded(main());
#endif
}

// -- accepting under stress -------------------------------------------------------------------

TEST_CASE("accept hitting EMFILE does not spin, and accepts again once descriptors are free",
          "[posix]") {
    // Exhausts descriptors under a lowered RLIMIT_NOFILE: Windows has no
    // per-process descriptor limit for sockets.
#ifndef _WIN32
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        int exhausted_reports = 0;
        std::vector<std::string> other_reports;
        asyncio::Event reported;
        loop.set_exception_handler(
            [&](asyncio::EventLoop&, const asyncio::ExceptionContext& context) {
                if (context.message == "socket.accept() out of system resource") {
                    ++exhausted_reports;
                    reported.set();
                } else {
                    other_reports.push_back(context.message);
                }
            });
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions later{.start_serving = false};
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0, later);
        const Address address = server.sockets().front();
        Socket client(AF_INET, SOCK_STREAM);

        // Use up every descriptor below a lowered limit.
        ::rlimit saved{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
        const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(null_fd >= 0);
        ::rlimit lowered = saved;
        lowered.rlim_cur = static_cast<rlim_t>(null_fd + 32);
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
        std::vector<int> fillers;
        for (int fd; (fd = ::dup(null_fd)) >= 0;)
            fillers.push_back(fd);
        REQUIRE(errno == EMFILE);

        co_await server.start_serving();
        const int rc = ::connect(client.fileno(), address.data(), address.size());
        REQUIRE((rc == 0 || errno == EINPROGRESS));
        co_await reported.wait();
        // With descriptors still exhausted, the server must back off, not retry
        // in a loop: a spinning server would report a failure per iteration here.
        co_await iterations(1000);
        CHECK(exhausted_reports <= 2);
        CHECK(stats->made == 0);
        CHECK(server.is_serving());

        for (int fd : fillers)
            ::close(fd);
        ::close(null_fd);
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
        co_await stats->wait_made(1);
        CHECK(exhausted_reports <= 2);
        co_await loop.sock_sendall(client, "back");
        const std::string reply = co_await loop.sock_recv(client, 16);
        CHECK(reply == "back");
        CHECK(other_reports.empty());
        client.close();
        co_await stats->wait_lost(1);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
#endif
}

TEST_CASE("an accept storm of 10,000 connections: every one is served") {
    static constexpr int kConnections = 10'000;
    static constexpr int kClients = 256;  // connecting at once
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        const asyncio::ServerOptions big_backlog{.backlog = 1024};
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0, big_backlog);
        const Address address = server.sockets().front();
        auto next = std::make_shared<int>(0);
        auto client = [](Address to, std::shared_ptr<int> next) -> Coro<int> {
            auto& loop = asyncio::get_running_loop();
            int ok = 0;
            for (int i; (i = (*next)++) < kConnections;) {
                Socket sock(AF_INET, SOCK_STREAM);
                co_await loop.sock_connect(sock, to);
                const std::string message = std::to_string(i);
                co_await loop.sock_sendall(sock, message);
                std::string reply;
                while (reply.size() < message.size()) {
                    std::string part = co_await loop.sock_recv(sock, 64);
                    if (part.empty()) break;
                    reply += part;
                }
                if (reply == message) ++ok;
            }
            co_return ok;
        };
        std::vector<asyncio::Task<int>> clients;
        for (int i = 0; i < kClients; ++i)
            clients.push_back(asyncio::create_task(client(address, next)));
        const std::vector<int> served = co_await asyncio::gather(std::move(clients));
        int total = 0;
        for (int n : served)
            total += n;
        CHECK(total == kConnections);
        co_await stats->wait_lost(kConnections);
        CHECK(stats->made == kConnections);
        CHECK(stats->active == 0);
        CHECK(reports.messages.empty());
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

#ifndef _WIN32
namespace {

constexpr int kHeld = 10'000;

/// The child's side: opens kHeld connections, keeps them all open, then has
/// each echo a message. Returns the process exit status.
Coro<int> hold_connections(int port) {
    const Address address = Address::parse("127.0.0.1", port);
    std::vector<Socket> socks(kHeld);
    auto next = std::make_shared<int>(0);
    auto connect_some = [](std::vector<Socket>* socks, Address to,
                           std::shared_ptr<int> next) -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        for (int i; (i = (*next)++) < kHeld;) {
            Socket sock(AF_INET, SOCK_STREAM);
            co_await loop.sock_connect(sock, to);
            (*socks)[i] = std::move(sock);
        }
    };
    auto echo_some = [](std::vector<Socket>* socks, std::shared_ptr<int> next) -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        int ok = 0;
        for (int i; (i = (*next)++) < kHeld;) {
            const std::string message = "message " + std::to_string(i) + "\n";
            co_await loop.sock_sendall((*socks)[i], message);
            std::string reply;
            while (reply.size() < message.size()) {
                std::string part = co_await loop.sock_recv((*socks)[i], 64);
                if (part.empty()) break;
                reply += part;
            }
            if (reply == message) ++ok;
        }
        co_return ok;
    };
    std::vector<asyncio::Task<void>> connecting;
    for (int i = 0; i < 256; ++i)
        connecting.push_back(asyncio::create_task(connect_some(&socks, address, next)));
    co_await asyncio::gather(std::move(connecting));
    *next = 0;
    std::vector<asyncio::Task<int>> echoing;
    for (int i = 0; i < 256; ++i)
        echoing.push_back(asyncio::create_task(echo_some(&socks, next)));
    const std::vector<int> results = co_await asyncio::gather(std::move(echoing));
    int ok = 0;
    for (int n : results)
        ok += n;
    if (ok != kHeld) {
        std::fprintf(stderr, "child: %d of %d connections echoed\n", ok, kHeld);
        co_return 1;
    }
    co_return 0;
}

/// The parent's side: serves until the child's end of `done_fd` closes.
Coro<void> serve_held(int port_fd, int done_fd) {
    auto& loop = asyncio::get_running_loop();
    asyncio_test::RecordedReports reports(loop);
    auto stats = std::make_shared<EchoStats>();
    auto factory = echo_factory(stats);
    const asyncio::ServerOptions big_backlog{.backlog = 4096};
    auto server = co_await loop.create_server(factory, "127.0.0.1", 0, big_backlog);
    const int port = server.sockets().front().port();
    REQUIRE(::write(port_fd, &port, sizeof port) == static_cast<ssize_t>(sizeof port));
    struct ChildDone : asyncio::Protocol {
        asyncio::Event eof;
        bool eof_received() override {
            eof.set();
            return false;
        }
        void connection_lost(std::exception_ptr) override { eof.set(); }
    };
    auto watcher = std::make_shared<ChildDone>();
    auto watcher_factory = [watcher] { return watcher; };
    co_await loop.connect_read_pipe(watcher_factory, done_fd);
    co_await watcher->eof.wait();
    CHECK(stats->made == kHeld);
    CHECK(stats->peak == kHeld);  // all held open at once
    co_await stats->wait_lost(kHeld);
    CHECK(reports.messages.empty());
    server.close();
    co_await server.wait_closed();
}

}  // namespace
#endif

TEST_CASE("10,000 connections held open at once, each echoing a message", "[posix]") {
    // The clients run in a forked child, and the parent watches a pipe.
#ifndef _WIN32
    int port_pipe[2];
    int done_pipe[2];
    REQUIRE(::pipe(port_pipe) == 0);
    REQUIRE(::pipe(done_pipe) == 0);
    // Forked before any loop exists here: the clients need their own
    // descriptor table (20,000 per process would not hold both sides).
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(port_pipe[1]);
        ::close(done_pipe[0]);
        int port = 0;
        int status = 3;
        if (::read(port_pipe[0], &port, sizeof port) == static_cast<ssize_t>(sizeof port)) {
            try {
                status = run_guarded(hold_connections(port));
            } catch (const std::exception& e) {
                std::fprintf(stderr, "child: %s\n", e.what());
                status = 2;
            }
        }
        ::_exit(status);  // the done pipe closes with the process
    }
    ::close(port_pipe[0]);
    ::close(done_pipe[1]);
    std::exception_ptr error;
    try {
        run_guarded(serve_held(port_pipe[1], done_pipe[0]));
    } catch (...) {
        error = std::current_exception();
        ::kill(pid, SIGKILL);
    }
    ::close(port_pipe[1]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    if (error) std::rethrow_exception(error);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
#endif
}

TEST_CASE("a server and its connections still open when the loop closes are released") {
    auto main = []() -> Coro<std::shared_ptr<EchoStats>> {
        auto& loop = asyncio::get_running_loop();
        auto stats = std::make_shared<EchoStats>();
        auto factory = echo_factory(stats);
        auto server = co_await loop.create_server(factory, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
        co_await stats->wait_made(1);
        writer.write("left open");
        co_return stats;
    };
    auto stats = run_guarded(main());
    CHECK(stats->made == 1);
    CHECK(stats.use_count() == 1);  // the factory and the Echo are gone
}
