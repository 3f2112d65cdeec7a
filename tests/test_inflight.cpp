// The ownership rule of backend.hpp, tried the hard way: tasks cancelled,
// transports closed and loops closed with reads, writes, accepts and
// connects in flight, thousands of times. In the asan build any touch of
// memory an owner has freed is reported; buffers the tests own carry a
// canary, so a kernel write after the owner was told the op ended shows
// too; and every byte sent is accounted for. Runs on every backend.
#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using asyncio::Address;
using asyncio::Coro;
using asyncio::Socket;
using asyncio_test::run_guarded;

namespace {

constexpr std::byte kCanary{0xA5};

std::pair<Socket, Socket> socket_pair() {
    const auto fds = asyncio_test::socket_pair();
    return {Socket::from_fd(fds[0]), Socket::from_fd(fds[1])};
}

bool intact(const std::vector<std::byte>& buffer) {
    return std::all_of(buffer.begin(), buffer.end(), [](std::byte b) { return b == kCanary; });
}

/// A listener whose accept queue is full, so that a connect to it stays in
/// flight (the kernel drops its SYN) until it is cancelled.
struct FullListener {
    Socket listener{AF_INET, SOCK_STREAM};
    std::vector<Socket> fillers;
    Address address;

    FullListener() {
        listener.bind(Address::parse("127.0.0.1", 0));
        listener.listen(0);
        address = listener.getsockname();
        // A backlog of 0 still queues one connection; two more are left
        // half-open. Blocking connects would hang: these are non-blocking.
        for (int i = 0; i < 3; ++i) {
            Socket filler(AF_INET, SOCK_STREAM);
            ::connect(filler.fileno(), address.data(), address.size());
            fillers.push_back(std::move(filler));
        }
    }
};

/// Lends the transport a buffer the test owns, and marks it when the
/// transport lets the protocol go: after that nothing may write there.
struct LendingProtocol : asyncio::BufferedProtocol {
    std::shared_ptr<std::vector<std::byte>> buffer;
    std::shared_ptr<bool> released;
    std::string received;
    bool lost = false;

    LendingProtocol(std::shared_ptr<std::vector<std::byte>> buffer, std::shared_ptr<bool> released)
        : buffer(std::move(buffer)), released(std::move(released)) {}
    ~LendingProtocol() override {
        std::fill(buffer->begin(), buffer->end(), kCanary);
        *released = true;
    }
    std::span<std::byte> get_buffer(std::size_t) override { return *buffer; }
    void buffer_updated(std::size_t n) override {
        received.append(reinterpret_cast<const char*>(buffer->data()), n);
    }
    void connection_lost(std::exception_ptr) override { lost = true; }
};

struct CountingProtocol : asyncio::Protocol {
    std::string received;
    bool lost = false;
    void data_received(std::string_view data) override { received += data; }
    void connection_lost(std::exception_ptr) override { lost = true; }
};

/// Lets the loop go round until `done()` or `limit` iterations have passed.
template <class Pred>
Coro<bool> until(Pred done, int limit = 10'000) {
    for (int i = 0; i < limit && !done(); ++i)
        co_await asyncio::sleep(0);
    co_return done();
}

/// One round: a read, a write, an accept and a connect in flight, each in
/// its own task, all cancelled; in odd rounds the read's data arrives just
/// before the cancellation, so the two race.
Coro<void> cancel_round(int round, FullListener& full) {
    auto& loop = asyncio::get_running_loop();
    auto [reader, reader_peer] = socket_pair();
    auto [writer, writer_peer] = socket_pair();
    Socket listener(AF_INET, SOCK_STREAM);
    listener.bind(Address::parse("127.0.0.1", 0));
    listener.listen(4);
    Socket connector(AF_INET, SOCK_STREAM);

    std::vector<std::byte> into(64, kCanary);
    const std::string payload(4 << 20, 'w');  // more than a socketpair holds
    auto recv = loop.create_task(loop.sock_recv_into(reader, into));
    auto send = loop.create_task(loop.sock_sendall(writer, payload));
    auto accept = loop.create_task(loop.sock_accept(listener));
    auto connect = loop.create_task(loop.sock_connect(connector, full.address));
    co_await asyncio::sleep(0);
    co_await asyncio::sleep(0);

    const std::string message(64, 'm');
    const bool race = round % 2 == 1;
    if (race) co_await loop.sock_sendall(reader_peer, message);
    recv.cancel();
    send.cancel();
    accept.cancel();
    connect.cancel();

    std::size_t got = 0;
    bool recv_cancelled = false;
    try {
        got = co_await recv;
    } catch (const asyncio::CancelledError&) {
        recv_cancelled = true;
    }
    const bool send_cancelled = co_await asyncio_test::ends_cancelled(send);
    const bool accept_cancelled = co_await asyncio_test::ends_cancelled(accept);
    const bool connect_cancelled = co_await asyncio_test::ends_cancelled(connect);
    CHECK(send_cancelled);
    CHECK(accept_cancelled);
    CHECK(connect_cancelled);
    if (!race) CHECK(recv_cancelled);

    // Whatever the read took is in its buffer, also when the cancellation
    // came after the read completed but before its task ran (the task then
    // ends cancelled, as in CPython). From now on the kernel may not write
    // there.
    if (recv_cancelled) {
        got =
            static_cast<std::size_t>(std::find_if(into.begin(), into.end(),
                                                  [](std::byte b) { return b != std::byte{'m'}; }) -
                                     into.begin());
    }
    CHECK(std::string(reinterpret_cast<const char*>(into.data()), got) == message.substr(0, got));
    std::fill(into.begin(), into.end(), kCanary);
    if (!race) co_await loop.sock_sendall(reader_peer, message);
    std::string rest;
    while (got + rest.size() < message.size()) {
        std::string part = co_await loop.sock_recv(reader, message.size());
        REQUIRE_FALSE(part.empty());
        rest += part;
    }
    CHECK(got + rest.size() == message.size());
    CHECK(intact(into));
}

/// Reads `peer` to its end. The transport closes with bytes of ours unread,
/// so the end may be ECONNRESET after the data rather than EOF.
Coro<std::string> drain(Socket& peer) {
    std::string got;
    for (;;) {
        std::string part;
        try {
            part = co_await asyncio::get_running_loop().sock_recv(peer, 1 << 16);
        } catch (const std::system_error& e) {
            REQUIRE(e.code() == std::errc::connection_reset);
        }
        if (part.empty()) break;
        got += part;
    }
    co_return got;
}

/// One round: a transport with a read and a write in flight, closed or
/// aborted while its peer keeps sending.
Coro<void> close_round(int round) {
    auto& loop = asyncio::get_running_loop();
    auto [mine, peer] = socket_pair();
    auto lent = std::make_shared<std::vector<std::byte>>(256, kCanary);
    auto released = std::make_shared<bool>(false);
    std::shared_ptr<LendingProtocol> lending;
    std::shared_ptr<CountingProtocol> counting;
    asyncio::Transport* transport = nullptr;
    if (round % 2 == 0) {
        lending = std::make_shared<LendingProtocol>(lent, released);
        auto factory = [lending] { return lending; };
        transport = (co_await loop.connect_accepted_socket(factory, std::move(mine))).first;
    } else {
        counting = std::make_shared<CountingProtocol>();
        auto factory = [counting] { return counting; };
        transport = (co_await loop.connect_accepted_socket(factory, std::move(mine))).first;
    }
    transport->write(std::string(1 << 20, 'x'));  // the peer does not read: it stays in flight
    co_await asyncio::sleep(0);
    co_await loop.sock_sendall(peer, "before");
    if (round % 4 < 2) {
        transport->close();
    } else {
        transport->abort();
    }
    // Bytes a closing socket never read make its close a reset on TCP,
    // which drops what the peer had not read yet: over Windows' socket pair
    // (loopback TCP) only the abort rounds send more after the close.
#ifdef _WIN32
    const bool send_after = round % 4 >= 2;
#else
    const bool send_after = true;
#endif
    if (send_after) co_await loop.sock_sendall(peer, "after");
    const std::string got = co_await drain(peer);
    CHECK(got.find_first_not_of('x') == std::string::npos);
    if (round % 4 < 2) {
        CHECK(got.size() == 1u << 20);  // close() sends what is buffered first
    } else {
        // abort() drops what is buffered, but a send the kernel had already
        // taken may still go out: what arrives is what was written, never
        // memory the transport freed.
        CHECK(got.size() <= 1u << 20);
    }
    auto is_lost = [&] { return lending ? lending->lost : counting->lost; };
    const bool lost = co_await until(is_lost);
    CHECK(lost);
    if (lending) {
        // The transport let the protocol go once the kernel was done with
        // its buffer; anything written there from now on is a bug.
        lending.reset();
        auto is_released = [&] { return *released; };
        const bool let_go = co_await until(is_released);
        CHECK(let_go);
        std::fill(lent->begin(), lent->end(), kCanary);
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK(intact(*lent));
    }
}

}  // namespace

TEST_CASE("tasks cancelled with reads, writes, accepts and connects in flight") {
    auto main = []() -> Coro<void> {
        FullListener full;
        for (int round = 0; round < 1000; ++round)
            co_await cancel_round(round, full);
    };
    run_guarded(main());
}

TEST_CASE("transports closed and aborted with reads and writes in flight") {
    auto main = []() -> Coro<void> {
        // 200 rounds of each of the four variants: enough to land closes
        // on every stage of an op, and well inside the hang guard under
        // ASan on io_uring, whose cancellations take the longest.
        for (int round = 0; round < 800; ++round)
            co_await close_round(round);
    };
    run_guarded(main());
}

TEST_CASE("loops closed with operations and transports in flight") {
    for (int round = 0; round < 300; ++round) {
        auto [reader, reader_peer] = socket_pair();
        auto [writer, writer_peer] = socket_pair();
        auto [mine, peer] = socket_pair();
        auto [other, other_peer] = socket_pair();
        Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(Address::parse("127.0.0.1", 0));
        listener.listen(4);
        FullListener full;
        Socket connector(AF_INET, SOCK_STREAM);
        auto into = std::make_shared<std::vector<std::byte>>(64, kCanary);
        auto lent = std::make_shared<std::vector<std::byte>>(256, kCanary);
        auto released = std::make_shared<bool>(false);
        const std::string payload(4 << 20, 'w');
        {
            auto loop = asyncio::new_event_loop();
            asyncio_test::RecordedReports reports(*loop);
            // Ops in tasks whose frames the close destroys, and transports
            // that the close tears down, all with the kernel holding work.
            loop->create_task(loop->sock_recv_into(reader, *into));
            loop->create_task(loop->sock_sendall(writer, payload));
            loop->create_task(loop->sock_accept(listener));
            loop->create_task(loop->sock_connect(connector, full.address));
            auto start = [&]() -> Coro<void> {
                auto lending = std::make_shared<LendingProtocol>(lent, released);
                auto lending_factory = [lending] { return lending; };
                auto t1 = co_await loop->connect_accepted_socket(lending_factory, std::move(mine));
                auto counting = std::make_shared<CountingProtocol>();
                auto counting_factory = [counting] { return counting; };
                auto t2 =
                    co_await loop->connect_accepted_socket(counting_factory, std::move(other));
                t1.first->write(std::string(1 << 20, 'x'));
                t2.first->write(std::string(1 << 20, 'y'));
                co_await asyncio::sleep(0);
                co_await asyncio::sleep(0);
            };
            loop->run_until_complete(start());
            if (round % 2 == 1) {
                // Data in the sockets that nobody has read yet when the loop closes.
                REQUIRE(asyncio_test::raw_send(reader_peer.fileno(), "race", 4) == 4);
                REQUIRE(asyncio_test::raw_send(peer.fileno(), "race", 4) == 4);
            }
            loop->close();
            CHECK(reports.contains("Task was destroyed but it is pending!"));
        }
        CHECK(*released);
        std::fill(into->begin(), into->end(), kCanary);
        std::fill(lent->begin(), lent->end(), kCanary);
        REQUIRE(asyncio_test::raw_send(reader_peer.fileno(), "late", 4) == 4);
        asyncio_test::raw_send(peer.fileno(), "late", 4);
        CHECK(intact(*into));
        CHECK(intact(*lent));
    }
}
