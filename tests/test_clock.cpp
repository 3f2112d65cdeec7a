// TestClock: the virtual clock of loops under test (CPython's
// test_utils.TestLoop time, tokio's paused time). Each case runs on every
// backend: auto-advance must poll without blocking on io_uring, epoll and poll.
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::EventLoop;
using asyncio::TestClock;

namespace {

struct ClockLoop {
    explicit ClockLoop(bool auto_advance = true) : clock(auto_advance) { loop->set_clock(&clock); }
    TestClock clock;
    std::unique_ptr<EventLoop> loop = asyncio::new_event_loop();
    EventLoop* operator->() { return loop.get(); }
    void run_once() {
        loop->stop();
        loop->run_forever();
    }
};

double wall_seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("a loop on a TestClock reads its time from the clock") {
    ClockLoop loop(false);
    CHECK(loop->get_clock() == &loop.clock);
    CHECK(loop->time() == 0.0);
    loop.clock.advance_time(1.5);
    CHECK(loop->time() == 1.5);
    loop.clock.advance_time(9ms);
    CHECK(loop->time() == 1.509);
    CHECK(loop.clock.time() == 1.509);
    loop.run_once();
    CHECK(loop->time() == 1.509);  // without timers nothing moves it
}

TEST_CASE("advance_time makes timers due; they run at the next iteration") {
    ClockLoop loop(false);
    std::vector<double> fired;
    loop->call_later(10s, [&] { fired.push_back(loop->time()); });
    loop.run_once();
    CHECK(fired.empty());
    loop.clock.advance_time(9.999);
    loop.run_once();
    CHECK(fired.empty());
    loop.clock.advance_time(0.001);
    CHECK(fired.empty());  // advancing runs nothing by itself
    loop.run_once();
    CHECK(fired == std::vector<double>{10.0});
}

TEST_CASE("advance_time refuses to go back") {
    TestClock clock;
    CHECK_THROWS_AS(clock.advance_time(-1.0), std::invalid_argument);
    CHECK_THROWS_AS(clock.advance_time(std::nan("")), std::invalid_argument);
    clock.advance_time(0.0);
    CHECK(clock.time() == 0.0);
}

TEST_CASE("auto-advance jumps an idle loop to each timer in turn") {
    ClockLoop loop;
    std::vector<double> fired;
    for (double delay : {3600.0, 0.25, 60.0}) {
        loop->call_later(delay, [&] {
            fired.push_back(loop->time());
            if (fired.size() == 3) loop->stop();
        });
    }
    const auto start = std::chrono::steady_clock::now();
    loop->run_forever();
    CHECK(fired == std::vector<double>{0.25, 60.0, 3600.0});
    CHECK(wall_seconds_since(start) < 5.0);  // an hour of loop time, no waiting
}

TEST_CASE("timers due at the same time run in scheduling order, at that time") {
    ClockLoop loop;
    std::vector<int> order;
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) {
        loop->call_at(7.0, [&, i] {
            order.push_back(i);
            times.push_back(loop->time());
        });
    }
    loop->call_at(7.0, [&] { loop->stop(); });
    loop->run_forever();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(times == std::vector<double>(5, 7.0));
}

TEST_CASE("a timer scheduled in the past runs at once and leaves the clock alone") {
    ClockLoop loop;
    loop.clock.advance_time(100.0);
    std::vector<int> order;
    std::vector<double> times;
    loop->call_at(250.0, [&] { order.push_back(3); });
    loop->call_at(50.0, [&] {
        order.push_back(1);
        times.push_back(loop->time());
    });
    loop->call_at(-5.0, [&] { order.push_back(0); });  // earlier still: first
    loop->call_later(0s, [&] {
        order.push_back(2);
        times.push_back(loop->time());
    });
    loop.run_once();
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(times == std::vector<double>{100.0, 100.0});
}

TEST_CASE("auto-advance waits while callbacks are ready") {
    ClockLoop loop;
    int steps = 0;
    bool time_stood_still = true;
    double timer_fired_at = -1;
    loop->call_later(1s, [&] {
        timer_fired_at = loop->time();
        loop->stop();
    });
    // A chain of 100 callbacks keeps the loop busy for 100 iterations.
    std::function<void()> step = [&] {
        time_stood_still = time_stood_still && loop->time() == 0.0;
        if (++steps < 100) loop->call_soon([&] { step(); });
    };
    loop->call_soon([&] { step(); });
    loop->run_forever();
    CHECK(steps == 100);
    CHECK(time_stood_still);
    CHECK(timer_fired_at == 1.0);
}

TEST_CASE("auto-advance runs ready I/O before it jumps", "[posix]") {
    // add_reader: IOCP has no readiness (the case below is its form).
#ifndef _WIN32
    ClockLoop loop;
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    REQUIRE(::write(fds[1], "x", 1) == 1);
    double read_at = -1;
    double timer_at = -1;
    loop->add_reader(fds[0], [&] {
        char byte;
        REQUIRE(::read(fds[0], &byte, 1) == 1);
        read_at = loop->time();
        loop->remove_reader(fds[0]);
    });
    loop->call_later(10s, [&] {
        timer_at = loop->time();
        loop->stop();
    });
    loop->run_forever();
    ::close(fds[0]);
    ::close(fds[1]);
    CHECK(read_at == 0.0);
    CHECK(timer_at == 10.0);
#endif
}

TEST_CASE("auto-advance runs completed I/O before it jumps") {
    // The completion backends' form of the case above (a readiness backend
    // finds the data at once): the recv completes in the kernel, and the
    // poll that auto-advance makes before a jump must collect it.
    ClockLoop loop;
    const auto fds = asyncio_test::socket_pair();
    REQUIRE(asyncio_test::raw_send(fds[1], "x", 1) == 1);
    // On a loopback TCP pair (Windows) the byte may still be on its way:
    // a blocking peek waits for it, so that the recv below finds it there.
    char peeked = 0;
#ifdef _WIN32
    REQUIRE(::recv(static_cast<SOCKET>(fds[0]), &peeked, 1, MSG_PEEK) == 1);
#else
    REQUIRE(::recv(fds[0], &peeked, 1, MSG_PEEK) == 1);
#endif
    asyncio::Socket reader = asyncio::Socket::from_fd(fds[0]);
    asyncio::Socket writer = asyncio::Socket::from_fd(fds[1]);
    double read_at = -1;
    double timer_at = -1;
    std::string received;
    auto read = [&]() -> Coro<void> {
        received = co_await loop->sock_recv(reader, 16);
        read_at = loop->time();
    };
    auto task = loop->create_task(read());
    loop->call_later(10s, [&] {
        timer_at = loop->time();
        loop->stop();
    });
    loop->run_forever();
    CHECK(task.done());
    CHECK(received == "x");
    CHECK(read_at == 0.0);
    CHECK(timer_at == 10.0);
}

TEST_CASE("a paused clock lets call_soon_threadsafe wake the loop") {
    // Without auto-advance the timer can only become due through the clock:
    // the loop blocks in the backend until another thread's call arrives.
    ClockLoop loop(false);
    double fired_at = -1;
    loop->call_later(10s, [&] {
        fired_at = loop->time();
        loop->stop();
    });
    std::thread helper;
    loop->call_soon([&] {
        helper =
            std::thread([&] { loop->call_soon_threadsafe([&] { loop.clock.advance_time(10s); }); });
    });
    loop->run_forever();
    helper.join();
    CHECK(fired_at == 10.0);
}

TEST_CASE("an auto-advancing loop with no timer waits for call_soon_threadsafe") {
    ClockLoop loop;
    std::thread helper;
    double fired_at = -1;
    loop->call_soon([&] {
        helper = std::thread([&] {
            loop->call_soon_threadsafe([&] {
                loop->call_later(2s, [&] {
                    fired_at = loop->time();
                    loop->stop();
                });
            });
        });
    });
    loop->run_forever();
    helper.join();
    CHECK(fired_at == 2.0);
}

TEST_CASE("executor work holds an auto-advancing clock until it delivers") {
    asyncio_test::CapturedLog log;
    TestClock clock;
    auto main = []() -> Coro<double> {
        auto& loop = asyncio::get_running_loop();
        // Idle with a timer an hour away: without the hold the clock would
        // jump there before the thread's result arrives.
        const int got = co_await asyncio::wait_for(asyncio::to_thread([] { return 5; }), 1h);
        CHECK(got == 5);
        CHECK(loop.time() == 0.0);
        co_await asyncio::sleep(1h);  // released: jumps again
        co_return loop.time();
    };
    CHECK(asyncio::run(main(), {.clock = &clock}) == 3600.0);
    // Nor does the Runner's join of the executor's threads time out.
    CHECK_FALSE(log.contains("did not finish joining"));
}

TEST_CASE("set_clock is refused while timers are scheduled or the loop runs") {
    auto loop = asyncio::new_event_loop();
    TestClock clock;
    auto timer = loop->call_later(1s, [] {});
    CHECK_THROWS_AS(loop->set_clock(&clock), asyncio::RuntimeError);
    timer.cancel();
    loop->stop();
    loop->run_forever();  // drops the cancelled timer
    loop->call_soon([&] {
        CHECK_THROWS_AS(loop->set_clock(&clock), asyncio::RuntimeError);
        loop->stop();
    });
    loop->run_forever();
    loop->set_clock(&clock);
    CHECK(loop->time() == 0.0);
    loop->set_clock(nullptr);
    CHECK(loop->get_clock() == nullptr);
}

TEST_CASE("asyncio::run on a TestClock: an hour of sleep takes no time") {
    TestClock clock;
    auto main = []() -> Coro<double> {
        auto& loop = asyncio::get_running_loop();
        const double start = loop.time();
        co_await asyncio::sleep(1h);
        co_return loop.time() - start;
    };
    const auto start = std::chrono::steady_clock::now();
    CHECK(asyncio::run(main(), {.clock = &clock}) == 3600.0);
    CHECK(wall_seconds_since(start) < 5.0);
    CHECK(clock.time() == 3600.0);
}

TEST_CASE("run_guarded keeps its limit in wall time, not on the TestClock") {
    TestClock clock;
    auto main = []() -> Coro<double> {
        co_await asyncio::sleep(24h);  // far past the guard's 60 s
        co_return asyncio::get_running_loop().time();
    };
    CHECK(asyncio_test::run_guarded(main(), {.clock = &clock}) == 86400.0);
}

TEST_CASE("the hang guard cancels a run that waits forever on a paused clock") {
    TestClock clock(false);
    asyncio::Runner runner({.clock = &clock});
    auto forever = []() -> Coro<void> {
        co_await asyncio::sleep(1s);  // the clock never gets there
    };
    asyncio_test::HangGuard guard(runner.get_loop(), 0s);
    CHECK_THROWS_AS(runner.run(forever()), asyncio::CancelledError);
    CHECK(guard.fired());
}
