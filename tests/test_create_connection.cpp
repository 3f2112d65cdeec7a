// loop.create_connection and friends: ports of CPython's test_base_events.py
// create_connection cases (errors, local_addr, every address tried in
// order, Happy Eyeballs with a blackholed first address) and test_events.py's
// create_unix_connection / connect_accepted_socket cases, plus the options
// open_connection passes through.
#ifdef _WIN32
// winsock2.h first: iphlpapi.h includes windows.h, which must follow it.
#include <winsock2.h>

#include <iphlpapi.h>
#else
#include <unistd.h>
#endif

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Address;
using asyncio::Coro;
using asyncio::Socket;
using asyncio_test::run_guarded;

namespace {

/// A stream protocol that records what happens to it.
struct Recorder : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    std::string data;
    std::size_t want = 0;  // `got` completes once this many bytes arrived
    int made = 0, eofs = 0, losses = 0;
    std::exception_ptr lost_error;
    asyncio::Future<> got, lost;

    std::shared_ptr<asyncio::BaseTransport> keep;

    void connection_made(asyncio::BaseTransport& t) override {
        keep = t.shared_from_this();  // usable after connection_lost
        transport = &dynamic_cast<asyncio::Transport&>(t);
        ++made;
    }
    void data_received(std::string_view d) override {
        data += d;
        if (want != 0 && data.size() >= want && !got.done()) got.set_result();
    }
    bool eof_received() override {
        ++eofs;
        return false;
    }
    void connection_lost(std::exception_ptr error) override {
        ++losses;
        lost_error = error;
        lost.set_result();
    }
};

/// Writes back whatever it receives.
struct Echo : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view d) override { transport->write(d); }
};

std::shared_ptr<Echo> make_echo() {
    return std::make_shared<Echo>();
}

/// Sends "ping" over `transport` and waits for the echo.
Coro<std::string> ping(Recorder& client) {
    client.want = 4;
    client.transport->write("ping");
    co_await client.got;
    co_return client.data;
}

Coro<void> close_and_wait(Recorder& client) {
    client.transport->close();
    co_await client.lost;
}

/// Sockets in SYN_SENT towards `port` on loopback (/proc/net/tcp and tcp6;
/// on Windows, the IP helper's TCP tables): the connection attempts still
/// in flight.
int syn_sent_to(int port) {
    int count = 0;
#ifdef _WIN32
    const auto count_in = [&](ULONG family, auto row_type) {
        using Table = decltype(row_type);
        std::vector<unsigned char> buffer(16 * 1024);
        for (;;) {
            DWORD size = static_cast<DWORD>(buffer.size());
            const DWORD rc = ::GetExtendedTcpTable(buffer.data(), &size, FALSE, family,
                                                   TCP_TABLE_OWNER_PID_ALL, 0);
            if (rc == ERROR_INSUFFICIENT_BUFFER) {
                buffer.resize(size);
                continue;
            }
            REQUIRE(rc == NO_ERROR);
            break;
        }
        const auto* table = reinterpret_cast<const Table*>(buffer.data());
        for (DWORD i = 0; i < table->dwNumEntries; ++i) {
            const auto& row = table->table[i];
            const int remote_port = ::ntohs(static_cast<u_short>(row.dwRemotePort));
            if (remote_port == port && row.dwState == DWORD{MIB_TCP_STATE_SYN_SENT}) ++count;
        }
    };
    count_in(AF_INET, MIB_TCPTABLE_OWNER_PID{});
    count_in(AF_INET6, MIB_TCP6TABLE_OWNER_PID{});
#else
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line);  // header
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state;
            fields >> slot >> local >> remote >> state;
            const auto colon = remote.rfind(':');
            if (colon == std::string::npos) continue;
            const int remote_port = std::stoi(remote.substr(colon + 1), nullptr, 16);
            if (remote_port == port && state == "02") ++count;
        }
    }
#endif
    return count;
}

/// The same port bound on both loopback addresses, in the order
/// getaddrinfo("", port) returns them (CPython's host=None: ::1 then
/// 127.0.0.1 here; create_connection spells it std::nullopt). Nothing listens yet: a connection to
/// either is refused.
struct LoopbackPair {
    int port = 0;
    Socket first, second;
    Address first_addr, second_addr;
};

Coro<LoopbackPair> loopback_pair() {
    auto& loop = asyncio::get_running_loop();
    for (int attempt = 0; attempt < 50; ++attempt) {
        Socket v6(AF_INET6, SOCK_STREAM);
        v6.setsockopt(IPPROTO_IPV6, IPV6_V6ONLY, 1);
        v6.bind(Address::parse("::1", 0));
        const int port = v6.getsockname().port();
        Socket v4(AF_INET, SOCK_STREAM);
        try {
            v4.bind(Address::parse("127.0.0.1", port));
        } catch (const std::system_error&) {
            continue;  // taken on IPv4: try another port
        }
        const asyncio::AddrInfoOptions hints{.type = SOCK_STREAM};
        auto infos = co_await loop.getaddrinfo("", std::to_string(port), hints);
        REQUIRE(infos.size() == 2);
        REQUIRE(infos[0].family != infos[1].family);
        LoopbackPair pair;
        pair.port = port;
        pair.first_addr = infos[0].address;
        pair.second_addr = infos[1].address;
        const bool v6_first = infos[0].family == AF_INET6;
        pair.first = std::move(v6_first ? v6 : v4);
        pair.second = std::move(v6_first ? v4 : v6);
        co_return pair;
    }
    FAIL("no port free on both ::1 and 127.0.0.1");
    co_return LoopbackPair{};
}

/// Makes `listener` (bound) a blackhole: with a backlog of 0 and one
/// connection waiting to be accepted, the kernel drops further SYNs, so a
/// connect to it neither succeeds nor fails for a long time. Returns the
/// connection that fills the queue.
Coro<Socket> make_blackhole(Socket& listener) {
    listener.listen(0);
    const Address address = listener.getsockname();
    Socket filler(address.family(), SOCK_STREAM);
    co_await asyncio::get_running_loop().sock_connect(filler, address);
    co_return filler;
}

/// A port where nothing listens (kept bound so nobody else takes it).
Socket refusing_socket() {
    Socket sock(AF_INET, SOCK_STREAM);
    sock.bind(Address::parse("127.0.0.1", 0));
    return sock;
}

}  // namespace

// -- basic connections -------------------------------------------------------------------

TEST_CASE("create_connection to a server by 127.0.0.1 and by localhost") {
    auto main = []() -> Coro<std::vector<std::string>> {
        auto& loop = asyncio::get_running_loop();
        auto server = co_await loop.create_server(make_echo, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        std::vector<std::string> replies;
        for (const char* host : {"127.0.0.1", "localhost"}) {
            auto proto = std::make_shared<Recorder>();
            auto factory = [&proto] { return proto; };
            auto [transport, protocol] = co_await loop.create_connection(factory, host, port);
            CHECK(protocol == proto.get());
            CHECK(transport == proto->transport);
            CHECK(proto->made == 1);  // connection_made ran before create_connection returned
            CHECK(transport->peername() == Address::parse("127.0.0.1", port));
            REQUIRE(transport->sockname());
            CHECK(transport->sockname()->host() == "127.0.0.1");
            CHECK(std::any_cast<int>(transport->get_extra_info("socket")) >= 0);
            CHECK_FALSE(transport->is_closing());
            replies.push_back(co_await ping(*proto));
            co_await close_and_wait(*proto);
            CHECK(proto->losses == 1);
            CHECK(proto->lost_error == nullptr);
        }
        server.close();
        co_await server.wait_closed();
        co_return replies;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"ping", "ping"});
}

TEST_CASE("create_connection to a closed port raises ECONNREFUSED naming the address") {
    auto main = []() -> Coro<void> {
        Socket closed = refusing_socket();
        const Address address = closed.getsockname();
        auto factory = [] { return std::make_shared<Recorder>(); };
        std::optional<std::system_error> error;
        try {
            co_await asyncio::get_running_loop().create_connection(factory, "127.0.0.1",
                                                                   address.port());
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code() == std::errc::connection_refused);
        CHECK_THAT(error->what(), Catch::Contains(address.to_string()));
    };
    run_guarded(main());
}

TEST_CASE("create_connection to an unknown host raises a gaierror") {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        std::optional<std::system_error> error;
        try {
            co_await asyncio::get_running_loop().create_connection(factory, "no-such-host.invalid",
                                                                   80);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code().category() == asyncio::gai_category());
        CHECK_THAT(error->what(), Catch::Contains("no-such-host.invalid"));
    };
    run_guarded(main());
}

/// What create_connection(host, port) did: "connected", "overflow_error",
/// or the error category and code.
Coro<std::string> connect_outcome(std::string host, int port) {
    auto factory = [] { return std::make_shared<Recorder>(); };
    try {
        auto [transport, protocol] =
            co_await asyncio::get_running_loop().create_connection(factory, std::move(host), port);
        transport->close();
        co_return "connected";
    } catch (const std::overflow_error& e) {
        co_return std::string("overflow_error: ") + e.what();
    } catch (const std::system_error& e) {
        co_return std::string(e.code().category().name()) + " " + std::to_string(e.code().value());
    }
}

TEST_CASE("create_connection refuses a port outside 0-65535 instead of wrapping it") {
    // glibc's getaddrinfo(3) read port 65536 + p as p: the connection went
    // to the listener below. CPython raises OverflowError.
    auto main = []() -> Coro<std::vector<std::string>> {
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(Address::parse("127.0.0.1", 0));
        listener.listen();
        const int port = listener.getsockname().port();
        std::vector<std::string> outcomes;
        outcomes.push_back(co_await connect_outcome("127.0.0.1", 65536 + port));
        outcomes.push_back(co_await connect_outcome("localhost", 65536 + port));
        outcomes.push_back(co_await connect_outcome("127.0.0.1", -1));
        outcomes.push_back(co_await connect_outcome("127.0.0.1", port));
        co_return outcomes;
    };
    const std::vector<std::string> outcomes = run_guarded(main());
    REQUIRE(outcomes.size() == 4);
    CHECK(outcomes[0].rfind("overflow_error: port must be 0-65535", 0) == 0);
    CHECK(outcomes[1].rfind("overflow_error: port must be 0-65535", 0) == 0);
    CHECK(outcomes[2] == "overflow_error: port must be 0-65535, got -1");
    CHECK(outcomes[3] == "connected");
}

TEST_CASE("create_connection to host \"\" raises a gaierror, not a loopback connection") {
    // CPython hands "" to getaddrinfo(3), which fails; only servers take ""
    // for every interface.
    auto main = []() -> Coro<std::string> {
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(Address::parse("127.0.0.1", 0));
        listener.listen();
        co_return co_await connect_outcome("", listener.getsockname().port());
    };
    CHECK(run_guarded(main()) == "getaddrinfo " + std::to_string(EAI_NONAME));
}

TEST_CASE("create_connection with local_addr binds the client socket") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto server = co_await loop.create_server(make_echo, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        Address local;
        {
            Socket probe(AF_INET, SOCK_STREAM);  // find_unused_port
            probe.bind(Address::parse("127.0.0.1", 0));
            local = probe.getsockname();
        }
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        const asyncio::ConnectionOptions opts{.local_addr = local};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, "127.0.0.1", port, opts);
        CHECK(transport->sockname() == local);
        const std::string reply = co_await ping(*proto);
        CHECK(reply == "ping");
        co_await close_and_wait(*proto);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("create_connection with a local_addr in use raises EADDRINUSE naming it") {
    // test_create_connection_local_addr_in_use: the bind error itself, not a
    // "multiple exceptions" summary.
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto server = co_await loop.create_server(make_echo, "127.0.0.1", 0);
        const Address address = server.sockets().front();
        auto factory = [] { return std::make_shared<Recorder>(); };
        std::optional<std::system_error> error;
        try {
            const asyncio::ConnectionOptions opts{.local_addr = address};
            co_await loop.create_connection(factory, "127.0.0.1", address.port(), opts);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code() == std::errc::address_in_use);
        CHECK_THAT(error->what(), Catch::Contains(address.to_string()));
        CHECK_THAT(error->what(), !Catch::Contains("Multiple exceptions"));
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("create_connection with a local_addr of another family fails") {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        std::optional<std::system_error> error;
        try {
            const asyncio::ConnectionOptions opts{.local_addr = Address::parse("::1", 0)};
            co_await asyncio::get_running_loop().create_connection(factory, "127.0.0.1", 80, opts);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK_THAT(error->what(), Catch::Contains("no matching local address"));
    };
    run_guarded(main());
}

// -- several addresses -------------------------------------------------------------------

TEST_CASE("create_connection tries every address in order until one accepts") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        pair.second.listen();  // the first address refuses
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port);
        CHECK(transport->peername() == pair.second_addr);
        auto [conn, peer] = co_await loop.sock_accept(pair.second);
        CHECK(transport->sockname() == peer);
        co_await close_and_wait(*proto);
    };
    run_guarded(main());
}

TEST_CASE("create_connection stops at the first address that accepts") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        pair.first.listen();
        pair.second.listen();
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port);
        CHECK(transport->peername() == pair.first_addr);
        co_await close_and_wait(*proto);
    };
    run_guarded(main());
}

TEST_CASE("create_connection's family option keeps other families out") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        Socket filler = co_await make_blackhole(pair.first);  // would hang if tried
        pair.second.listen();
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        const int family = pair.second_addr.family();
        const asyncio::ConnectionOptions opts{.family = family};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port, opts);
        CHECK(transport->peername() == pair.second_addr);
        co_await close_and_wait(*proto);
    };
    run_guarded(main());
}

TEST_CASE("when every address refuses, the error names them all") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        auto factory = [] { return std::make_shared<Recorder>(); };
        std::optional<std::system_error> error;
        try {
            co_await loop.create_connection(factory, std::nullopt, pair.port);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code() == std::errc::connection_refused);
        CHECK_THAT(error->what(), Catch::StartsWith("Multiple exceptions: "));
        CHECK_THAT(error->what(), Catch::Contains(pair.first_addr.to_string()));
        CHECK_THAT(error->what(), Catch::Contains(pair.second_addr.to_string()));

        // all_errors=True: an ExceptionGroup of every attempt, in order.
        std::vector<std::exception_ptr> errors;
        try {
            const asyncio::ConnectionOptions opts{.all_errors = true};
            co_await loop.create_connection(factory, std::nullopt, pair.port, opts);
        } catch (const asyncio::ExceptionGroup& group) {
            errors = group.exceptions();
        }
        REQUIRE(errors.size() == 2);
        for (std::size_t i = 0; i < errors.size(); ++i) {
            try {
                std::rethrow_exception(errors[i]);
            } catch (const std::system_error& e) {
                CHECK(e.code() == std::errc::connection_refused);
                const Address& expected = i == 0 ? pair.first_addr : pair.second_addr;
                CHECK_THAT(e.what(), Catch::Contains(expected.to_string()));
            }
        }
    };
    run_guarded(main());
}

// -- Happy Eyeballs ----------------------------------------------------------------------

TEST_CASE("Happy Eyeballs: a blackholed first address does not stop the second") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        Socket filler = co_await make_blackhole(pair.first);
        pair.second.listen();
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        const asyncio::ConnectionOptions opts{.happy_eyeballs_delay = 10ms, .interleave = 1};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port, opts);
        CHECK(transport->peername() == pair.second_addr);
        // The losing attempt (still waiting for the blackhole) was closed.
        CHECK(syn_sent_to(pair.port) == 0);
        auto [conn, peer] = co_await loop.sock_accept(pair.second);
        CHECK(transport->sockname() == peer);
        co_await close_and_wait(*proto);
    };
    run_guarded(main());
}

TEST_CASE("Happy Eyeballs: the first address wins when it answers") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        pair.first.listen();
        Socket filler = co_await make_blackhole(pair.second);
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        const asyncio::ConnectionOptions opts{.happy_eyeballs_delay = 1s};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port, opts);
        CHECK(transport->peername() == pair.first_addr);
        CHECK(syn_sent_to(pair.port) == 0);  // the second attempt never started
        co_await close_and_wait(*proto);
    };
    run_guarded(main());
}

TEST_CASE("Happy Eyeballs: a refused attempt starts the next one at once") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        LoopbackPair pair = co_await loopback_pair();
        pair.second.listen();
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        // A delay far longer than the test: only the refusal can start attempt two.
        const asyncio::ConnectionOptions opts{.happy_eyeballs_delay = 1h};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, std::nullopt, pair.port, opts);
        CHECK(transport->peername() == pair.second_addr);
        co_await close_and_wait(*proto);

        auto refused = [] { return std::make_shared<Recorder>(); };
        pair.second.close();
        std::optional<std::system_error> error;
        try {
            co_await loop.create_connection(refused, std::nullopt, pair.port, opts);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code() == std::errc::connection_refused);
    };
    run_guarded(main());
}

// -- cancellation ------------------------------------------------------------------------

namespace {

/// Connects to host:port, or to no host (loopback) when `host` is nullopt.
Coro<void> connect_and_forget(std::optional<std::string> host, int port,
                              asyncio::ConnectionOptions opts) {
    auto factory = [] { return std::make_shared<Recorder>(); };
    auto& loop = asyncio::get_running_loop();
    if (host) {
        co_await loop.create_connection(factory, std::move(*host), port, std::move(opts));
    } else {
        co_await loop.create_connection(factory, std::nullopt, port, std::move(opts));
    }
}

/// Waits (bounded) until `n` connection attempts towards `port` are in flight.
Coro<bool> attempts_in_flight(int port, int n) {
    for (int i = 0; i < 5000; ++i) {
        if (syn_sent_to(port) == n) co_return true;
        co_await asyncio::sleep(1ms);
    }
    co_return false;
}

}  // namespace

TEST_CASE("cancelling create_connection closes the socket in flight") {
    auto main = []() -> Coro<void> {
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(Address::parse("127.0.0.1", 0));
        Socket filler = co_await make_blackhole(listener);
        const int port = listener.getsockname().port();
        auto task = asyncio::create_task(connect_and_forget("127.0.0.1", port, {}));
        const bool started = co_await attempts_in_flight(port, 1);
        REQUIRE(started);
        task.cancel();
        bool cancelled = false;
        try {
            co_await task;
        } catch (const asyncio::CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
        CHECK(syn_sent_to(port) == 0);
    };
    run_guarded(main());
}

TEST_CASE("cancelling a Happy Eyeballs race closes every socket in flight") {
    auto main = []() -> Coro<void> {
        LoopbackPair pair = co_await loopback_pair();
        Socket filler1 = co_await make_blackhole(pair.first);
        Socket filler2 = co_await make_blackhole(pair.second);
        auto task = asyncio::create_task(
            connect_and_forget(std::nullopt, pair.port, {.happy_eyeballs_delay = 1ms}));
        const bool started = co_await attempts_in_flight(pair.port, 2);
        REQUIRE(started);
        task.cancel();
        bool cancelled = false;
        try {
            co_await task;
        } catch (const asyncio::CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
        // Closed by the time the cancellation reached the caller.
        CHECK(syn_sent_to(pair.port) == 0);
    };
    run_guarded(main());
}

// -- Unix sockets and accepted sockets ---------------------------------------------------

TEST_CASE("create_unix_connection to a Unix server", "[posix]") {
    // Unix sockets: POSIX only, as in CPython (no AF_UNIX on Windows there).
#ifndef _WIN32
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        const std::string path =
            "/tmp/asyncio-test-create-conn-" + std::to_string(::getpid()) + ".sock";
        auto server = co_await loop.create_unix_server(make_echo, path);
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        auto [transport, protocol] = co_await loop.create_unix_connection(factory, path);
        CHECK(transport->peername() == Address::unix_path(path));
        const std::string reply = co_await ping(*proto);
        co_await close_and_wait(*proto);
        server.close();
        co_await server.wait_closed();

        std::optional<std::system_error> error;
        try {
            co_await loop.create_unix_connection(factory, path);
        } catch (const std::system_error& e) {
            error = e;
        }
        REQUIRE(error);
        CHECK(error->code() == std::errc::no_such_file_or_directory);
        co_return reply;
    };
    CHECK(run_guarded(main()) == "ping");
#endif
}

TEST_CASE("connect_accepted_socket wraps one end of a socketpair") {
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        const auto fds = asyncio_test::socket_pair();
        Socket mine = Socket::from_fd(fds[0]);
        Socket theirs = Socket::from_fd(fds[1]);
        auto proto = std::make_shared<Recorder>();
        auto factory = [&proto] { return proto; };
        auto [transport, protocol] =
            co_await loop.connect_accepted_socket(factory, std::move(theirs));
        CHECK(proto->made == 1);
        proto->want = 5;
        co_await loop.sock_sendall(mine, "hello");
        co_await proto->got;
        transport->write("world");
        std::string reply = co_await loop.sock_recv(mine, 5);
        mine.shutdown(SHUT_WR);  // EOF: the protocol returns false, the transport closes
        co_await proto->lost;
        CHECK(proto->eofs == 1);
        CHECK(proto->lost_error == nullptr);
        const std::string eof = co_await loop.sock_recv(mine, 5);
        CHECK(eof.empty());
        co_return proto->data + " " + reply;
    };
    CHECK(run_guarded(main()) == "hello world");
}

TEST_CASE("connect_accepted_socket with a socket from sock_accept") {
    auto main = []() -> Coro<std::string> {
        auto& loop = asyncio::get_running_loop();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(Address::parse("127.0.0.1", 0));
        listener.listen();
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, listener.getsockname());
        auto [conn, peer] = co_await loop.sock_accept(listener);
        auto factory = [] { return std::make_shared<Echo>(); };
        auto [transport, protocol] =
            co_await loop.connect_accepted_socket(factory, std::move(conn));
        CHECK(transport->peername() == peer);
        co_await loop.sock_sendall(client, "echo");
        std::string reply = co_await loop.sock_recv(client, 4);
        transport->close();
        const std::string eof = co_await loop.sock_recv(client, 4);
        CHECK(eof.empty());
        co_return reply;
    };
    CHECK(run_guarded(main()) == "echo");
}

TEST_CASE("connect_accepted_socket refuses a datagram socket") {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        Socket udp(AF_INET, SOCK_DGRAM);
        co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(udp));
    };
    CHECK_THROWS_AS(run_guarded(main()), std::invalid_argument);
}

// -- open_connection options -------------------------------------------------------------

TEST_CASE("open_connection passes limit and local_addr through") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto server = co_await loop.create_server(make_echo, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        Address local;
        {
            Socket probe(AF_INET, SOCK_STREAM);
            probe.bind(Address::parse("127.0.0.1", 0));
            local = probe.getsockname();
        }
        const asyncio::OpenOptions opts{.limit = 4, .local_addr = local};
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port, opts);
        CHECK(writer.sockname() == local);
        CHECK(reader.limit() == 4);
        writer.write("abcdefgh\n");
        bool overrun = false;
        try {
            co_await reader.readuntil("\n");
        } catch (const asyncio::LimitOverrunError&) {
            overrun = true;
        }
        CHECK(overrun);
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("open_connection with happy_eyeballs_delay races the addresses") {
    auto main = []() -> Coro<void> {
        LoopbackPair pair = co_await loopback_pair();
        Socket filler = co_await make_blackhole(pair.first);
        pair.second.listen();
        const asyncio::OpenOptions opts{.happy_eyeballs_delay = 10ms};
        auto [reader, writer] = co_await asyncio::open_connection(std::nullopt, pair.port, opts);
        CHECK(writer.peername() == pair.second_addr);
        writer.close();
        co_await writer.wait_closed();
    };
    run_guarded(main());
}
