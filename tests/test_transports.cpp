// The stream transport: ports of CPython's test_selector_events.py
// SelectorSocketTransportTests and SelectorSocketTransportBufferedProtocolTests
// (callback order, write buffering and water marks, pause/resume reading,
// write_eof, close flushing, abort, writes after close, connection errors,
// BufferedProtocol, get_extra_info, set_protocol, failing callbacks), run on
// real socketpairs and loopback connections instead of mocked sockets.
#ifdef __linux__
#include <linux/tcp.h>
#endif

#include <any>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"
#include "xor_layer.hpp"

using asyncio_test::ends_cancelled;
using asyncio_test::iterations;
using asyncio_test::run_guarded;
using asyncio_test::xored;
using asyncio_test::XorLayer;

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::Socket;
using asyncio::Transport;

namespace {

/// Records every callback, in order; waiters resume on any of them.
struct Recorder : asyncio::Protocol {
    Transport* transport = nullptr;
    // Keeps the transport valid after connection_lost, for the checks that follow.
    std::shared_ptr<asyncio::BaseTransport> keep;
    std::vector<std::string> events;
    std::string received;
    bool keep_open_on_eof = false;
    bool got_eof = false;
    bool lost = false;
    std::exception_ptr error;
    std::size_t buffered_at_lost = 0;
    int paused = 0;
    int resumed = 0;
    asyncio::Event changed;

    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<Transport&>(t);
        keep = t.shared_from_this();
        events.push_back("made");
        changed.set();
    }
    void data_received(std::string_view data) override {
        if (events.empty() || events.back() != "data") events.push_back("data");
        received += data;
        changed.set();
    }
    bool eof_received() override {
        events.push_back("eof");
        got_eof = true;
        changed.set();
        return keep_open_on_eof;
    }
    void connection_lost(std::exception_ptr e) override {
        events.push_back("lost");
        lost = true;
        error = e;
        buffered_at_lost = transport->get_write_buffer_size();
        changed.set();
    }
    void pause_writing() override {
        ++paused;
        changed.set();
    }
    void resume_writing() override {
        ++resumed;
        changed.set();
    }

    Coro<void> next() {
        changed.clear();
        co_await changed.wait();
    }
    Coro<void> wait_bytes(std::size_t n) {
        while (received.size() < n && !lost)
            co_await next();
    }
    Coro<void> wait_eof() {
        while (!got_eof && !lost)
            co_await next();
    }
    Coro<void> wait_lost() {
        while (!lost)
            co_await next();
    }
    Coro<void> wait_paused() {
        while (paused == 0 && !lost)
            co_await next();
    }
    Coro<void> wait_resumed() {
        while (resumed == 0 && !lost)
            co_await next();
    }
};

/// A connected stream pair (AF_UNIX; loopback TCP on Windows): (transport
/// side, raw peer).
std::pair<Socket, Socket> socket_pair() {
    const auto fds = asyncio_test::socket_pair();
    return {Socket::from_fd(fds[0]), Socket::from_fd(fds[1])};
}

/// A transport on one end of a socketpair, with a Recorder; the raw peer in `peer`.
template <class P = Recorder>
Coro<std::shared_ptr<P>> make_transport(Socket& peer) {
    auto [mine, theirs] = socket_pair();
    peer = std::move(theirs);
    auto protocol = std::make_shared<P>();
    auto factory = [protocol] { return protocol; };
    co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(mine));
    co_return protocol;
}

/// Reads from `sock` until `n` bytes arrived or EOF.
Coro<std::string> recv_bytes(Socket& sock, std::size_t n) {
    std::string out;
    while (out.size() < n) {
        std::string part = co_await asyncio::get_running_loop().sock_recv(sock, n - out.size());
        if (part.empty()) break;
        out += part;
    }
    co_return out;
}

Coro<std::string> recv_to_eof(Socket& sock) {
    std::string out;
    for (;;) {
        std::string part = co_await asyncio::get_running_loop().sock_recv(sock, 256 * 1024);
        if (part.empty()) co_return out;
        out += part;
    }
}

/// Deterministic non-repeating bytes, so that loss or reordering shows.
std::string pattern(std::size_t n, unsigned seed = 1) {
    std::string out(n, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x = x * 1664525u + 1013904223u;
        out[i] = static_cast<char>(x >> 24);
    }
    return out;
}

}  // namespace

// -- callback order ---------------------------------------------------------------------

TEST_CASE("connection_made, data_received, eof_received, connection_lost arrive in order") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        CHECK(proto->events == std::vector<std::string>{"made"});
        CHECK(proto->transport->is_reading());
        CHECK_FALSE(proto->transport->is_closing());
        co_await asyncio::get_running_loop().sock_sendall(peer, "hello");
        co_await proto->wait_bytes(5);
        peer.shutdown(SHUT_WR);
        co_await proto->wait_lost();
        CHECK(proto->received == "hello");
        CHECK(proto->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        CHECK(proto->error == nullptr);
        // eof_received returned false: the transport closed itself, and the peer sees EOF.
        const std::string rest = co_await recv_to_eof(peer);
        CHECK(rest.empty());
    };
    run_guarded(main());
}

TEST_CASE("create_server and create_connection: callbacks on both sides over TCP") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::vector<std::shared_ptr<Recorder>> accepted;
        auto server_factory = [&accepted] {
            auto p = std::make_shared<Recorder>();
            p->keep_open_on_eof = true;  // half-close: reply after the client's EOF
            accepted.push_back(p);
            return p;
        };
        auto server = co_await loop.create_server(server_factory, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        std::shared_ptr<Recorder> made;  // outlives connection_lost, for the checks
        auto client_factory = [&made] { return made = std::make_shared<Recorder>(); };
        auto [transport, client] =
            co_await loop.create_connection(client_factory, "127.0.0.1", port);
        CHECK(client->events == std::vector<std::string>{"made"});
        CHECK(client->transport == transport);
        transport->write("ping");
        CHECK(transport->can_write_eof());
        transport->write_eof();
        CHECK_THROWS_AS(transport->write("late"), asyncio::RuntimeError);
        while (accepted.empty())
            co_await asyncio::sleep(0);
        auto srv = accepted.front();
        co_await srv->wait_eof();
        CHECK(srv->received == "ping");
        CHECK_FALSE(srv->transport->is_closing());  // eof_received returned true
        srv->transport->write("pong");
        srv->transport->close();
        co_await client->wait_lost();
        co_await srv->wait_lost();
        CHECK(client->received == "pong");
        CHECK(client->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        CHECK(srv->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        CHECK(client->error == nullptr);
        CHECK(srv->error == nullptr);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

// -- writing -----------------------------------------------------------------------------

TEST_CASE("set_write_buffer_limits and get_write_buffer_limits follow Python's rules") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        using Limits = std::pair<std::size_t, std::size_t>;
        CHECK(t.get_write_buffer_limits() == Limits{16 * 1024, 64 * 1024});
        t.set_write_buffer_limits(128);
        CHECK(t.get_write_buffer_limits() == Limits{32, 128});
        t.set_write_buffer_limits(std::nullopt, 100);
        CHECK(t.get_write_buffer_limits() == Limits{100, 400});
        t.set_write_buffer_limits(0, 0);
        CHECK(t.get_write_buffer_limits() == Limits{0, 0});
        CHECK_THROWS_AS(t.set_write_buffer_limits(10, 20), std::invalid_argument);
        CHECK(t.get_write_buffer_limits() == Limits{0, 0});
        CHECK(t.get_write_buffer_size() == 0);
        t.abort();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("a peer that does not read pauses writing; reading resumes it, nothing lost") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        t.set_write_buffer_limits(64 * 1024, 16 * 1024);
        std::string sent;
        // The peer does not read: once the kernel buffers are full, writes pile up.
        for (int i = 0; proto->paused == 0; ++i) {
            REQUIRE(i < 1000);
            std::string block = pattern(16 * 1024, static_cast<unsigned>(i));
            t.write(block);
            sent += block;
            co_await asyncio::sleep(0);
        }
        CHECK(proto->paused == 1);
        CHECK(proto->resumed == 0);
        CHECK(t.get_write_buffer_size() > 64 * 1024);
        // Writing more while paused only buffers; pause_writing is not called twice.
        const std::string more = pattern(100 * 1024, 99);
        t.write(more);
        sent += more;
        CHECK(proto->paused == 1);
        CHECK(t.get_write_buffer_size() > 164 * 1024);
        // The peer reads everything: the buffer drains below the low mark.
        const std::string got = co_await recv_bytes(peer, sent.size());
        co_await proto->wait_resumed();
        CHECK(proto->resumed == 1);
        CHECK(got.size() == sent.size());
        CHECK(got == sent);
        CHECK(t.get_write_buffer_size() == 0);
        t.close();
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("lowering the high-water mark below the buffered size pauses at once") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        peer.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096);
        std::size_t sent = 0;
        while (t.get_write_buffer_size() == 0) {
            REQUIRE(sent < (64u << 20));
            t.write(std::string(8192, 'w'));
            sent += 8192;
        }
        CHECK(proto->paused == 0);
        t.set_write_buffer_limits(1);
        CHECK(proto->paused == 1);
        const std::string got = co_await recv_bytes(peer, sent);
        CHECK(got.size() == sent);
        co_await proto->wait_resumed();
        t.abort();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("an empty write does nothing") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        proto->transport->write("");
        CHECK(proto->transport->get_write_buffer_size() == 0);
        proto->transport->write("x");
        proto->transport->close();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "x");
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("writelines sends the lines in order") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        std::vector<std::string> lines{"one ", "two ", "three"};
        proto->transport->writelines(lines);
        proto->transport->close();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "one two three");
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

// -- reading -----------------------------------------------------------------------------

TEST_CASE("pause_reading stops data_received until resume_reading; nothing is lost") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        co_await loop.sock_sendall(peer, "before");
        co_await proto->wait_bytes(6);

        t.pause_reading();
        CHECK_FALSE(t.is_reading());
        t.pause_reading();  // no-op, as in 3.13
        CHECK_FALSE(t.is_reading());
        co_await loop.sock_sendall(peer, "while paused");
        // A second connection as a marker: when its data arrives, the paused
        // socket's data (sent before) has long been readable.
        Socket marker_peer;
        auto marker = co_await make_transport(marker_peer);
        co_await loop.sock_sendall(marker_peer, "m");
        co_await marker->wait_bytes(1);
        co_await iterations(5);
        CHECK(proto->received == "before");

        t.resume_reading();
        CHECK(t.is_reading());
        t.resume_reading();  // no-op
        co_await proto->wait_bytes(18);
        CHECK(proto->received == "beforewhile paused");

        t.close();
        CHECK_FALSE(t.is_reading());
        marker->transport->close();
        co_await proto->wait_lost();
        co_await marker->wait_lost();
    };
    run_guarded(main());
}

/// Pauses reading at its first data.
struct PausesAtOnce : Recorder {
    void data_received(std::string_view data) override {
        Recorder::data_received(data);
        transport->pause_reading();
    }
};

TEST_CASE("many paused transports with data waiting do not starve the others") {
    // On io_uring, paused connections whose data keeps arriving hold
    // provided buffers until their multishot receive is stopped: 200 of them
    // take more than the ring has, so reads fall back to other buffers. On
    // any backend the active connection still echoes, and every paused one
    // gets all its data, in order, once it resumes.
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        constexpr int kPaused = 200;
        constexpr std::size_t kEach = 300 * 1024;
        std::vector<Socket> peers(kPaused);
        std::vector<std::shared_ptr<PausesAtOnce>> paused;
        std::vector<asyncio::Task<void>> senders;
        std::vector<std::string> payloads;
        for (int i = 0; i < kPaused; ++i) {
            paused.push_back(co_await make_transport<PausesAtOnce>(peers[i]));
            std::string payload(kEach, '\0');
            for (std::size_t j = 0; j < kEach; ++j)
                payload[j] = static_cast<char>('a' + (i + j / 4096) % 26);
            payloads.push_back(std::move(payload));
        }
        for (int i = 0; i < kPaused; ++i)
            senders.push_back(loop.create_task(loop.sock_sendall(peers[i], payloads[i])));
        for (auto& p : paused)
            co_await p->wait_bytes(1);

        Socket active_peer;
        auto active = co_await make_transport(active_peer);
        for (int i = 0; i < 20; ++i) {
            const std::string ping = "ping " + std::to_string(i);
            // Counted before sending: on a completion backend the ping may
            // arrive before sock_sendall returns.
            const std::size_t expected = active->received.size() + ping.size();
            co_await loop.sock_sendall(active_peer, ping);
            co_await active->wait_bytes(expected);
        }
        CHECK(active->received.size() == 20 * 6 + 10);

        for (auto& p : paused)
            p->transport->resume_reading();
        for (int i = 0; i < kPaused; ++i) {
            // PausesAtOnce pauses again at each delivery: resume until all is in.
            while (paused[i]->received.size() < kEach && !paused[i]->lost) {
                const std::size_t had = paused[i]->received.size();
                paused[i]->transport->resume_reading();
                co_await paused[i]->wait_bytes(had + 1);
            }
            CHECK(paused[i]->received == payloads[i]);
        }
        for (auto& sender : senders)
            co_await sender;
        for (auto& p : paused)
            p->transport->close();
        active->transport->close();
        for (auto& p : paused)
            co_await p->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("an EOF that arrives while reading is paused waits for resume_reading") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport(peer);
        co_await loop.sock_sendall(peer, "x");
        co_await proto->wait_bytes(1);  // a new read is now in flight
        proto->transport->pause_reading();
        peer.shutdown(SHUT_WR);
        Socket marker_peer;
        auto marker = co_await make_transport(marker_peer);
        co_await loop.sock_sendall(marker_peer, "m");
        co_await marker->wait_bytes(1);
        co_await iterations(5);
        CHECK_FALSE(proto->got_eof);
        CHECK_FALSE(proto->lost);
        CHECK_FALSE(proto->transport->is_closing());
        proto->transport->resume_reading();
        co_await proto->wait_lost();
        CHECK(proto->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        marker->transport->close();
        co_await marker->wait_lost();
    };
    run_guarded(main());
}

/// Pauses reading after every chunk and resumes it from the loop.
struct Toggler : Recorder {
    int pauses = 0;
    void data_received(std::string_view data) override {
        Recorder::data_received(data);
        transport->pause_reading();
        ++pauses;
        auto* t = transport;
        asyncio::get_running_loop().call_soon([t] { t->resume_reading(); });
    }
};

TEST_CASE("pausing and resuming reading on every chunk of a large transfer loses nothing") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport<Toggler>(peer);
        const std::string data = pattern(4 << 20);
        co_await loop.sock_sendall(peer, data);
        peer.shutdown(SHUT_WR);
        co_await proto->wait_lost();
        CHECK(proto->received.size() == data.size());
        CHECK(proto->received == data);
        CHECK(proto->pauses >= 1);
        CHECK(proto->got_eof);
    };
    run_guarded(main());
}

TEST_CASE("pause_reading inside connection_made: no data until resumed") {
    struct PausesAtOnce : Recorder {
        void connection_made(asyncio::BaseTransport& t) override {
            Recorder::connection_made(t);
            transport->pause_reading();
        }
    };
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport<PausesAtOnce>(peer);
        CHECK_FALSE(proto->transport->is_reading());
        co_await loop.sock_sendall(peer, "data");
        peer.shutdown(SHUT_WR);
        Socket marker_peer;
        auto marker = co_await make_transport(marker_peer);
        co_await loop.sock_sendall(marker_peer, "m");
        co_await marker->wait_bytes(1);
        co_await iterations(5);
        CHECK(proto->received.empty());
        CHECK_FALSE(proto->got_eof);
        proto->transport->resume_reading();
        co_await proto->wait_lost();
        CHECK(proto->received == "data");
        CHECK(proto->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        marker->transport->close();
        co_await marker->wait_lost();
    };
    run_guarded(main());
}

// -- write_eof and half-close -----------------------------------------------------------

TEST_CASE("write_eof: the peer sees EOF after the data and can still send back") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        CHECK(t.can_write_eof());
        t.write("data");
        t.write_eof();
        t.write_eof();  // twice is fine
        CHECK_FALSE(t.is_closing());
        CHECK_THROWS_AS(t.write("more"), asyncio::RuntimeError);
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "data");
        co_await loop.sock_sendall(peer, "reply");
        co_await proto->wait_bytes(5);
        CHECK(proto->received == "reply");
        peer.close();
        co_await proto->wait_lost();
        CHECK(proto->events == std::vector<std::string>{"made", "data", "eof", "lost"});
    };
    run_guarded(main());
}

TEST_CASE("write_eof with buffered data shuts down only after the buffer is flushed") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        std::string sent;
        for (unsigned i = 0; t.get_write_buffer_size() == 0; ++i) {
            REQUIRE(i < 10000);
            std::string block = pattern(32 * 1024, i);
            t.write(block);
            sent += block;
        }
        t.write_eof();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.size() == sent.size());
        CHECK(got == sent);
        CHECK(t.get_write_buffer_size() == 0);
        t.close();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("eof_received returning true keeps the transport open for writing") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        proto->keep_open_on_eof = true;
        peer.shutdown(SHUT_WR);
        co_await proto->wait_eof();
        co_await iterations(3);
        CHECK_FALSE(proto->lost);
        CHECK_FALSE(proto->transport->is_closing());
        proto->transport->write("after eof");
        proto->transport->close();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "after eof");
        co_await proto->wait_lost();
        CHECK(proto->events == std::vector<std::string>{"made", "eof", "lost"});
    };
    run_guarded(main());
}

// -- close and abort ---------------------------------------------------------------------

TEST_CASE("close flushes the write buffer before connection_lost") {
    auto main = []() -> Coro<void> {
        auto [mine, theirs] = socket_pair();
        Socket peer = std::move(theirs);
        // Small socket buffers, so that the kernel cannot take all of `data`
        // at once: a loopback TCP pair (Windows') would hold megabytes.
        mine.setsockopt(SOL_SOCKET, SO_SNDBUF, 64 * 1024);
        peer.setsockopt(SOL_SOCKET, SO_RCVBUF, 64 * 1024);
        auto proto = std::make_shared<Recorder>();
        auto factory = [proto] { return proto; };
        co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(mine));
        Transport& t = *proto->transport;
        const std::string data = pattern(2 << 20);
        t.write(data);
        REQUIRE(t.get_write_buffer_size() > 0);  // the peer does not read yet
        t.close();
        CHECK(t.is_closing());
        CHECK_FALSE(t.is_reading());
        t.close();  // twice is fine
        co_await iterations(3);
        CHECK_FALSE(proto->lost);  // still flushing
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.size() == data.size());
        CHECK(got == data);
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
        CHECK(proto->buffered_at_lost == 0);
        CHECK(proto->events == std::vector<std::string>{"made", "lost"});
    };
    run_guarded(main());
}

TEST_CASE("abort drops the write buffer and calls connection_lost") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        const std::string data = pattern(4 << 20);
        t.write(data);
        REQUIRE(t.get_write_buffer_size() > 0);
        t.abort();
        CHECK(t.is_closing());
        CHECK(t.get_write_buffer_size() == 0);
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
        CHECK(proto->events == std::vector<std::string>{"made", "lost"});
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.size() < data.size());
        CHECK(got == data.substr(0, got.size()));
    };
    run_guarded(main());
}

TEST_CASE("connection_lost is called once, from the loop, after close") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        proto->transport->close();
        CHECK_FALSE(proto->lost);  // not from inside close()
        proto->transport->abort();
        proto->transport->close();
        co_await proto->wait_lost();
        co_await iterations(3);
        CHECK(proto->events == std::vector<std::string>{"made", "lost"});
    };
    run_guarded(main());
}

TEST_CASE("writes after the connection is lost are ignored; the fifth is logged") {
    auto main = []() -> Coro<void> {
        asyncio_test::CapturedLog log;
        Socket peer;
        auto proto = co_await make_transport(peer);
        proto->transport->close();
        co_await proto->wait_lost();
        Transport& t = *proto->transport;
        for (int i = 0; i < 4; ++i)
            t.write("ignored");
        CHECK_FALSE(log.contains("socket.send() raised exception."));
        t.write("ignored");
        CHECK(log.contains("socket.send() raised exception."));
        CHECK(t.get_write_buffer_size() == 0);
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.empty());
    };
    run_guarded(main());
}

TEST_CASE("writing to a peer that reset the connection: connection_lost with the OS error") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(asyncio::Address::parse("127.0.0.1", 0));
        listener.listen();
        std::shared_ptr<Recorder> made;  // outlives connection_lost, for the checks
        auto factory = [&made] { return made = std::make_shared<Recorder>(); };
        const int port = listener.getsockname().port();
        auto connecting = loop.create_connection(factory, "127.0.0.1", port);
        auto accepting = loop.sock_accept(listener);
        auto [transport, proto] = co_await connecting;
        auto [conn, addr] = co_await accepting;
        // Reading is paused so that the error shows on the write path.
        transport->pause_reading();
        const ::linger reset{1, 0};
        REQUIRE(asyncio_test::set_socket_option(conn.fileno(), SOL_SOCKET, SO_LINGER, &reset,
                                                sizeof reset) == 0);
        conn.close();  // RST
        const std::string block(64 * 1024, 'r');
        for (int i = 0; i < 1000 && !proto->lost; ++i) {
            transport->write(block);
            co_await asyncio::sleep(0);
        }
        co_await proto->wait_lost();
        REQUIRE(proto->error != nullptr);
        std::error_code code;
        try {
            std::rethrow_exception(proto->error);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK((code == std::errc::connection_reset || code == std::errc::broken_pipe));
        CHECK(transport->is_closing());
        CHECK(reports.messages.empty());  // OS errors are not reported, as in CPython
        transport->write("ignored");
    };
    run_guarded(main());
}

TEST_CASE("a reset while reading gives connection_lost with ECONNRESET") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(asyncio::Address::parse("127.0.0.1", 0));
        listener.listen();
        std::shared_ptr<Recorder> made;  // outlives connection_lost, for the checks
        auto factory = [&made] { return made = std::make_shared<Recorder>(); };
        auto connecting =
            loop.create_connection(factory, "127.0.0.1", listener.getsockname().port());
        auto accepting = loop.sock_accept(listener);
        auto [transport, proto] = co_await connecting;
        auto [conn, addr] = co_await accepting;
        const ::linger reset{1, 0};
        REQUIRE(asyncio_test::set_socket_option(conn.fileno(), SOL_SOCKET, SO_LINGER, &reset,
                                                sizeof reset) == 0);
        conn.close();
        co_await proto->wait_lost();
        std::error_code code;
        try {
            std::rethrow_exception(proto->error);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::connection_reset);
        CHECK(proto->events == std::vector<std::string>{"made", "lost"});
    };
    run_guarded(main());
}

// -- BufferedProtocol -----------------------------------------------------------------------

/// Lends small buffers, of a size that varies, and checks the transport uses them right.
struct SmallBuffers : asyncio::BufferedProtocol {
    Transport* transport = nullptr;
    std::vector<std::byte> buffer;
    std::string received;
    std::size_t lent = 0;
    int get_buffer_calls = 0;
    bool lost = false;
    bool got_eof = false;
    bool misuse = false;
    std::exception_ptr error;
    asyncio::Event changed;

    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<Transport&>(t);
    }
    std::span<std::byte> get_buffer(std::size_t sizehint) override {
        if (sizehint == 0) misuse = true;
        lent = 1 + static_cast<std::size_t>(get_buffer_calls++ % 7) * 150;
        buffer.assign(lent, std::byte{0});
        return {buffer.data(), buffer.size()};
    }
    void buffer_updated(std::size_t n) override {
        if (n == 0 || n > lent) misuse = true;
        received.append(reinterpret_cast<const char*>(buffer.data()), n);
        changed.set();
    }
    bool eof_received() override {
        got_eof = true;
        return false;
    }
    void connection_lost(std::exception_ptr e) override {
        lost = true;
        error = e;
        changed.set();
    }
    Coro<void> wait_lost() {
        while (!lost) {
            changed.clear();
            co_await changed.wait();
        }
    }
    Coro<void> wait_bytes(std::size_t n) {
        while (received.size() < n && !lost) {
            changed.clear();
            co_await changed.wait();
        }
    }
};

TEST_CASE("BufferedProtocol with small lent buffers receives a large transfer intact") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto proto = co_await make_transport<SmallBuffers>(peer);
        const std::string data = pattern(1 << 20, 7);
        co_await loop.sock_sendall(peer, data);
        peer.shutdown(SHUT_WR);
        co_await proto->wait_lost();
        CHECK_FALSE(proto->misuse);
        CHECK(proto->got_eof);
        CHECK(proto->error == nullptr);
        CHECK(proto->received.size() == data.size());
        CHECK(proto->received == data);
        CHECK(proto->get_buffer_calls > 1000);
    };
    run_guarded(main());
}

struct FailingUpdates : SmallBuffers {
    void buffer_updated(std::size_t) override { throw std::runtime_error("buffer_updated failed"); }
};

TEST_CASE("a throwing buffer_updated is a fatal error") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        Socket peer;
        auto proto = co_await make_transport<FailingUpdates>(peer);
        co_await loop.sock_sendall(peer, "data");
        co_await proto->wait_lost();
        CHECK(reports.messages ==
              std::vector<std::string>{"Fatal error: protocol.buffer_updated() call failed."});
        CHECK(proto->error == reports.contexts.front().exception);
    };
    run_guarded(main());
}

struct FailingBuffers : SmallBuffers {
    bool empty = false;
    std::span<std::byte> get_buffer(std::size_t) override {
        if (empty) return {};
        throw std::runtime_error("no buffer");
    }
};

TEST_CASE("get_buffer failing or returning an empty buffer is a fatal error") {
    auto main = [](bool empty) -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        const auto fds = asyncio_test::socket_pair();
        Socket peer = Socket::from_fd(fds[1]);
        auto proto = std::make_shared<FailingBuffers>();
        proto->empty = empty;
        auto factory = [proto] { return proto; };
        co_await loop.connect_accepted_socket(factory, Socket::from_fd(fds[0]));
        // A readiness backend asks for the buffer before it reads (and may
        // have closed already: the send may fail); a completion backend
        // once data came (as CPython's proactor).
        asyncio_test::raw_send(peer.fileno(), "x", 1);
        co_await proto->wait_lost();
        CHECK(reports.contains("Fatal error: protocol.get_buffer() call failed."));
        REQUIRE(proto->error != nullptr);
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.empty());
    };
    SECTION("throws") {
        run_guarded(main(false));
    }
    SECTION("empty") {
        run_guarded(main(true));
    }
}

// -- extra info, set_protocol ------------------------------------------------------------

TEST_CASE("get_extra_info: peername, sockname, socket") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::shared_ptr<Recorder> accepted;
        auto server_factory = [&accepted] { return accepted = std::make_shared<Recorder>(); };
        auto server = co_await loop.create_server(server_factory, "127.0.0.1", 0);
        const asyncio::Address server_addr = server.sockets().front();
        std::shared_ptr<Recorder> made;  // outlives connection_lost, for the checks
        auto client_factory = [&made] { return made = std::make_shared<Recorder>(); };
        auto [transport, client] =
            co_await loop.create_connection(client_factory, "127.0.0.1", server_addr.port());
        while (!accepted)
            co_await asyncio::sleep(0);
        const auto peername =
            std::any_cast<asyncio::Address>(transport->get_extra_info("peername"));
        const auto sockname =
            std::any_cast<asyncio::Address>(transport->get_extra_info("sockname"));
        CHECK(peername == server_addr);
        CHECK(transport->peername() == server_addr);
        CHECK(sockname.host() == "127.0.0.1");
        CHECK(transport->sockname() == sockname);
        CHECK(accepted->transport->peername() == sockname);
        CHECK(accepted->transport->sockname() == server_addr);
        const int fd = std::any_cast<int>(transport->get_extra_info("socket"));
        CHECK(fd >= 0);
        ::sockaddr_storage storage{};
        ::socklen_t length = sizeof storage;
        REQUIRE(::getsockname(fd, reinterpret_cast<::sockaddr*>(&storage), &length) == 0);
        CHECK(asyncio::Address::from_sockaddr(reinterpret_cast<::sockaddr*>(&storage), length) ==
              sockname);
        CHECK_FALSE(transport->get_extra_info("no such thing").has_value());
        CHECK_FALSE(transport->get_extra_info("pipe").has_value());
        transport->close();
        co_await client->wait_lost();
        co_await accepted->wait_lost();
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

/// Hands the connection over to `next` when it sees "switch\n".
struct Switcher : Recorder {
    std::shared_ptr<asyncio::BaseProtocol> next;
    void data_received(std::string_view data) override {
        Recorder::data_received(data);
        if (received.find("switch\n") != std::string::npos) transport->set_protocol(next);
    }
};

TEST_CASE("set_protocol switches protocols mid-stream") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto first = co_await make_transport<Switcher>(peer);
        auto second = std::make_shared<Recorder>();
        auto third = std::make_shared<SmallBuffers>();
        second->transport = first->transport;
        third->transport = first->transport;
        first->next = second;
        co_await loop.sock_sendall(peer, "switch\n");
        co_await first->wait_bytes(7);
        CHECK(first->transport->get_protocol() == second);
        co_await loop.sock_sendall(peer, "to the second");
        co_await second->wait_bytes(13);
        CHECK(first->received == "switch\n");
        CHECK(second->received == "to the second");
        // From a Protocol to a BufferedProtocol and back, each time with a
        // read in flight into the previous protocol's buffer.
        auto fourth = std::make_shared<Recorder>();
        fourth->transport = first->transport;
        first->transport->set_protocol(third);
        co_await loop.sock_sendall(peer, "to the third");
        co_await third->wait_bytes(12);
        first->transport->set_protocol(fourth);
        co_await loop.sock_sendall(peer, "to the fourth");
        peer.shutdown(SHUT_WR);
        co_await fourth->wait_lost();
        CHECK(third->received == "to the third");
        CHECK(fourth->received == "to the fourth");
        CHECK(fourth->events == std::vector<std::string>{"data", "eof", "lost"});
        CHECK(second->received == "to the second");
        CHECK_FALSE(first->lost);
        CHECK_FALSE(second->lost);
        CHECK_FALSE(third->lost);
        CHECK_FALSE(third->misuse);
    };
    run_guarded(main());
}

// -- layering a protocol over a transport (loop.start_tls without TLS) ----------------------

TEST_CASE("insert_layer: the layer sees connection_made first, then every byte that follows") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto app = co_await make_transport(peer);
        co_await loop.sock_sendall(peer, "plain");
        co_await app->wait_bytes(5);
        // The peer's key and first data arrive in the loop iteration in which
        // the layer goes in, their read completing right after this task
        // runs: they must still reach the layer after its connection_made.
        const std::string hello = "p" + xored("secret", 'p');
        REQUIRE(asyncio_test::raw_send(peer.fileno(), hello.data(), hello.size()) ==
                static_cast<long long>(hello.size()));
        co_await asyncio::sleep(0);
        asyncio::Future<> ready = loop.create_future();
        auto layer = std::make_shared<XorLayer>(app, 'k', true, ready);
        co_await asyncio::insert_layer(*app->transport, layer, ready);
        CHECK(layer->events.front() == "connection_made");
        CHECK(layer->connection_made_calls == 1);
        CHECK(app->transport->get_protocol() == layer);
        co_await app->wait_bytes(11);
        CHECK(app->received == "plainsecret");
        layer->write("reply");
        const std::string wire = co_await recv_bytes(peer, 6);
        CHECK(wire == "k" + xored("reply", 'k'));
        // EOF and the end of the connection reach the application through the layer.
        peer.shutdown(SHUT_WR);
        co_await app->wait_lost();
        CHECK(app->events == std::vector<std::string>{"made", "data", "eof", "lost"});
        CHECK(app->error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("insert_layer on a closing transport raises RuntimeError and changes nothing") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto app = co_await make_transport(peer);
        app->transport->close();
        asyncio::Future<> ready = loop.create_future();
        auto layer = std::make_shared<XorLayer>(app, 'k', false, ready);
        bool refused = false;
        try {
            co_await asyncio::insert_layer(*app->transport, layer, ready);
        } catch (const asyncio::RuntimeError&) {
            refused = true;
        }
        CHECK(refused);
        CHECK(app->transport->get_protocol() == app);
        co_await app->wait_lost();
        CHECK(layer->connection_made_calls == 0);
    };
    run_guarded(main());
}

TEST_CASE("insert_layer: a failed handshake closes the transport and raises its error") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto app = co_await make_transport(peer);
        asyncio::Future<> ready = loop.create_future();
        auto layer = std::make_shared<XorLayer>(app, 'k', false, ready);
        peer.shutdown(SHUT_WR);  // EOF instead of the server's key
        std::error_code error;
        try {
            co_await asyncio::insert_layer(*app->transport, layer, ready);
        } catch (const std::system_error& e) {
            error = e.code();
        }
        CHECK(error == std::errc::connection_reset);
        CHECK(app->transport->is_closing());
        const std::string wire = co_await recv_to_eof(peer);
        CHECK(wire == "k");
        // The handshake never finished: the application's protocol is not
        // told by the layer (start_tls's caller got the error instead).
        CHECK(app->events == std::vector<std::string>{"made"});
    };
    run_guarded(main());
}

TEST_CASE("cancelling insert_layer closes the transport") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Socket peer;
        auto app = co_await make_transport(peer);
        asyncio::Future<> ready = loop.create_future();
        auto layer = std::make_shared<XorLayer>(app, 'k', false, ready);
        Coro<void> inserting = asyncio::insert_layer(*app->transport, layer, ready);
        auto task = asyncio::create_task(std::move(inserting));
        const std::string key = co_await recv_bytes(peer, 1);
        CHECK(key == "k");
        task.cancel();
        const bool cancelled = co_await ends_cancelled(std::move(task));
        CHECK(cancelled);
        CHECK(app->transport->is_closing());
        const std::string rest = co_await recv_to_eof(peer);
        CHECK(rest.empty());
    };
    run_guarded(main());
}

// -- failing callbacks -----------------------------------------------------------------------

struct Throwing : Recorder {
    std::string where;
    void data_received(std::string_view data) override {
        Recorder::data_received(data);
        if (where == "data_received") throw std::runtime_error("data_received failed");
    }
    bool eof_received() override {
        Recorder::eof_received();
        if (where == "eof_received") throw std::runtime_error("eof_received failed");
        return false;
    }
    void pause_writing() override {
        Recorder::pause_writing();
        if (where == "pause_writing") throw std::runtime_error("pause_writing failed");
    }
};

TEST_CASE("a throwing data_received or eof_received is reported and closes the transport") {
    auto main = [](std::string where) -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        const auto fds = asyncio_test::socket_pair();
        Socket peer = Socket::from_fd(fds[1]);
        auto proto = std::make_shared<Throwing>();
        proto->where = where;
        auto factory = [proto] { return proto; };
        co_await loop.connect_accepted_socket(factory, Socket::from_fd(fds[0]));
        co_await loop.sock_sendall(peer, "boom");
        if (where == "eof_received") peer.shutdown(SHUT_WR);
        co_await proto->wait_lost();
        REQUIRE(reports.contexts.size() == 1);
        CHECK(reports.messages.front() == "Fatal error: protocol." + where + "() call failed.");
        std::string what;
        try {
            std::rethrow_exception(reports.contexts.front().exception);
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == where + " failed");
        CHECK(proto->error == reports.contexts.front().exception);  // connection_lost(exc)
        CHECK(proto->transport->is_closing());
        const std::string got = co_await recv_to_eof(peer);  // the peer sees the close
        CHECK(got.empty());
    };
    SECTION("data_received") {
        run_guarded(main("data_received"));
    }
    SECTION("eof_received") {
        run_guarded(main("eof_received"));
    }
}

TEST_CASE("a throwing pause_writing is reported; the transport keeps working") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        const auto fds = asyncio_test::socket_pair();
        Socket peer = Socket::from_fd(fds[1]);
        auto proto = std::make_shared<Throwing>();
        proto->where = "pause_writing";
        auto factory = [proto] { return proto; };
        co_await loop.connect_accepted_socket(factory, Socket::from_fd(fds[0]));
        const std::string data = pattern(1 << 20);
        proto->transport->write(data);
        CHECK(proto->paused == 1);
        CHECK(reports.contains("protocol.pause_writing() failed"));
        CHECK_FALSE(proto->transport->is_closing());
        proto->transport->close();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == data);
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("a throwing connection_made is reported") {
    struct FailsToStart : Recorder {
        void connection_made(asyncio::BaseTransport& t) override {
            Recorder::connection_made(t);
            throw std::runtime_error("connection_made failed");
        }
    };
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::RecordedReports reports(loop);
        Socket peer;
        auto proto = co_await make_transport<FailsToStart>(peer);
        CHECK(reports.contains("connection_made"));
        proto->transport->abort();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("a transport still open when the loop closes is released without callbacks") {
    const auto fds = asyncio_test::socket_pair();
    auto main = [](int fd) -> Coro<std::shared_ptr<Recorder>> {
        auto protocol = std::make_shared<Recorder>();
        auto factory = [protocol] { return protocol; };
        co_await asyncio::get_running_loop().connect_accepted_socket(factory, Socket::from_fd(fd));
        protocol->transport->write(pattern(4 << 20));  // stays buffered: the peer never reads
        co_return protocol;
    };
    auto proto = run_guarded(main(fds[0]));
    CHECK(proto->events == std::vector<std::string>{"made"});
    CHECK(proto->transport->is_closing());
    proto->keep.reset();  // the last reference: the transport is freed here
    char byte;
    // What was sent before the loop closed arrived.
    CHECK(asyncio_test::raw_recv(fds[1], &byte, 1) == 1);
    asyncio_test::close_socket(fds[1]);
}

// -- callbacks that close or toggle reading from inside ---------------------------------

namespace {

struct ClosesAtOnce : Recorder {
    void connection_made(asyncio::BaseTransport& t) override {
        Recorder::connection_made(t);
        transport->write("bye");
        transport->close();
    }
};

struct TogglesReading : Recorder {
    void data_received(std::string_view data) override {
        transport->pause_reading();
        transport->resume_reading();
        Recorder::data_received(data);  // after the toggle: `data` must still be intact
    }
};

}  // namespace

TEST_CASE("a protocol that closes inside connection_made is still returned, alive") {
    auto main = []() -> Coro<void> {
        auto [mine, peer] = socket_pair();
        std::shared_ptr<ClosesAtOnce> made;  // past the next suspension, the pair may dangle
        auto factory = [&made] { return made = std::make_shared<ClosesAtOnce>(); };
        auto [transport, protocol] =
            co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(mine));
        // connection_lost ran before this task resumed; the pair must not dangle.
        REQUIRE(protocol != nullptr);
        CHECK(protocol == made.get());
        CHECK(transport == protocol->transport);
        CHECK(protocol->events.front() == "made");
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "bye");
        CHECK(made->events == std::vector<std::string>{"made", "lost"});
    };
    run_guarded(main());
}

/// A connected TCP loopback pair: (accepted side, client side). TCP lets
/// more than one read's worth queue up, so reads come back full.
Coro<std::pair<Socket, Socket>> tcp_pair() {
    auto& loop = asyncio::get_running_loop();
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(asyncio::Address::parse("127.0.0.1", 0));
    listener.listen(1);
    Socket client(AF_INET, SOCK_STREAM);
    co_await loop.sock_connect(client, listener.getsockname());
    auto accepted = co_await loop.sock_accept(listener);
    co_return std::pair{std::move(accepted.first), std::move(client)};
}

TEST_CASE("pause_reading and resume_reading inside data_received keep the data intact") {
    auto main = []() -> Coro<void> {
        auto [mine, peer] = co_await tcp_pair();
        auto protocol = std::make_shared<TogglesReading>();
        auto factory = [protocol] { return protocol; };
        co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(mine));
        const std::string sent = pattern(4 << 20, 7);
        co_await asyncio::get_running_loop().sock_sendall(peer, sent);
        peer.close();
        co_await protocol->wait_eof();
        CHECK(protocol->received.size() == sent.size());
        CHECK(protocol->received == sent);
    };
    run_guarded(main());
}

// -- write coalescing ---------------------------------------------------------------------
// Writes made during one loop iteration leave together before the loop
// polls again (uvloop's behaviour; CPython sends each at once). What a
// Python program can observe stays the same, except that
// get_write_buffer_size() counts the bytes until they leave.

namespace {

#ifdef __linux__
/// Segments carrying data that `sock` has sent so far (TCP_INFO).
std::uint32_t data_segments_out(int fd) {
    ::tcp_info info{};
    ::socklen_t len = sizeof info;
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
    return info.tcpi_data_segs_out;
}

/// A transport over TCP loopback, with a Recorder; the raw peer in `peer`.
Coro<std::shared_ptr<Recorder>> make_tcp_transport(Socket& peer) {
    auto [mine, theirs] = co_await tcp_pair();
    peer = std::move(theirs);
    auto protocol = std::make_shared<Recorder>();
    auto factory = [protocol] { return protocol; };
    co_await asyncio::get_running_loop().connect_accepted_socket(factory, std::move(mine));
    co_return protocol;
}
#endif

}  // namespace

TEST_CASE("the writes of one iteration leave in one segment when the iteration ends", "[posix]") {
    // Counting segments takes Linux's TCP_INFO (Windows' SIO_TCP_INFO has
    // no segment count).
#ifdef __linux__
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_tcp_transport(peer);
        Transport& t = *proto->transport;
        const int fd = std::any_cast<int>(t.get_extra_info("socket"));
        const std::uint32_t before = data_segments_out(fd);
        std::string sent;
        for (int i = 0; i < 16; ++i) {
            const std::string message = "*1\r\n$4\r\nPING " + std::to_string(i) + "\r\n";
            t.write(message);
            sent += message;
        }
        CHECK(t.get_write_buffer_size() == sent.size());  // nothing has left yet
        const std::string got = co_await recv_bytes(peer, sent.size());
        CHECK(got == sent);
        CHECK(data_segments_out(fd) - before == 1);
        t.close();
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
    };
    run_guarded(main());
#endif
}

TEST_CASE("small and large writes in one iteration arrive in order") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        // A large write first (sent from the caller's memory where the
        // backend allows), then small ones behind it, then large ones
        // behind those.
        const std::vector<std::string> writes{
            pattern(200 * 1024, 1), "a", pattern(10, 2), pattern(100 * 1024, 3), "b",
            pattern(300 * 1024, 4), "c"};
        std::string sent;
        for (const std::string& w : writes) {
            t.write(w);
            sent += w;
        }
        t.close();
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.size() == sent.size());
        CHECK(got == sent);
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("a burst the kernel takes at once pauses the protocol only on completion backends") {
    auto main = []() -> Coro<void> {
        auto [mine, theirs] = socket_pair();
        Socket peer = std::move(theirs);
        mine.setsockopt(SOL_SOCKET, SO_SNDBUF, 1 << 20);
        auto proto = std::make_shared<Recorder>();
        auto factory = [proto] { return proto; };
        auto& loop = asyncio::get_running_loop();
        co_await loop.connect_accepted_socket(factory, std::move(mine));
        Transport& t = *proto->transport;
        CHECK(t.get_write_buffer_limits().second == 64 * 1024);
        std::string sent;
        for (unsigned i = 0; i < 3; ++i) {
            const std::string block = pattern(40 * 1024, i);
            t.write(block);
            sent += block;
        }
        if (loop.backend().completes_inline()) {
            // Crossing the high-water mark sent the first two blocks at
            // once, and the kernel took them: CPython's selector transport
            // would not have paused either.
            CHECK(proto->paused == 0);
            CHECK(t.get_write_buffer_size() == 40 * 1024);
        } else {
            // The proactor's rule: bytes in flight count until the kernel
            // reports them sent.
            CHECK(proto->paused == 1);
            CHECK(t.get_write_buffer_size() == sent.size());
        }
        const std::string got = co_await recv_bytes(peer, sent.size());
        CHECK(got == sent);
        if (proto->paused == 1) co_await proto->wait_resumed();
        CHECK(proto->resumed == proto->paused);
        t.abort();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("write_eof and close after writes of the same iteration send them first") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        t.write("one ");
        t.write("two");
        t.write_eof();
        CHECK(t.get_write_buffer_size() == 7);
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got == "one two");
        CHECK_FALSE(proto->lost);

        Socket peer2;
        auto proto2 = co_await make_transport(peer2);
        proto2->transport->write("three ");
        proto2->transport->write("four");
        proto2->transport->close();
        CHECK_FALSE(proto2->lost);
        const std::string got2 = co_await recv_to_eof(peer2);
        CHECK(got2 == "three four");
        co_await proto2->wait_lost();
        CHECK(proto2->error == nullptr);
        CHECK(proto2->buffered_at_lost == 0);
        t.close();
        co_await proto->wait_lost();
    };
    run_guarded(main());
}

TEST_CASE("abort discards the writes of the same iteration") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
        Transport& t = *proto->transport;
        t.write("never sent");
        t.abort();
        CHECK(t.get_write_buffer_size() == 0);
        co_await proto->wait_lost();
        CHECK(proto->error == nullptr);
        const std::string got = co_await recv_to_eof(peer);
        CHECK(got.empty());
    };
    run_guarded(main());
}

TEST_CASE("a failed coalesced send reaches connection_lost with its error") {
    auto main = []() -> Coro<void> {
        Socket peer;
        auto proto = co_await make_transport(peer);
#ifdef _WIN32
        // Over TCP (Windows' socket pair) a send after the peer's FIN still
        // succeeds: a reset makes it fail, as a Unix socket's close does.
        const ::linger reset{1, 0};
        REQUIRE(asyncio_test::set_socket_option(peer.fileno(), SOL_SOCKET, SO_LINGER, &reset,
                                                sizeof reset) == 0);
#endif
        peer.close();  // before the loop sees EOF: the send fails first
        proto->transport->write("to nobody");
        co_await proto->wait_lost();
        REQUIRE(proto->error != nullptr);
        int code = 0;
        try {
            std::rethrow_exception(proto->error);
        } catch (const std::system_error& e) {
            code = e.code().value();
        }
        CHECK((code == EPIPE || code == ECONNRESET));
        CHECK(proto->buffered_at_lost == 0);
    };
    run_guarded(main());
}

TEST_CASE("writes have left when run_until_complete returns, and outside it at once") {
    auto loop = asyncio::new_event_loop();
    Socket peer;
    auto proto = loop->run_until_complete(make_transport(peer));
    auto write_and_return = [](Transport& t) -> Coro<void> {
        t.write("before ");
        t.write("stop");
        co_return;
    };
    loop->run_until_complete(write_and_return(*proto->transport));
    char buffer[64];
    // The peer is non-blocking (a Socket): a recv finds what has arrived.
    const long long n = asyncio_test::raw_recv(peer.fileno(), buffer, sizeof buffer);
    REQUIRE(n > 0);
    CHECK(std::string_view(buffer, static_cast<std::size_t>(n)) == "before stop");
    // Not running, nothing would flush it: it is sent at once where the
    // backend sends at once, else when the loop runs.
    proto->transport->write("outside");
    if (loop->backend().completes_inline()) {
        const long long m = asyncio_test::raw_recv(peer.fileno(), buffer, sizeof buffer);
        REQUIRE(m > 0);
        CHECK(std::string_view(buffer, static_cast<std::size_t>(m)) == "outside");
    } else {
        const std::string got = loop->run_until_complete(recv_bytes(peer, 7));
        CHECK(got == "outside");
    }
    proto->transport->abort();
    loop->run_until_complete(proto->wait_lost());
    loop->close();
}
