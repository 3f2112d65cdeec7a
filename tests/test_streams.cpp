// Streams: ports of CPython's test_streams.py (StreamReader's read rules
// with limits and EOF, open_connection / start_server, drain and
// back-pressure, wait_closed), over TCP and Unix sockets.
#ifndef _WIN32
#include <unistd.h>
#endif

#include <any>
#include <cctype>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"
#include "xor_layer.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::IncompleteReadError;
using asyncio::LimitOverrunError;
using asyncio::StreamReader;
using asyncio::StreamWriter;
using asyncio_test::run_guarded;
using asyncio_test::xored;
using asyncio_test::XorLayer;

namespace {

/// Feeds `chunks` to `reader` one loop iteration apart, then EOF if asked.
Coro<void> feeder(StreamReader reader, std::vector<std::string> chunks, bool eof) {
    for (const auto& chunk : chunks) {
        co_await asyncio::sleep(0);
        reader.feed_data(chunk);
    }
    if (eof) {
        co_await asyncio::sleep(0);
        reader.feed_eof();
    }
}

Coro<void> echo_lines(StreamReader reader, StreamWriter writer) {
    for (;;) {
        std::string line = co_await reader.readline();
        if (line.empty()) break;
        writer.write(line);
        co_await writer.drain();
    }
    writer.close();
}

/// What an upgrade to the XOR layer was given and what it made.
struct UpgradeRecord {
    std::optional<bool> server_side;
    XorLayer* layer = nullptr;
    int calls = 0;
};

/// The stream side of start_tls with the XOR layer standing in for TLS.
StreamWriter::TransportUpgrade xor_upgrade(char key, std::shared_ptr<UpgradeRecord> record) {
    return [key, record](asyncio::Transport& below, std::shared_ptr<asyncio::BaseProtocol> protocol,
                         bool server_side) -> Coro<std::shared_ptr<asyncio::Transport>> {
        ++record->calls;
        record->server_side = server_side;
        std::shared_ptr<asyncio::Transport> layered =
            co_await XorLayer::start(below, std::move(protocol), key, server_side);
        record->layer = dynamic_cast<XorLayer*>(layered.get());
        co_return layered;
    };
}

#ifndef _WIN32
std::string unix_path(const char* tag) {
    return "/tmp/asyncio-test-" + std::string(tag) + "-" + std::to_string(::getpid()) + ".sock";
}
#endif

}  // namespace

// -- StreamReader --------------------------------------------------------------------

TEST_CASE("read returns what is buffered, waits when empty, and empty at EOF") {
    auto main = []() -> Coro<std::vector<std::string>> {
        StreamReader reader;
        std::vector<std::string> got;
        reader.feed_data("line1\nline2");
        got.push_back(co_await reader.read(5));
        got.push_back(co_await reader.read(100));
        auto feeding = asyncio::create_task(feeder(reader, {"more"}, true));
        got.push_back(co_await reader.read(100));
        got.push_back(co_await reader.read(100));
        got.push_back(co_await reader.read(0));
        co_await feeding;
        CHECK(reader.at_eof());
        co_return got;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"line1", "\nline2", "more", "", ""});
}

TEST_CASE("read(-1) reads until EOF") {
    auto main = []() -> Coro<std::string> {
        StreamReader reader(3);
        auto feeding = asyncio::create_task(feeder(reader, {"chunk1 ", "chunk2 ", "chunk3"}, true));
        std::string all = co_await reader.read();
        co_await feeding;
        co_return all;
    };
    CHECK(run_guarded(main()) == "chunk1 chunk2 chunk3");
}

TEST_CASE("readline") {
    auto main = []() -> Coro<std::vector<std::string>> {
        StreamReader reader;
        std::vector<std::string> got;
        reader.feed_data("chunk1 ");
        auto feeding = asyncio::create_task(feeder(reader, {"chunk2 ", "chunk3 \n chunk4"}, true));
        got.push_back(co_await reader.readline());
        got.push_back(co_await reader.readline());  // the partial last line at EOF
        got.push_back(co_await reader.readline());  // then empty
        co_await feeding;
        co_return got;
    };
    CHECK(run_guarded(main()) ==
          std::vector<std::string>{"chunk1 chunk2 chunk3 \n", " chunk4", ""});
}

TEST_CASE("readline over the limit raises ValueError and skips the line") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> got;
        StreamReader reader(7);
        reader.feed_data("12345678\n");  // found, but past the limit
        reader.feed_data("ok\n");
        try {
            co_await reader.readline();
        } catch (const std::invalid_argument& e) {
            got.push_back(e.what());
        }
        got.push_back(co_await reader.readline());

        StreamReader long_line(7);
        auto feeding =
            asyncio::create_task(feeder(long_line, {"chunk1", "chunk2", "chunk3\nrest\n"}, true));
        try {
            co_await long_line.readline();  // no separator within the limit
        } catch (const std::invalid_argument& e) {
            got.push_back(e.what());
        }
        co_await feeding;
        co_return got;
    };
    CHECK(run_guarded(main()) ==
          std::vector<std::string>{"Separator is found, but chunk is longer than limit", "ok\n",
                                   "Separator is not found, and chunk exceed the limit"});
}

TEST_CASE("next_line iterates lines as async for does, ending at EOF") {
    auto main = []() -> Coro<std::vector<std::string>> {
        StreamReader reader;
        auto feeding = asyncio::create_task(feeder(reader, {"one\ntw", "o\n", "last"}, true));
        std::vector<std::string> lines;
        int count = 0;
        std::string joined;
        while (auto line = co_await reader.next_line()) {
            ++count;
            joined += "[" + *line + "]";
        }
        co_await feeding;
        const std::optional<std::string> after = co_await reader.next_line();
        CHECK_FALSE(after);  // and again: still the end
        lines.push_back(std::to_string(count));
        lines.push_back(joined);
        co_return lines;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"3", "[one\n][two\n][last]"});
}

TEST_CASE("a limit <= 0 or above PTRDIFF_MAX raises ValueError where it enters") {
    // A std::size_t above PTRDIFF_MAX (a negative limit converted) made
    // read(-1) recurse without end: its block size turned negative.
    CHECK_THROWS_AS(StreamReader(0), std::invalid_argument);
    CHECK_THROWS_AS(StreamReader(SIZE_MAX), std::invalid_argument);
    CHECK_THROWS_AS(StreamReader(static_cast<std::size_t>(PTRDIFF_MAX) + 1), std::invalid_argument);
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> seen;
        StreamReader widest(static_cast<std::size_t>(PTRDIFF_MAX));
        widest.feed_data("all of it");
        widest.feed_eof();
        seen.push_back(co_await widest.read());

        auto server = co_await asyncio::start_server(echo_lines, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        asyncio::OpenOptions huge;
        huge.limit = SIZE_MAX;
        try {
            co_await asyncio::open_connection("127.0.0.1", port, huge);
            seen.emplace_back("open_connection accepted it");
        } catch (const std::invalid_argument& e) {
            seen.emplace_back(e.what());
        }
        asyncio::StartOptions none;
        none.limit = 0;
        try {
            auto second = co_await asyncio::start_server(echo_lines, "127.0.0.1", 0, none);
            second.close();
            seen.emplace_back("start_server accepted it");
        } catch (const std::invalid_argument& e) {
            seen.emplace_back(e.what());
        }
        // The socket forms refuse before they take the socket.
        asyncio::Socket client(AF_INET, SOCK_STREAM);
        try {
            co_await asyncio::open_connection(std::move(client), huge);
        } catch (const std::invalid_argument&) {
            seen.emplace_back(client ? "socket kept" : "socket taken");
        }
        asyncio::Socket listener(AF_INET, SOCK_STREAM);
        try {
            co_await asyncio::start_server(echo_lines, std::move(listener), none);
        } catch (const std::invalid_argument&) {
            seen.emplace_back(listener ? "socket kept" : "socket taken");
        }
        server.close();
        co_await server.wait_closed();
        co_return seen;
    };
    CHECK(run_guarded(main()) ==
          std::vector<std::string>{"all of it",
                                   "Limit cannot be above PTRDIFF_MAX (a negative limit?)",
                                   "Limit cannot be <= 0", "socket kept", "socket kept"});
}

TEST_CASE("readuntil with one separator and several") {
    auto main = []() -> Coro<std::vector<std::string>> {
        StreamReader reader;
        std::vector<std::string> got;
        reader.feed_data("aaa&bbb&&ccc==ddd");
        got.push_back(co_await reader.readuntil("&"));
        got.push_back(co_await reader.readuntil("&&"));
        std::vector<std::string> seps{"==", "&"};
        got.push_back(co_await reader.readuntil(std::move(seps)));
        reader.feed_data("=x");
        std::vector<std::string> seps2{"=x", "d="};  // the match that ends first wins
        got.push_back(co_await reader.readuntil(std::move(seps2)));
        co_return got;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"aaa&", "bbb&&", "ccc==", "ddd="});
}

TEST_CASE("readuntil across chunks, at EOF, and over the limit") {
    auto main = []() -> Coro<void> {
        StreamReader reader;
        auto feeding = asyncio::create_task(feeder(reader, {"QWEaa", "XYaa", "a"}, false));
        const std::string got = co_await reader.readuntil("aaa");
        CHECK(got == "QWEaaXYaaa");
        co_await feeding;

        StreamReader eof_reader;
        eof_reader.feed_data("some data");
        eof_reader.feed_eof();
        try {
            co_await eof_reader.readuntil("AAA");
            FAIL("no IncompleteReadError");
        } catch (const IncompleteReadError& e) {
            CHECK(e.partial == "some data");
            CHECK_FALSE(e.expected.has_value());
        }

        StreamReader small(3);
        small.feed_data("some dataAA");
        try {
            co_await small.readuntil("AAA");
            FAIL("no LimitOverrunError");
        } catch (const LimitOverrunError& e) {
            CHECK(e.consumed == 9);
        }
        small.feed_data("A");  // the data stayed in the buffer
        try {
            co_await small.readuntil("AAA");
        } catch (const LimitOverrunError& e) {
            CHECK(e.consumed == 9);
            CHECK(std::string(e.what()) == "Separator is found, but chunk is longer than limit");
        }
    };
    run_guarded(main());
}

TEST_CASE("readuntil refuses empty separators") {
    auto main = []() -> Coro<void> {
        StreamReader reader;
        co_await reader.readuntil("");
    };
    CHECK_THROWS_AS(run_guarded(main()), std::invalid_argument);
}

TEST_CASE("readexactly") {
    auto main = []() -> Coro<void> {
        StreamReader reader;
        auto feeding = asyncio::create_task(feeder(reader, {"chunk1", "chunk2", "chunk3"}, true));
        const std::string a = co_await reader.readexactly(10);
        CHECK(a == "chunk1chun");
        const std::string empty = co_await reader.readexactly(0);
        CHECK(empty.empty());
        try {
            co_await reader.readexactly(100);
            FAIL("no IncompleteReadError");
        } catch (const IncompleteReadError& e) {
            CHECK(e.partial == "k2chunk3");
            CHECK(e.expected == 100u);
            CHECK(std::string(e.what()) == "8 bytes read on a total of 100 expected bytes");
        }
        co_await feeding;

        StreamReader limited(3);  // more than the limit: reading must not deadlock
        auto more = asyncio::create_task(feeder(limited, {"0123456789"}, false));
        const std::string ten = co_await limited.readexactly(10);
        CHECK(ten == "0123456789");
        co_await more;
    };
    run_guarded(main());
}

TEST_CASE("an exception set on the reader reaches readers and waiters") {
    auto main = []() -> Coro<void> {
        StreamReader reader;
        auto waiting = [](StreamReader r) -> Coro<std::string> { co_return co_await r.readline(); };
        auto task = asyncio::create_task(waiting(reader));
        co_await asyncio::sleep(0);
        reader.set_exception(std::make_exception_ptr(std::runtime_error("broken")));
        std::string waiter_error;
        try {
            co_await task;
        } catch (const std::runtime_error& e) {
            waiter_error = e.what();
        }
        CHECK(waiter_error == "broken");
        bool thrown = false;
        try {
            co_await reader.read(1);
        } catch (const std::runtime_error&) {
            thrown = true;
        }
        CHECK(thrown);
    };
    run_guarded(main());
}

TEST_CASE("two readers waiting at once is refused") {
    auto main = []() -> Coro<std::string> {
        StreamReader reader;
        auto first = asyncio::create_task(reader.read(1));
        co_await asyncio::sleep(0);
        std::string error;
        try {
            co_await reader.read(1);
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        reader.feed_data("x");
        co_await first;
        co_return error;
    };
    CHECK(run_guarded(main()) ==
          "read() called while another coroutine is already waiting for incoming data");
}

TEST_CASE("a cancelled read loses no data") {
    auto main = []() -> Coro<std::string> {
        StreamReader reader;
        auto waiting = asyncio::create_task(reader.read(10));
        co_await asyncio::sleep(0);
        waiting.cancel();
        try {
            co_await waiting;
        } catch (const asyncio::CancelledError&) {
        }
        reader.feed_data("kept");
        co_return co_await reader.read(10);
    };
    CHECK(run_guarded(main()) == "kept");
}

// -- open_connection / start_server -----------------------------------------------------

TEST_CASE("open_connection and start_server echo lines over TCP") {
    auto main = []() -> Coro<std::vector<std::string>> {
        auto server = co_await asyncio::start_server(echo_lines, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
        CHECK(writer.peername() == asyncio::Address::parse("127.0.0.1", port));
        std::vector<std::string> replies;
        for (int i = 0; i < 3; ++i) {
            writer.write("line " + std::to_string(i) + "\n");
            co_await writer.drain();
            replies.push_back(co_await reader.readline());
        }
        writer.write_eof();
        const std::string rest = co_await reader.read();
        CHECK(rest.empty());
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
        co_return replies;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"line 0\n", "line 1\n", "line 2\n"});
}

TEST_CASE("open_unix_connection and start_unix_server", "[posix]") {
    // Unix sockets: POSIX only, as in CPython (no AF_UNIX on Windows there).
#ifndef _WIN32
    auto main = []() -> Coro<std::string> {
        const std::string path = unix_path("streams");
        auto server = co_await asyncio::start_unix_server(echo_lines, path);
        auto [reader, writer] = co_await asyncio::open_unix_connection(path);
        writer.write("over unix\n");
        std::string reply = co_await reader.readline();
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
        CHECK(::access(path.c_str(), F_OK) != 0);  // the socket file is cleaned up
        co_return reply;
    };
    CHECK(run_guarded(main()) == "over unix\n");
#endif
}

TEST_CASE("a 64 MiB transfer through loopback") {
    auto main = []() -> Coro<std::size_t> {
        constexpr std::size_t kSize = 64u << 20;
        auto sink = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
            std::size_t total = 0;
            std::uint64_t checksum = 0;
            for (;;) {
                std::string part = co_await reader.read(1 << 16);
                if (part.empty()) break;
                for (unsigned char c : part)
                    checksum = checksum * 31 + c;
                total += part.size();
            }
            writer.write(std::to_string(total) + " " + std::to_string(checksum));
            writer.close();
        };
        auto server = co_await asyncio::start_server(sink, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        std::string block(1 << 20, '\0');
        std::uint64_t checksum = 0;
        for (std::size_t sent = 0; sent < kSize; sent += block.size()) {
            for (std::size_t i = 0; i < block.size(); ++i)
                block[i] = static_cast<char>((sent + i) * 13);
            for (unsigned char c : block)
                checksum = checksum * 31 + c;
            writer.write(block);
            co_await writer.drain();
            CHECK(writer.transport().get_write_buffer_size() <= 64 * 1024 + block.size());
        }
        writer.write_eof();
        const std::string summary = co_await reader.read();
        CHECK(summary == std::to_string(kSize) + " " + std::to_string(checksum));
        writer.close();
        server.close();
        co_await server.wait_closed();
        co_return kSize;
    };
    CHECK(run_guarded(main()) == 64u << 20);
}

TEST_CASE("drain waits while the peer does not read: memory stays bounded") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto release = loop.create_future();
        auto stubborn = [&release](StreamReader reader, StreamWriter writer) -> Coro<void> {
            co_await release;  // does not read until released
            co_await reader.read();
            writer.close();
        };
        auto server = co_await asyncio::start_server(stubborn, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        const std::string block(256 * 1024, 'x');
        auto writing = [](StreamWriter w, std::string data) -> Coro<int> {
            for (int i = 0;; ++i) {
                w.write(data);
                co_await w.drain();  // blocks once the kernel buffers are full
                if (i > 10'000) co_return -1;
            }
        };
        auto task = asyncio::create_task(writing(writer, block));
        // Let the writer fill everything it can.
        for (int i = 0; i < 200 && writer.transport().get_write_buffer_size() <= 64 * 1024; ++i) {
            co_await asyncio::sleep(1ms);
        }
        CHECK_FALSE(task.done());
        // One block over the high-water mark at most: bounded.
        CHECK(writer.transport().get_write_buffer_size() <= 64 * 1024 + block.size());
        task.cancel();
        try {
            co_await task;
        } catch (const asyncio::CancelledError&) {
        }
        writer.transport().abort();
        release.set_result();
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("drain after the peer closed raises ConnectionResetError") {
    auto main = []() -> Coro<bool> {
        auto closer = [](StreamReader, StreamWriter writer) -> Coro<void> {
            writer.transport().abort();
            co_return;
        };
        auto server = co_await asyncio::start_server(closer, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        const std::string eof = co_await reader.read();
        CHECK(eof.empty());
        bool reset = false;
        try {
            for (int i = 0; i < 100; ++i) {
                writer.write(std::string(64 * 1024, 'y'));
                co_await writer.drain();
            }
        } catch (const std::system_error& e) {
            reset = e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe;
        }
        server.close();
        co_await server.wait_closed();
        co_return reset;
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("an exception in the client_connected callback is reported and closes the connection") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        auto failing = [](StreamReader, StreamWriter) -> Coro<void> {
            throw std::runtime_error("handler failed");
            co_return;
        };
        auto server = co_await asyncio::start_server(failing, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        const std::string eof = co_await reader.read();
        CHECK(eof.empty());
        CHECK(reports.contains("Unhandled exception in client_connected_cb"));
        bool names_transport = false;
        for (const auto& context : reports.contexts) {
            if (context.message == "Unhandled exception in client_connected_cb")
                names_transport = context.transport != nullptr;
        }
        CHECK(names_transport);  // streams.py passes 'transport'
        writer.close();
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("open_connection to a closed port raises ECONNREFUSED") {
    auto main = []() -> Coro<std::error_code> {
        asyncio::Address nowhere;
        {
            asyncio::Socket probe(AF_INET, SOCK_STREAM);
            probe.bind(asyncio::Address::parse("127.0.0.1", 0));
            nowhere = probe.getsockname();
        }
        try {
            co_await asyncio::open_connection("127.0.0.1", nowhere.port());
        } catch (const std::system_error& e) {
            co_return e.code();
        }
        co_return std::error_code{};
    };
    CHECK(run_guarded(main()) == std::errc::connection_refused);
}

TEST_CASE("open_connection to an unknown host raises a gaierror") {
    auto main = []() -> Coro<std::string> {
        try {
            co_await asyncio::open_connection("no-such-host.invalid", 80);
        } catch (const std::system_error& e) {
            co_return e.code().category().name();
        }
        co_return "connected";
    };
    CHECK(run_guarded(main()) == std::string("getaddrinfo"));
}

TEST_CASE("TLS options without ssl are refused, as CPython does") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> errors;
        asyncio::OpenOptions hostname;
        hostname.server_hostname = "example.com";
        asyncio::OpenOptions timeout;
        timeout.ssl_handshake_timeout = 1s;
        asyncio::StartOptions server_timeout;
        server_timeout.ssl_handshake_timeout = 1s;
        try {
            co_await asyncio::open_connection("127.0.0.1", 1, hostname);
        } catch (const std::invalid_argument& e) {
            errors.emplace_back(e.what());
        }
        try {
            co_await asyncio::open_unix_connection("/nonexistent", timeout);
        } catch (const std::invalid_argument& e) {
            errors.emplace_back(e.what());
        }
        try {
            co_await asyncio::start_server(echo_lines, "127.0.0.1", 0, server_timeout);
        } catch (const std::invalid_argument& e) {
            errors.emplace_back(e.what());
        }
        co_return errors;
    };
    CHECK(run_guarded(main()) ==
          std::vector<std::string>{"server_hostname is only meaningful with ssl",
                                   "ssl_handshake_timeout is only meaningful with ssl",
                                   "ssl_handshake_timeout is only meaningful with ssl"});
}

TEST_CASE("open_connection and start_server refuse a port outside 0-65535") {
    // glibc's getaddrinfo(3) wrapped the port: 65536 + p connected to p, and
    // a server asked for 65536 listened on a random port. CPython raises
    // OverflowError.
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> errors;
        auto server = co_await asyncio::start_server(echo_lines, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        try {
            co_await asyncio::open_connection("127.0.0.1", 65536 + port);
            errors.emplace_back("connected");
        } catch (const std::overflow_error& e) {
            errors.emplace_back(e.what());
        }
        try {
            auto wrapped = co_await asyncio::start_server(echo_lines, "127.0.0.1", 65536);
            wrapped.close();
            errors.emplace_back("serving");
        } catch (const std::overflow_error& e) {
            errors.emplace_back(e.what());
        }
        server.close();
        co_await server.wait_closed();
        co_return errors;
    };
    const std::vector<std::string> errors = run_guarded(main());
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].rfind("port must be 0-65535, got ", 0) == 0);
    CHECK(errors[1] == "port must be 0-65535, got 65536");
}

TEST_CASE("open_connection to host \"\" raises a gaierror; servers take it for every interface") {
    auto main = []() -> Coro<std::string> {
        const std::vector<std::string> every_interface{""};
        auto server = co_await asyncio::start_server(echo_lines, every_interface, 0);
        const int port = server.sockets().front().port();
        std::string outcome = "connected";
        try {
            co_await asyncio::open_connection("", port);
        } catch (const std::system_error& e) {
            outcome = std::string(e.code().category().name()) + " " + e.code().message();
        }
        {
            // Python's host=None: the loopback addresses.
            auto [reader, writer] = co_await asyncio::open_connection(std::nullopt, port);
            writer.write("none\n");
            const std::string echoed = co_await reader.readline();
            outcome += "; " + echoed;
            writer.close();
        }
        server.close();
        co_await server.wait_closed();
        co_return outcome;
    };
    CHECK(run_guarded(main()) ==
          "getaddrinfo " + asyncio::gai_category().message(EAI_NONAME) + "; none\n");
}

TEST_CASE("writelines, can_write_eof and write_eof reach the peer") {
    auto main = []() -> Coro<std::string> {
        auto received = asyncio::get_running_loop().create_future<std::string>();
        auto handler = [received](StreamReader reader, StreamWriter writer) mutable -> Coro<void> {
            std::string all = co_await reader.read();  // until the client's EOF
            received.set_result(std::move(all));
            writer.close();
        };
        auto server = co_await asyncio::start_server(handler, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        const std::vector<std::string> lines{"first\n", "", "second\n"};
        writer.writelines(lines);
        CHECK(writer.can_write_eof());
        writer.write_eof();
        std::string got = co_await received;
        const std::string eof = co_await reader.read();  // the server closed after it
        CHECK(eof.empty());
        writer.close();
        server.close();
        co_await server.wait_closed();
        co_return got;
    };
    CHECK(run_guarded(main()) == "first\nsecond\n");
}

TEST_CASE("a client_connected handler that returns leaves the connection open") {
    // In 3.13 the protocol holds the server's writer until the connection is
    // lost: dropping the handler's handles does not close it.
    auto main = []() -> Coro<std::string> {
        auto kept = std::make_shared<std::optional<StreamReader>>();
        auto handler = [kept](StreamReader reader, StreamWriter writer) {
            *kept = reader;
            writer.write("hello\n");
        };  // returns, dropping `writer`
        auto server = co_await asyncio::start_server(handler, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        const std::string greeting = co_await reader.readline();
        CHECK(greeting == "hello\n");
        writer.write("still there?\n");
        REQUIRE(kept->has_value());
        StreamReader server_reader = **kept;
        std::string reply = co_await server_reader.readline();  // "" if the server closed
        server.close();
        server.close_clients();  // the way to end connections nobody holds
        co_await server.wait_closed();
        const std::string eof = co_await reader.read();
        CHECK(eof.empty());
        co_return reply;
    };
    CHECK(run_guarded(main()) == "still there?\n");
}

TEST_CASE("start_server on a listening socket made elsewhere (sock=)") {
    auto main = []() -> Coro<std::string> {
        asyncio::Socket listener(AF_INET, SOCK_STREAM);
        listener.bind(asyncio::Address::parse("127.0.0.1", 0));
        const asyncio::Address address = listener.getsockname();
        auto server = co_await asyncio::start_server(echo_lines, std::move(listener));
        CHECK(server.sockets() == std::vector<asyncio::Address>{address});
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", address.port());
        writer.write("over sock\n");
        std::string reply = co_await reader.readline();
        writer.close();
        server.close();
        co_await server.wait_closed();
        co_return reply;
    };
    CHECK(run_guarded(main()) == "over sock\n");
}

TEST_CASE("the last StreamWriter handle closes its transport") {
    auto main = []() -> Coro<bool> {
        auto server_done = asyncio::get_running_loop().create_future<bool>();
        auto handler = [server_done](StreamReader reader,
                                     StreamWriter writer) mutable -> Coro<void> {
            const std::string rest = co_await reader.read();  // EOF once the client's writer dies
            server_done.set_result(rest.empty());
            writer.close();  // a server's connection stays open until closed
        };
        auto server = co_await asyncio::start_server(handler, "127.0.0.1", 0);
        {
            auto [reader, writer] =
                co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        }
        const bool saw_eof = co_await server_done;
        server.close();
        co_await server.wait_closed();
        co_return saw_eof;
    };
    CHECK(run_guarded(main()));
}

// -- upgrading the transport (StreamWriter.start_tls's machinery) -------------------------

TEST_CASE("upgrade_transport: the client's stream goes on over the layer, as after start_tls") {
    auto main = []() -> Coro<void> {
        auto seen = std::make_shared<std::string>();
        // A server that speaks the layer's protocol by hand, on plain streams.
        auto by_hand = [seen](StreamReader reader, StreamWriter writer) -> Coro<void> {
            const std::string command = co_await reader.readline();
            const std::string key = co_await reader.readexactly(1);
            writer.write("s");
            const std::string secret = co_await reader.readexactly(6);
            *seen = command + key + secret;
            std::string reply = xored(secret, key[0]);
            for (char& c : reply)
                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            writer.write(xored(reply, 's'));
            co_await writer.drain();
            const std::string rest = co_await reader.read();  // until the client closes
            writer.close();
        };
        auto server = co_await asyncio::start_server(by_hand, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
        auto record = std::make_shared<UpgradeRecord>();
        // Written before the upgrade: goes out plain, ahead of the handshake.
        writer.write("STARTTLS\n");
        Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
        co_await std::move(upgrading);
        CHECK(record->server_side == false);
        CHECK(&writer.transport() == record->layer);
        CHECK(std::any_cast<char>(writer.get_extra_info("xor_key")) == 'c');
        CHECK(writer.peername() == asyncio::Address::parse("127.0.0.1", port));
        writer.write("hello\n");
        co_await writer.drain();
        const std::string reply = co_await reader.readline();
        CHECK(reply == "HELLO\n");
        CHECK(*seen == "STARTTLS\nc" + xored("hello\n", 'c'));
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("upgrade_transport on both ends; server_side is true on the server's") {
    auto main = []() -> Coro<void> {
        auto server_record = std::make_shared<UpgradeRecord>();
        auto starttls = [server_record](StreamReader reader, StreamWriter writer) -> Coro<void> {
            const std::string command = co_await reader.readline();
            if (command != "STARTTLS\n") co_return;
            // No suspension between the answer and the layer going in: the
            // client's first handshake byte cannot reach the plain stream.
            writer.write("OK\n");
            Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('s', server_record));
            co_await std::move(upgrading);
            co_await echo_lines(reader, writer);
        };
        auto server = co_await asyncio::start_server(starttls, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        writer.write("STARTTLS\n");
        const std::string ok = co_await reader.readline();
        CHECK(ok == "OK\n");
        auto record = std::make_shared<UpgradeRecord>();
        Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
        co_await std::move(upgrading);
        std::string echoed;
        for (int i = 0; i < 3; ++i) {
            writer.write("line " + std::to_string(i) + "\n");
            co_await writer.drain();
            echoed += co_await reader.readline();
        }
        writer.write_eof();
        const std::string rest = co_await reader.read();
        CHECK(echoed == "line 0\nline 1\nline 2\n");
        CHECK(rest.empty());
        CHECK(reader.at_eof());
        CHECK(record->server_side == false);
        CHECK(server_record->server_side == true);
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("upgrade_transport: the reader's flow control moves to the new transport") {
    auto main = []() -> Coro<void> {
        const std::string before(20, 'j');
        const std::string after(100, 'x');
        auto server_record = std::make_shared<UpgradeRecord>();
        auto sender = [before, after, server_record](StreamReader reader,
                                                     StreamWriter writer) -> Coro<void> {
            writer.write(before + "!");
            Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('s', server_record));
            co_await std::move(upgrading);
            writer.write(after + "!");
            co_await writer.drain();
            const std::string rest = co_await reader.read();
            writer.close();
        };
        auto server = co_await asyncio::start_server(sender, "127.0.0.1", 0);
        asyncio::OpenOptions small;
        small.limit = 4;
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port(), small);
        // readuntil finds the "!" but refuses the long chunk, leaving all of
        // it buffered: more than twice the limit, so reading is paused.
        bool overrun = false;
        try {
            const std::string chunk = co_await reader.readuntil("!");
        } catch (const asyncio::LimitOverrunError&) {
            overrun = true;
        }
        CHECK(overrun);
        CHECK_FALSE(writer.transport().is_reading());
        auto record = std::make_shared<UpgradeRecord>();
        Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
        co_await std::move(upgrading);
        // The reader still holds more than it may: the new transport is
        // paused instead, and the one below reads for the layer.
        CHECK(record->layer->pause_reading_calls == 1);
        CHECK_FALSE(writer.transport().is_reading());
        CHECK(record->layer->below_transport()->is_reading());
        const std::string plain = co_await reader.readexactly(21);
        CHECK(plain == before + "!");
        CHECK(writer.transport().is_reading());
        overrun = false;
        try {
            const std::string chunk = co_await reader.readuntil("!");
        } catch (const asyncio::LimitOverrunError&) {
            overrun = true;
        }
        CHECK(overrun);
        CHECK(record->layer->pause_reading_calls == 2);
        const std::string layered = co_await reader.readexactly(101);
        CHECK(layered == after + "!");
        CHECK(writer.transport().is_reading());
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("a failed upgrade closes the connection; the reader and wait_closed see the error") {
    auto main = []() -> Coro<void> {
        auto refuser = [](StreamReader reader, StreamWriter writer) -> Coro<void> {
            const std::string key = co_await reader.readexactly(1);
            writer.close();
        };
        auto server = co_await asyncio::start_server(refuser, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        auto record = std::make_shared<UpgradeRecord>();
        std::error_code upgrade_error, read_error, closed_error;
        try {
            Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
            co_await std::move(upgrading);
        } catch (const std::system_error& e) {
            upgrade_error = e.code();
        }
        CHECK(upgrade_error == std::errc::connection_reset);
        CHECK(writer.is_closing());
        try {
            const std::string data = co_await reader.read();
        } catch (const std::system_error& e) {
            read_error = e.code();
        }
        CHECK(read_error == std::errc::connection_reset);
        try {
            co_await writer.wait_closed();
        } catch (const std::system_error& e) {
            closed_error = e.code();
        }
        CHECK(closed_error == std::errc::connection_reset);
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("a cancelled upgrade closes the connection; the reader sees EOF") {
    auto main = []() -> Coro<void> {
        auto key_arrived = std::make_shared<asyncio::Event>();
        auto silent = [key_arrived](StreamReader reader, StreamWriter writer) -> Coro<void> {
            const std::string key = co_await reader.readexactly(1);
            key_arrived->set();
            const std::string rest = co_await reader.read();  // never answers the handshake
            writer.close();
        };
        auto server = co_await asyncio::start_server(silent, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        auto record = std::make_shared<UpgradeRecord>();
        Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
        auto task = asyncio::create_task(std::move(upgrading));
        co_await key_arrived->wait();  // the layer is in, waiting for its handshake
        CHECK(record->calls == 1);
        task.cancel();
        const bool cancelled = co_await asyncio_test::ends_cancelled(std::move(task));
        CHECK(cancelled);
        CHECK(writer.is_closing());
        const std::string eof = co_await reader.read();
        CHECK(eof.empty());
        CHECK(reader.at_eof());
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("upgrade_transport: data right behind the handshake leaves nothing paused") {
    auto main = []() -> Coro<void> {
        const std::string first(20, 'a');
        const std::string second(100, 'b');
        // By hand, so that the server's key and its first data leave in one
        // write: the client's layer passes the data on before the stream
        // has moved onto it, and the reader pauses the transport below.
        auto by_hand = [first, second](StreamReader reader, StreamWriter writer) -> Coro<void> {
            const std::string key = co_await reader.readexactly(1);
            writer.write("s" + xored(first, 's'));
            const std::string go = co_await reader.readexactly(3);
            if (xored(go, key[0]) == "go\n") writer.write(xored(second, 's'));
            co_await writer.drain();
            const std::string rest = co_await reader.read();
            writer.close();
        };
        auto server = co_await asyncio::start_server(by_hand, "127.0.0.1", 0);
        asyncio::OpenOptions small;
        small.limit = 4;
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port(), small);
        auto record = std::make_shared<UpgradeRecord>();
        Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
        co_await std::move(upgrading);
        const std::string got_first = co_await reader.readexactly(20);
        CHECK(got_first == first);
        writer.write("go\n");
        co_await writer.drain();
        const std::string got_second = co_await reader.readexactly(100);
        CHECK(got_second == second);
        CHECK(record->layer->below_transport()->is_reading());
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("an upgrade that fails before its layer goes in leaves the stream as it was") {
    auto main = []() -> Coro<void> {
        auto server = co_await asyncio::start_server(echo_lines, "127.0.0.1", 0);
        auto [reader, writer] =
            co_await asyncio::open_connection("127.0.0.1", server.sockets().front().port());
        StreamWriter::TransportUpgrade refuse =
            [](asyncio::Transport&, std::shared_ptr<asyncio::BaseProtocol>,
               bool) -> Coro<std::shared_ptr<asyncio::Transport>> {
            throw std::invalid_argument("bad context");
            co_return nullptr;
        };
        bool refused = false;
        try {
            Coro<void> upgrading = writer.upgrade_transport(std::move(refuse));
            co_await std::move(upgrading);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
        CHECK_FALSE(writer.is_closing());
        writer.write("still here\n");
        const std::string echoed = co_await reader.readline();
        CHECK(echoed == "still here\n");
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE(
    "upgrade_transport on a closing writer raises RuntimeError, on a lost one "
    "ConnectionResetError") {
    auto main = []() -> Coro<void> {
        const auto fds = asyncio_test::socket_pair();
        asyncio::Socket peer = asyncio::Socket::from_fd(fds[1]);
        auto [reader, writer] = co_await asyncio::open_connection(asyncio::Socket::from_fd(fds[0]));
        auto record = std::make_shared<UpgradeRecord>();
        // Closing with data still buffered (the peer does not read), below
        // the high-water mark so that drain() does not wait.
        writer.transport().set_write_buffer_limits(64 * 1024 * 1024);
        writer.write(std::string(8 * 1024 * 1024, 'z'));
        CHECK(writer.transport().get_write_buffer_size() > 0);
        writer.close();
        bool closing_refused = false;
        try {
            Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
            co_await std::move(upgrading);
        } catch (const asyncio::RuntimeError&) {
            closing_refused = true;
        }
        CHECK(closing_refused);
        writer.transport().abort();
        co_await writer.wait_closed();
        std::error_code error;
        try {
            Coro<void> upgrading = writer.upgrade_transport(xor_upgrade('c', record));
            co_await std::move(upgrading);
        } catch (const std::system_error& e) {
            error = e.code();
        }
        CHECK(error == std::errc::connection_reset);
        CHECK(record->calls == 0);
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("open_connection(sock) refusing TLS options leaves the socket to the caller") {
    auto main = []() -> Coro<bool> {
        const auto fds = asyncio_test::socket_pair();
        asyncio::Socket mine = asyncio::Socket::from_fd(fds[0]);
        asyncio::Socket peer = asyncio::Socket::from_fd(fds[1]);
        asyncio::OpenOptions hostname;
        hostname.server_hostname = "example.com";
        bool refused = false;
        try {
            co_await asyncio::open_connection(std::move(mine), hostname);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        co_return refused&& mine.fileno() == fds[0];
    };
    CHECK(run_guarded(main()));
}
