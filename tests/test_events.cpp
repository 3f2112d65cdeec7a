// The event loop: ports of CPython's test_events.py and test_base_events.py
// (call_soon order, timers, stop, run_until_complete, closed-loop and nested
// misuse, exception handler, add_reader/add_writer, debug mode, policy).
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::EventLoop;

namespace {

struct Loop {
    std::unique_ptr<EventLoop> loop = asyncio::new_event_loop();
    EventLoop* operator->() { return loop.get(); }
    EventLoop& operator*() { return *loop; }
    void run_once() {
        loop->stop();
        loop->run_forever();
    }
};

#ifndef _WIN32
struct Pipe {
    int read_end = -1, write_end = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    ~Pipe() {
        ::close(read_end);
        ::close(write_end);
    }
};
#endif

}  // namespace

TEST_CASE("call_soon runs callbacks in FIFO order") {
    Loop loop;
    std::vector<int> order;
    for (int i = 0; i < 10; ++i)
        loop->call_soon([&order, i] { order.push_back(i); });
    loop->call_soon([&] { loop->stop(); });
    loop->run_forever();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("callbacks scheduled by a callback run in the next iteration") {
    Loop loop;
    std::vector<std::string> order;
    loop->call_soon([&] {
        order.push_back("a");
        loop->call_soon([&] { order.push_back("c"); });
    });
    loop->call_soon([&] { order.push_back("b"); });
    loop.run_once();
    CHECK(order == std::vector<std::string>{"a", "b"});
    loop.run_once();
    CHECK(order == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("a cancelled handle does not run") {
    Loop loop;
    int ran = 0;
    asyncio::Handle h = loop->call_soon([&] { ++ran; });
    loop->call_soon([&] { ++ran; });
    CHECK_FALSE(h.cancelled());
    h.cancel();
    CHECK(h.cancelled());
    loop.run_once();
    CHECK(ran == 1);
}

TEST_CASE("a callable too big to store inline still runs") {
    Loop loop;
    std::array<long, 64> big{};
    big[63] = 5;
    long seen = 0;
    loop->call_soon([big, &seen] { seen = big[63]; });
    loop.run_once();
    CHECK(seen == 5);
}

TEST_CASE("stop: soon, stop, soon") {
    // CPython 3.13: stop() before run_forever lets exactly one iteration run,
    // and that iteration runs every callback that was ready when it started.
    Loop loop;
    std::vector<std::string> result;
    loop->call_soon([&] { result.push_back("Hello"); });
    loop->stop();
    loop->call_soon([&] {
        result.push_back("World");
        loop->stop();
    });
    loop->run_forever();
    CHECK(result == std::vector<std::string>{"Hello", "World"});
    // A callback scheduled during the stopping iteration waits for the next run.
    loop->call_soon([&] {
        result.push_back("again");
        loop->call_soon([&] { result.push_back("later"); });
        loop->stop();
    });
    loop->run_forever();
    CHECK(result == std::vector<std::string>{"Hello", "World", "again"});
    loop.run_once();
    CHECK(result.back() == "later");
}

TEST_CASE("stop before run_forever runs exactly one iteration") {
    Loop loop;
    int ran = 0;
    loop->call_soon([&] {
        ++ran;
        loop->call_soon([&] { ++ran; });
    });
    loop->stop();
    loop->run_forever();
    CHECK(ran == 1);
    CHECK_FALSE(loop->is_running());
}

TEST_CASE("is_running") {
    Loop loop;
    bool inside = false;
    loop->call_soon([&] {
        inside = loop->is_running();
        loop->stop();
    });
    CHECK_FALSE(loop->is_running());
    loop->run_forever();
    CHECK(inside);
    CHECK_FALSE(loop->is_running());
}

TEST_CASE("timers fire in deadline order, equal deadlines in scheduling order") {
    asyncio::TestClock clock;
    Loop loop;
    loop->set_clock(&clock);
    std::vector<int> order;
    std::vector<double> times;
    const auto record = [&](int id) {
        order.push_back(id);
        times.push_back(loop->time());
    };
    const double now = loop->time();
    loop->call_at(now + 0.03, [&] { record(3); });
    loop->call_at(now + 0.01, [&] { record(1); });
    loop->call_at(now + 0.02, [&] { record(20); });
    loop->call_at(now + 0.02, [&] { record(21); });
    loop->call_at(now + 0.02, [&] { record(22); });
    loop->call_later(30ms, [&] { record(4); });  // after the first 0.03
    loop->call_later(0.04, [&] {
        record(5);
        loop->stop();
    });
    loop->run_forever();
    CHECK(order == std::vector<int>{1, 20, 21, 22, 3, 4, 5});
    CHECK(times == std::vector<double>{0.01, 0.02, 0.02, 0.02, 0.03, 0.03, 0.04});
}

// On the real clock: the backends' timeouts must not round a wait down.
TEST_CASE("a timer never fires early") {
    Loop loop;
    const double start = loop->time();
    double fired = 0;
    loop->call_later(20ms, [&] {
        fired = loop->time();
        loop->stop();
    });
    loop->run_forever();
    CHECK(fired - start >= 0.020);
}

TEST_CASE("negative and zero delays act as zero") {
    // call_later clamps a negative delay to zero; call_at with a past time
    // keeps its (earlier) deadline and so runs first, as in CPython.
    Loop loop;
    std::vector<int> order;
    loop->call_later(-5s, [&] { order.push_back(1); });
    loop->call_later(0.0, [&] { order.push_back(2); });
    loop->call_later(-1.0, [&] { order.push_back(3); });
    loop->call_at(loop->time() - 100, [&] { order.push_back(4); });
    loop.run_once();
    CHECK(order == std::vector<int>{4, 1, 2, 3});
}

TEST_CASE("a NaN delay or time is refused (a documented difference)") {
    // CPython does not check; here deadlines are integer nanoseconds, and a
    // NaN has none (converting it is undefined behaviour).
    Loop loop;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_AS(loop->call_later(nan, [] {}), std::invalid_argument);
    CHECK_THROWS_AS(loop->call_later(std::chrono::duration<double>(nan), [] {}),
                    std::invalid_argument);
    CHECK_THROWS_AS(loop->call_at(nan, [] {}), std::invalid_argument);
    CHECK(loop->stats().timers == 0);
}

TEST_CASE("TimerHandle.when() and cancel") {
    Loop loop;
    int ran = 0;
    const double at = loop->time() + 1000;
    asyncio::TimerHandle h = loop->call_at(at, [&] { ++ran; });
    CHECK(std::abs(h.when() - at) < 1e-6);
    h.cancel();
    CHECK(h.cancelled());
    auto soon = loop->call_later(0s, [&] { ++ran; });
    soon.cancel();
    loop.run_once();
    CHECK(ran == 0);
    CHECK(loop->stats().timers == 0);  // cancelled heads are pruned
}

TEST_CASE("cancelled timers are compacted out of the heap") {
    Loop loop;
    std::vector<asyncio::TimerHandle> handles;
    for (int i = 0; i < 200; ++i) {
        handles.push_back(loop->call_later(3600.0 + i, [] {}));
    }
    CHECK(loop->stats().timers == 200);
    // Cancel from the back so that the head stays live: only compaction helps.
    for (int i = 199; i >= 50; --i)
        handles[i].cancel();
    CHECK(loop->stats().cancelled_timers == 150);
    loop.run_once();
    CHECK(loop->stats().timers == 50);
    CHECK(loop->stats().cancelled_timers == 0);
    // Below the threshold (more than half cancelled, more than 100 entries),
    // only cancelled heads are removed.
    for (int i = 1; i < 30; ++i)
        handles[i].cancel();
    loop.run_once();
    CHECK(loop->stats().timers == 50);
    CHECK(loop->stats().cancelled_timers == 29);
    handles[0].cancel();
    loop.run_once();
    CHECK(loop->stats().timers == 20);
    CHECK(loop->stats().cancelled_timers == 0);
}

TEST_CASE("run_until_complete returns a coroutine's result") {
    asyncio::TestClock clock;
    Loop loop;
    loop->set_clock(&clock);
    auto coro = []() -> Coro<int> {
        co_await asyncio::sleep(1ms);
        co_return 42;
    };
    CHECK(loop->run_until_complete(coro()) == 42);
    CHECK(loop->time() == 0.001);
}

TEST_CASE("run_until_complete with a future and a task") {
    Loop loop;
    auto fut = loop->create_future<std::string>();
    loop->call_soon([fut]() mutable { fut.set_result("done"); });
    CHECK(loop->run_until_complete(fut) == "done");
    auto body = []() -> Coro<int> { co_return 5; };
    auto task = loop->create_task(body());
    CHECK(loop->run_until_complete(task) == 5);
    auto failing = []() -> Coro<void> {
        throw std::logic_error("nope");
        co_return;
    };
    CHECK_THROWS_AS(loop->run_until_complete(failing()), std::logic_error);
}

TEST_CASE("run_until_complete stopped early") {
    Loop loop;
    auto fut = loop->create_future();
    loop->call_soon([&] { loop->stop(); });
    CHECK_THROWS_WITH(loop->run_until_complete(fut), "Event loop stopped before Future completed.");
    fut.set_result();
    loop->run_until_complete(fut);  // the stray stop request is gone
}

TEST_CASE("run_until_complete with a future of another loop") {
    Loop loop, other;
    auto fut = other->create_future();
    CHECK_THROWS_AS(loop->run_until_complete(fut), std::invalid_argument);
}

TEST_CASE("a closed loop refuses work") {
    Loop loop;
    loop->close();
    CHECK(loop->is_closed());
    CHECK_THROWS_WITH(loop->call_soon([] {}), "Event loop is closed");
    CHECK_THROWS_WITH(loop->call_later(1s, [] {}), "Event loop is closed");
    CHECK_THROWS_WITH(loop->call_soon_threadsafe([] {}), "Event loop is closed");
    CHECK_THROWS_WITH(loop->run_forever(), "Event loop is closed");
    auto body = []() -> Coro<void> { co_return; };
    CHECK_THROWS_WITH(loop->run_until_complete(body()), "Event loop is closed");
    CHECK_THROWS_WITH(loop->create_task(body()), "Event loop is closed");
    loop->close();  // a second close is harmless
}

TEST_CASE("close drops pending callbacks and timers") {
    Loop loop;
    auto owned = std::make_shared<int>(1);
    loop->call_soon([owned] {});
    loop->call_later(1h, [owned] {});
    CHECK(owned.use_count() == 3);
    loop->close();
    CHECK(owned.use_count() == 1);
}

TEST_CASE("closing or re-running a running loop is refused") {
    Loop loop;
    std::string close_error, run_error, complete_error;
    loop->call_soon([&] {
        try {
            loop->close();
        } catch (const asyncio::RuntimeError& e) {
            close_error = e.what();
        }
        try {
            loop->run_forever();
        } catch (const asyncio::RuntimeError& e) {
            run_error = e.what();
        }
        try {
            loop->run_until_complete(loop->create_future());
        } catch (const asyncio::RuntimeError& e) {
            complete_error = e.what();
        }
        loop->stop();
    });
    loop->run_forever();
    CHECK(close_error == "Cannot close a running event loop");
    CHECK(run_error == "This event loop is already running");
    CHECK(complete_error == "This event loop is already running");
}

TEST_CASE("running a second loop inside a running one is refused") {
    Loop outer, inner;
    std::string error;
    outer->call_soon([&] {
        try {
            inner->run_forever();
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        outer->stop();
    });
    outer->run_forever();
    CHECK(error == "Cannot run the event loop while another loop is running");
}

TEST_CASE("get_running_loop") {
    CHECK_THROWS_WITH(asyncio::get_running_loop(), "no running event loop");
    Loop loop;
    EventLoop* seen = nullptr;
    loop->call_soon([&] {
        seen = &asyncio::get_running_loop();
        loop->stop();
    });
    loop->run_forever();
    CHECK(seen == loop.loop.get());
    CHECK_THROWS_AS(asyncio::get_running_loop(), asyncio::RuntimeError);
}

TEST_CASE("call_soon_threadsafe from 4 threads, 10,000 calls each, loses none") {
    Loop loop;
    constexpr int kThreads = 4, kCalls = 10'000;
    long total = 0;
    int done_threads = 0;
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            while (!go.load())
                std::this_thread::yield();
            for (int i = 0; i < kCalls; ++i) {
                loop->call_soon_threadsafe([&total, i, t] { total += i + t; });
            }
            loop->call_soon_threadsafe([&] {
                if (++done_threads == kThreads) loop->stop();
            });
        });
    }
    loop->call_soon([&] { go = true; });
    loop->run_forever();
    for (auto& th : threads)
        th.join();
    long expected = 0;
    for (int t = 0; t < kThreads; ++t) {
        for (int i = 0; i < kCalls; ++i)
            expected += i + t;
    }
    CHECK(total == expected);
    CHECK(done_threads == kThreads);
}

TEST_CASE("call_soon_threadsafe wakes a loop blocked waiting") {
    Loop loop;
    bool woke = false;
    std::thread helper;
    loop->call_soon([&] {
        // The loop has nothing else to do: it blocks in the backend until
        // the other thread's call arrives.
        helper = std::thread([&] {
            loop->call_soon_threadsafe([&] {
                woke = true;
                loop->stop();
            });
        });
    });
    loop->run_forever();
    helper.join();
    CHECK(woke);
}

TEST_CASE("a handle from call_soon_threadsafe can be cancelled from its thread") {
    Loop loop;
    int ran = 0;
    std::thread([&] {
        auto h = loop->call_soon_threadsafe([&] { ++ran; });
        h.cancel();
        loop->call_soon_threadsafe([&] { loop->stop(); });
    }).join();
    loop->run_forever();
    CHECK(ran == 0);
}

// -- exception handler -------------------------------------------------------------

TEST_CASE("an exception in a callback goes to the exception handler") {
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    int after = 0;
    loop->call_soon([] { throw std::runtime_error("callback failed"); });
    loop->call_soon([&] { ++after; });
    loop.run_once();
    REQUIRE(reports.contexts.size() == 1);
    CHECK(reports.contains("Exception in callback"));
    CHECK(reports.contexts[0].handle.has_value());
    CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception), "callback failed");
    CHECK(after == 1);
}

TEST_CASE("the default exception handler logs") {
    asyncio_test::CapturedLog log;
    Loop loop;
    loop->call_soon([] { throw std::runtime_error("to the log"); });
    loop.run_once();
    CHECK(log.contains("Exception in callback"));
    CHECK(log.contains("to the log"));
    REQUIRE_FALSE(log.lines.empty());
    CHECK(log.lines[0].first == asyncio::LogLevel::error);
}

TEST_CASE("an exception handler that throws falls back to the default one") {
    asyncio_test::CapturedLog log;
    Loop loop;
    loop->set_exception_handler([](EventLoop&, const asyncio::ExceptionContext&) {
        throw std::runtime_error("handler broke");
    });
    loop->call_exception_handler({.message = "original"});
    CHECK(log.contains("Unhandled error in exception handler"));
    CHECK(log.contains("handler broke"));
    CHECK(log.contains("original"));
}

TEST_CASE("get/set exception handler") {
    Loop loop;
    CHECK_FALSE(loop->get_exception_handler());
    std::string seen;
    loop->set_exception_handler([&](EventLoop& l, const asyncio::ExceptionContext& c) {
        CHECK(&l == loop.loop.get());
        seen = c.message;
    });
    CHECK(loop->get_exception_handler());
    loop->call_exception_handler({.message = "custom"});
    CHECK(seen == "custom");
    loop->set_exception_handler(nullptr);
    CHECK_FALSE(loop->get_exception_handler());
}

// -- add_reader / add_writer ---------------------------------------------------------
//
// The cases tagged [posix] watch pipes' and sockets' readiness, which the
// IOCP backend has not (CPython's ProactorEventLoop has no add_reader).

TEST_CASE(
    "add_reader and add_writer raise NotImplementedError on iocp, signal handlers on Windows") {
    // CPython's ProactorEventLoop inherits BaseEventLoop's add_reader and
    // add_writer, which raise NotImplementedError, and on Windows
    // add_signal_handler raises it too.
    Loop loop;
    const auto fds = asyncio_test::socket_pair(/*non_blocking=*/true);
    if (loop->backend_kind() == asyncio::Backend::iocp) {
        CHECK_THROWS_AS(loop->add_reader(fds[0], [] {}), asyncio::NotImplementedError);
        CHECK_THROWS_AS(loop->add_writer(fds[0], [] {}), asyncio::NotImplementedError);
        CHECK_THROWS_WITH(loop->add_reader(fds[0], [] {}),
                          "add_reader() is not supported by the iocp backend");
    }
#ifdef _WIN32
    CHECK_THROWS_AS(loop->add_signal_handler(SIGINT, [] {}), asyncio::NotImplementedError);
    CHECK_THROWS_AS(loop->remove_signal_handler(SIGINT), asyncio::NotImplementedError);
#endif
    asyncio_test::close_socket(fds[0]);
    asyncio_test::close_socket(fds[1]);
}

TEST_CASE("add_reader calls back while the fd is readable (level-triggered)", "[posix]") {
#ifndef _WIN32
    Loop loop;
    Pipe pipe;
    int calls = 0;
    std::string received;
    loop->add_reader(pipe.read_end, [&] {
        ++calls;
        if (calls < 3) return;  // leave the byte unread: must be called again
        char buf[16];
        const ssize_t n = ::read(pipe.read_end, buf, sizeof buf);
        if (n > 0) received.append(buf, static_cast<std::size_t>(n));
        CHECK(loop->remove_reader(pipe.read_end));
        loop->stop();
    });
    REQUIRE(::write(pipe.write_end, "x", 1) == 1);
    loop->run_forever();
    CHECK(calls == 3);
    CHECK(received == "x");
    CHECK_FALSE(loop->remove_reader(pipe.read_end));
#endif
}

TEST_CASE("add_reader replaces an earlier reader", "[posix]") {
#ifndef _WIN32
    Loop loop;
    Pipe pipe;
    std::vector<int> who;
    loop->add_reader(pipe.read_end, [&] { who.push_back(1); });
    loop->add_reader(pipe.read_end, [&] {
        who.push_back(2);
        char c;
        CHECK(::read(pipe.read_end, &c, 1) == 1);
        loop->remove_reader(pipe.read_end);
        loop->stop();
    });
    REQUIRE(::write(pipe.write_end, "y", 1) == 1);
    loop->run_forever();
    CHECK(who == std::vector<int>{2});
#endif
}

TEST_CASE("add_writer calls back when the fd is writable", "[posix]") {
#ifndef _WIN32
    Loop loop;
    Pipe pipe;
    int calls = 0;
    loop->add_writer(pipe.write_end, [&] {
        ++calls;
        CHECK(loop->remove_writer(pipe.write_end));
        loop->stop();
    });
    loop->run_forever();
    CHECK(calls == 1);
    CHECK_FALSE(loop->remove_writer(pipe.write_end));
#endif
}

TEST_CASE("reader and writer on one fd, removed independently", "[posix]") {
#ifndef _WIN32
    Loop loop;
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    int reads = 0, writes = 0;
    loop->add_writer(sv[0], [&] {
        ++writes;
        REQUIRE(::write(sv[0], "z", 1) == 1);
        loop->remove_writer(sv[0]);
    });
    loop->add_reader(sv[1], [&] {
        char c;
        if (::read(sv[1], &c, 1) == 1) ++reads;
        loop->remove_reader(sv[1]);
        loop->stop();
    });
    loop->run_forever();
    CHECK(reads == 1);
    CHECK(writes == 1);
    ::close(sv[0]);
    ::close(sv[1]);
#endif
}

TEST_CASE("add_reader with a bad fd throws at once", "[posix]") {
#ifndef _WIN32
    Loop loop;
    CHECK_THROWS_AS(loop->add_reader(-1, [] {}), std::invalid_argument);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    ::close(fds[0]);
    ::close(fds[1]);
    CHECK_THROWS_AS(loop->add_reader(fds[0], [] {}), std::system_error);
#endif
}

TEST_CASE("add_reader and add_writer refuse a descriptor a transport owns") {
    // CPython's _ensure_fd_no_transport: a watch on a transport's descriptor
    // would steal its readiness (or, on io_uring, race its reads).
    struct Seen {
        std::vector<std::string> errors;
        bool removed_after_close = true;
    };
    auto main = []() -> Coro<Seen> {
        auto& loop = asyncio::get_running_loop();
        const auto fds = asyncio_test::socket_pair();
        asyncio::Socket mine = asyncio::Socket::from_fd(fds[0]);
        asyncio::Socket theirs = asyncio::Socket::from_fd(fds[1]);
        const int fd = theirs.fileno();
        auto factory = [] { return std::make_shared<asyncio::Protocol>(); };
        auto [transport, protocol] =
            co_await loop.connect_accepted_socket(factory, std::move(theirs));
        Seen seen;
        const auto refused = [&seen](auto&& call) {
            try {
                call();
                seen.errors.emplace_back("accepted");
            } catch (const asyncio::RuntimeError& e) {
                seen.errors.emplace_back(e.what());
            }
        };
        refused([&] { loop.add_reader(fd, [] {}); });
        refused([&] { loop.add_writer(fd, [] {}); });
        refused([&] { loop.remove_reader(fd); });
        refused([&] { loop.remove_writer(fd); });
        transport->close();  // a closing transport's descriptor is no longer checked
        seen.removed_after_close = loop.remove_reader(fd);
        co_return seen;
    };
    const Seen seen = asyncio_test::run_guarded(main());
    REQUIRE(seen.errors.size() == 4);
    for (const std::string& error : seen.errors)
        CHECK(error.rfind("File descriptor ", 0) == 0);
    CHECK(seen.errors[0].find("is used by transport <Transport fd=") != std::string::npos);
    CHECK_FALSE(seen.removed_after_close);
}

TEST_CASE("an exception in a reader callback is reported and the reader stays", "[posix]") {
#ifndef _WIN32
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    Pipe pipe;
    int calls = 0;
    loop->add_reader(pipe.read_end, [&] {
        if (++calls == 1) throw std::runtime_error("reader failed");
        loop->remove_reader(pipe.read_end);
        loop->stop();
    });
    REQUIRE(::write(pipe.write_end, "x", 1) == 1);
    loop->run_forever();
    CHECK(calls == 2);
    CHECK(reports.contains("Exception in callback"));
#endif
}

// -- debug mode ---------------------------------------------------------------------

TEST_CASE("debug mode logs slow callbacks") {
    asyncio_test::CapturedLog log;
    Loop loop;
    loop->set_debug(true);
    CHECK(loop->get_debug());
    loop->slow_callback_duration = 0.0;  // every callback is "slow": deterministic
    loop->call_soon([] {});
    loop.run_once();
    CHECK(log.contains("Executing <Handle created at"));
    CHECK(log.contains("seconds"));
}

TEST_CASE("debug mode refuses call_soon from another thread") {
    Loop loop;
    loop->set_debug(true);
    std::string error;
    loop->call_soon([&] {
        std::thread([&] {
            try {
                loop->call_soon([] {});
            } catch (const asyncio::RuntimeError& e) {
                error = e.what();
            }
        }).join();
        loop->stop();
    });
    loop->run_forever();
    CHECK(error == "Non-thread-safe operation invoked on an event loop other than the current one");
}

TEST_CASE("debug mode does not thread-check create_future") {
    // base_events.py: create_future has no _check_thread().
    Loop loop;
    loop->set_debug(true);
    bool made = false;
    loop->call_soon([&] {
        std::thread([&] {
            asyncio::Future<int> fut = loop->create_future<int>();
            made = !fut.done();
        }).join();
        loop->stop();
    });
    loop->run_forever();
    CHECK(made);
}

TEST_CASE("ASYNCIO_DEBUG turns on debug mode") {
    asyncio_test::set_environment("ASYNCIO_DEBUG", "1");
    Loop debug_loop;
    asyncio_test::unset_environment("ASYNCIO_DEBUG");
    Loop plain_loop;
    CHECK(debug_loop->get_debug());
    CHECK_FALSE(plain_loop->get_debug());
}

// -- task factory ----------------------------------------------------------------------

TEST_CASE("a task factory sees and may rename every new task") {
    Loop loop;
    int created = 0;
    loop->set_task_factory([&](EventLoop&, asyncio::Task<>& task, asyncio::TaskOptions&) {
        ++created;
        task.set_name("made-" + std::to_string(created));
    });
    CHECK(loop->get_task_factory());
    auto body = []() -> Coro<std::string> { co_return asyncio::current_task()->get_name(); };
    CHECK(loop->run_until_complete(body()) == "made-1");
    CHECK(loop->run_until_complete(body()) == "made-2");
    loop->set_task_factory(nullptr);
    CHECK(loop->run_until_complete(body()).rfind("Task-", 0) == 0);
}

// -- policy ------------------------------------------------------------------------------

TEST_CASE("get_event_loop and set_event_loop") {
    Loop loop;
    asyncio::set_event_loop(loop.loop.get());
    CHECK(&asyncio::get_event_loop() == loop.loop.get());
    asyncio::set_event_loop(nullptr);
    std::string error;
    std::thread([&] {
        try {
            asyncio::get_event_loop();
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
    }).join();
    CHECK(error == "There is no current event loop in this thread.");
}

TEST_CASE("get_event_loop in the main thread creates a loop once") {
    asyncio::set_event_loop_policy(nullptr);  // a fresh default policy
    EventLoop& first = asyncio::get_event_loop();
    EventLoop& second = asyncio::get_event_loop();
    CHECK(&first == &second);
    CHECK_FALSE(first.is_closed());
    asyncio::set_event_loop_policy(nullptr);
}

TEST_CASE("a custom policy decides what new_event_loop makes") {
    struct CountingPolicy : asyncio::EventLoopPolicy {
        int* made;
        explicit CountingPolicy(int* counter) : made(counter) {}
        std::unique_ptr<EventLoop> new_event_loop() override {
            ++*made;
            auto loop = EventLoopPolicy::new_event_loop();
            loop->set_debug(true);
            return loop;
        }
    };
    int made = 0;
    asyncio::set_event_loop_policy(std::make_unique<CountingPolicy>(&made));
    auto loop = asyncio::new_event_loop();
    CHECK(made == 1);
    CHECK(loop->get_debug());
    auto body = []() -> Coro<bool> { co_return asyncio::get_running_loop().get_debug(); };
    CHECK(asyncio::run(body()));
    CHECK(made == 2);
    asyncio::set_event_loop_policy(nullptr);
}

TEST_CASE("the loop runs on the backend it was asked for") {
    const asyncio::Backend expected = asyncio::default_backend();
    Loop loop;
    CHECK(loop->backend_kind() == expected);
    CHECK(loop->backend_name() == asyncio::to_string(expected));
    if (const char* env = std::getenv("ASYNCIO_BACKEND")) CHECK(loop->backend_name() == env);
}
