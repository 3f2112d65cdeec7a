// Pipe transports: ports of CPython's test_events.py read/write pipe cases
// and test_unix_events.py's UnixReadPipeTransportTests /
// UnixWritePipeTransportTests (EOF, the reader closing, BrokenPipeError,
// flow control on a full pipe, pause_reading / resume_reading).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio_test::pattern;
using asyncio_test::Pipe;
using asyncio_test::run_guarded;

namespace {

/// Records what a pipe transport delivers; `want` bytes complete `got`.
struct Recorder : asyncio::Protocol {
    asyncio::BaseTransport* transport = nullptr;
    std::string data;
    std::size_t want = 0;
    bool keep_open_on_eof = false;
    int made = 0, eofs = 0, losses = 0, pauses = 0, resumes = 0;
    std::exception_ptr lost_error;
    asyncio::Future<> got, lost, paused, resumed;

    std::shared_ptr<asyncio::BaseTransport> keep;

    void connection_made(asyncio::BaseTransport& t) override {
        keep = t.shared_from_this();  // usable after connection_lost
        transport = &t;
        ++made;
    }
    void data_received(std::string_view d) override {
        data += d;
        if (want != 0 && data.size() >= want && !got.done()) got.set_result();
    }
    bool eof_received() override {
        ++eofs;
        return keep_open_on_eof;
    }
    void pause_writing() override {
        ++pauses;
        if (!paused.done()) paused.set_result();
    }
    void resume_writing() override {
        ++resumes;
        if (!resumed.done()) resumed.set_result();
    }
    void connection_lost(std::exception_ptr e) override {
        ++losses;
        lost_error = e;
        lost.set_result();
    }
    asyncio::ReadTransport& reader() { return dynamic_cast<asyncio::ReadTransport&>(*transport); }
    asyncio::WriteTransport& writer() { return dynamic_cast<asyncio::WriteTransport&>(*transport); }
};

Coro<std::shared_ptr<Recorder>> read_end(int fd) {
    auto proto = std::make_shared<Recorder>();
    auto factory = [&proto] { return proto; };
    co_await asyncio::get_running_loop().connect_read_pipe(factory, fd);
    co_return proto;
}

Coro<std::shared_ptr<Recorder>> write_end(int fd) {
    auto proto = std::make_shared<Recorder>();
    auto factory = [&proto] { return proto; };
    co_await asyncio::get_running_loop().connect_write_pipe(factory, fd);
    co_return proto;
}

std::error_code error_code_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code();
    } catch (...) {
    }
    return {};
}

/// Writes to the non-blocking `fd` until the pipe is full.
void fill_pipe(int fd) {
    const std::string chunk(4096, 'f');
    while (::write(fd, chunk.data(), chunk.size()) > 0) {
    }
    REQUIRE(errno == EAGAIN);
}

}  // namespace

TEST_CASE("connect_read_pipe delivers data, then EOF when the writer closes") {
    auto main = []() -> Coro<std::string> {
        Pipe pipe;
        auto proto = co_await read_end(pipe.read_fd);
        CHECK(proto->made == 1);
        CHECK(std::any_cast<int>(proto->transport->get_extra_info("pipe")) == pipe.read_fd);
        CHECK(proto->reader().is_reading());
        proto->want = 3;
        REQUIRE(::write(pipe.write_fd, "abc", 3) == 3);
        co_await proto->got;
        REQUIRE(::write(pipe.write_fd, "def", 3) == 3);
        ::close(pipe.write_fd);
        co_await proto->lost;
        CHECK(proto->eofs == 1);
        CHECK(proto->losses == 1);
        CHECK(proto->lost_error == nullptr);
        CHECK(proto->transport->is_closing());
        // The transport owned the read end and closed it.
        CHECK(::fcntl(pipe.read_fd, F_GETFD) == -1);
        co_return proto->data;
    };
    CHECK(run_guarded(main()) == "abcdef");
}

TEST_CASE("a read pipe closes at EOF even when eof_received asks to keep it open") {
    // _UnixReadPipeTransport._read_ready: EOF always ends a read pipe.
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto proto = std::make_shared<Recorder>();
        proto->keep_open_on_eof = true;
        auto factory = [&proto] { return proto; };
        co_await asyncio::get_running_loop().connect_read_pipe(factory, pipe.read_fd);
        ::close(pipe.write_fd);
        co_await proto->lost;
        CHECK(proto->eofs == 1);
        CHECK(proto->lost_error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("closing a read pipe transport calls connection_lost once") {
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto proto = co_await read_end(pipe.read_fd);
        proto->transport->close();
        CHECK(proto->transport->is_closing());
        CHECK_FALSE(proto->reader().is_reading());
        proto->transport->close();
        co_await proto->lost;
        CHECK(proto->losses == 1);
        CHECK(proto->eofs == 0);
        // The transport closed the read end: the writer sees a broken pipe.
        ::pollfd poll_fd{pipe.write_fd, POLLOUT, 0};
        REQUIRE(::poll(&poll_fd, 1, 0) == 1);
        CHECK((poll_fd.revents & POLLERR) != 0);
        ::close(pipe.write_fd);
    };
    run_guarded(main());
}

TEST_CASE("add_writer accepts a pipe transport's descriptor, as unix_events does") {
    // CPython guards only socket transports' descriptors (_SelectorTransport);
    // its pipe transports do not register theirs.
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Pipe pipe;
        auto proto = co_await write_end(pipe.write_fd);
        int ready = 0;
        CHECK_NOTHROW(loop.add_writer(pipe.write_fd, [&ready] { ++ready; }));
        CHECK(loop.remove_writer(pipe.write_fd));
        proto->transport->close();
        co_await proto->lost;
        ::close(pipe.read_fd);
    };
    run_guarded(main());
}

TEST_CASE("connect_write_pipe sends data, write_eof closes the pipe") {
    auto main = []() -> Coro<std::string> {
        Pipe pipe;
        auto reader = co_await read_end(pipe.read_fd);
        auto writer = co_await write_end(pipe.write_fd);
        CHECK(std::any_cast<int>(writer->transport->get_extra_info("pipe")) == pipe.write_fd);
        asyncio::WriteTransport& out = writer->writer();
        CHECK(out.can_write_eof());
        out.write("hello ");
        out.writelines(std::vector<std::string>{"pipe", "s"});
        out.write_eof();
        CHECK_THROWS_AS(out.write("late"), asyncio::RuntimeError);
        co_await reader->lost;  // EOF reached the reader
        co_await writer->lost;
        CHECK(writer->lost_error == nullptr);
        CHECK(reader->eofs == 1);
        co_return reader->data;
    };
    CHECK(run_guarded(main()) == "hello pipes");
}

TEST_CASE("a write pipe whose reader closes ends cleanly when nothing is buffered") {
    // test_unix_events: _read_ready without a buffer -> _close() -> connection_lost(None).
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto writer = co_await write_end(pipe.write_fd);
        // Pause at any byte buffered, so that resume_writing says the pipe took it
        // all: at once on a readiness backend, after its write completes on io_uring.
        writer->writer().set_write_buffer_limits(0);
        writer->writer().write("small");  // fits in the pipe: nothing stays buffered
        if (writer->pauses > 0) co_await writer->resumed;
        CHECK(writer->writer().get_write_buffer_size() == 0);
        ::close(pipe.read_fd);
        co_await writer->lost;
        CHECK(writer->losses == 1);
        CHECK(writer->lost_error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("a write pipe whose reader closes with data buffered gets BrokenPipeError") {
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto writer = co_await write_end(pipe.write_fd);
        writer->writer().write(pattern(1 << 20));  // more than the pipe holds
        CHECK(writer->writer().get_write_buffer_size() > 0);
        ::close(pipe.read_fd);
        co_await writer->lost;
        CHECK(writer->losses == 1);
        CHECK(error_code_of(writer->lost_error) == std::errc::broken_pipe);
        CHECK(writer->writer().get_write_buffer_size() == 0);
    };
    run_guarded(main());
}

TEST_CASE("writing to a pipe whose reader is gone fails with EPIPE, not SIGPIPE") {
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto writer = co_await write_end(pipe.write_fd);
        ::close(pipe.read_fd);
        // Before the transport notices the closed reader, a write hits EPIPE.
        writer->writer().write("into the void");
        co_await writer->lost;
        CHECK(writer->losses == 1);
        CHECK(error_code_of(writer->lost_error) == std::errc::broken_pipe);
        writer->writer().write("ignored after the loss");
    };
    run_guarded(main());
}

TEST_CASE("flow control on a full pipe: pause_writing and resume_writing") {
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto writer = co_await write_end(pipe.write_fd);
        asyncio::WriteTransport& out = writer->writer();
        CHECK(out.get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{16384, 65536});
        const std::string payload = pattern(512 * 1024);
        out.write(payload);
        CHECK(writer->pauses == 1);  // the pipe holds 64 KiB: the rest is over the mark
        CHECK(out.get_write_buffer_size() > 64 * 1024);
        CHECK(writer->resumes == 0);

        // A reader drains the pipe: the buffer goes, resume_writing follows.
        auto reader = co_await read_end(pipe.read_fd);
        reader->want = payload.size();
        co_await writer->resumed;
        co_await reader->got;
        CHECK(out.get_write_buffer_size() == 0);
        CHECK(writer->resumes == 1);
        CHECK(reader->data == payload);
        out.close();
        co_await writer->lost;
        co_await reader->lost;
        CHECK(reader->data == payload);
    };
    run_guarded(main());
}

TEST_CASE("set_write_buffer_limits on a pipe pauses at once when over the new mark") {
    auto main = []() -> Coro<void> {
        Pipe pipe;
        auto writer = co_await write_end(pipe.write_fd);
        asyncio::WriteTransport& out = writer->writer();
        // Filled behind the transport's back, so the pipe takes none of the
        // 100 bytes, on any backend.
        fill_pipe(pipe.write_fd);
        out.write(pattern(100));
        CHECK(out.get_write_buffer_size() == 100);
        CHECK(writer->pauses == 0);
        out.set_write_buffer_limits(50);
        CHECK(out.get_write_buffer_limits() == std::pair<std::size_t, std::size_t>{12, 50});
        CHECK(writer->pauses == 1);
        CHECK_THROWS_AS(out.set_write_buffer_limits(1, 2), std::invalid_argument);
        out.abort();
        co_await writer->lost;
        ::close(pipe.read_fd);
    };
    run_guarded(main());
}

TEST_CASE("pause_reading and resume_reading on a read pipe") {
    auto main = []() -> Coro<std::string> {
        Pipe paused_pipe, control_pipe;
        auto paused = co_await read_end(paused_pipe.read_fd);
        auto control = co_await read_end(control_pipe.read_fd);
        asyncio::ReadTransport& in = paused->reader();
        in.pause_reading();
        CHECK_FALSE(in.is_reading());
        in.pause_reading();  // idempotent
        REQUIRE(::write(paused_pipe.write_fd, "held", 4) == 4);
        // The control pipe, written after, delivers: the paused one did not.
        control->want = 2;
        REQUIRE(::write(control_pipe.write_fd, "go", 2) == 2);
        co_await control->got;
        co_await asyncio::sleep(0);
        CHECK(paused->data.empty());
        paused->want = 4;
        in.resume_reading();
        CHECK(in.is_reading());
        co_await paused->got;
        ::close(paused_pipe.write_fd);
        ::close(control_pipe.write_fd);
        co_await paused->lost;
        co_await control->lost;
        co_return paused->data;
    };
    CHECK(run_guarded(main()) == "held");
}

TEST_CASE("pipe transports refuse what is not a pipe, socket or character device") {
    char path[] = "/tmp/asyncio-test-pipe-XXXXXX";
    const int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    ::unlink(path);
    auto main = [](int fd) -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        co_await asyncio::get_running_loop().connect_read_pipe(factory, fd);
    };
    CHECK_THROWS_AS(run_guarded(main(file)), std::invalid_argument);
    auto write_main = [](int fd) -> Coro<void> {
        auto factory = [] { return std::make_shared<Recorder>(); };
        co_await asyncio::get_running_loop().connect_write_pipe(factory, fd);
    };
    CHECK_THROWS_AS(run_guarded(write_main(file)), std::invalid_argument);
    // Not taken over on failure: still open.
    CHECK(::fcntl(file, F_GETFD) != -1);
    ::close(file);
}
