// wait, wait_for, shield and as_completed: ports of CPython's test_tasks.py
// (test_wait_*, test_shield_*, test_as_completed_*) and test_waitfor.py,
// including the races CPython fixed in 3.12. Timeouts run on a TestClock
// (run_paused), so they expire at exact loop times without waiting.
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Future;
using asyncio::Task;
using asyncio_test::run_guarded;
using asyncio_test::run_paused;

namespace {

Coro<int> value_after(int steps, int value) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    co_return value;
}

Coro<int> fail_after(int steps) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    throw std::runtime_error("failed");
}

double loop_time() {
    return asyncio::get_running_loop().time();
}

Coro<int> never() {
    auto f = asyncio::get_running_loop().create_future<int>();
    co_return co_await f;
}

}  // namespace

// -- wait --------------------------------------------------------------------------

TEST_CASE("wait ALL_COMPLETED returns when every task is done") {
    auto main = []() -> Coro<void> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(1, 1)),
                                     asyncio::create_task(value_after(5, 2))};
        auto [done, pending] = co_await asyncio::wait(tasks);
        CHECK(done.size() == 2);
        CHECK(pending.empty());
        CHECK(done[0] == tasks[0]);
    };
    run_guarded(main());
}

TEST_CASE("wait FIRST_COMPLETED returns after the first task is done") {
    auto main = []() -> Coro<void> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(1, 1)),
                                     asyncio::create_task(never())};
        auto [done, pending] =
            co_await asyncio::wait(tasks, {.return_when = asyncio::FIRST_COMPLETED});
        REQUIRE(done.size() == 1);
        CHECK(done[0] == tasks[0]);
        REQUIRE(pending.size() == 1);
        CHECK_FALSE(pending[0].done());  // wait never cancels
        pending[0].cancel();
    };
    run_guarded(main());
}

TEST_CASE("wait FIRST_EXCEPTION returns at the first failure, else when all are done") {
    auto main = []() -> Coro<void> {
        std::vector<Task<int>> tasks{asyncio::create_task(fail_after(1)),
                                     asyncio::create_task(value_after(1, 2)),
                                     asyncio::create_task(never())};
        auto [done, pending] =
            co_await asyncio::wait(tasks, {.return_when = asyncio::FIRST_EXCEPTION});
        CHECK(done.size() == 2);
        CHECK(pending.size() == 1);
        CHECK(tasks[0].exception() != nullptr);
        tasks[2].cancel();

        std::vector<Task<int>> fine{asyncio::create_task(value_after(1, 1)),
                                    asyncio::create_task(value_after(3, 2))};
        auto result = co_await asyncio::wait(fine, {.return_when = asyncio::FIRST_EXCEPTION});
        CHECK(result.done.size() == 2);
    };
    run_guarded(main());
}

TEST_CASE("wait with a timeout returns the pending tasks without raising") {
    auto main = []() -> Coro<void> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(1, 1)),
                                     asyncio::create_task(never())};
        auto [done, pending] = co_await asyncio::wait(tasks, {.timeout = 10ms});
        CHECK(loop_time() == 0.01);
        CHECK(done.size() == 1);
        CHECK(pending.size() == 1);
        CHECK_FALSE(pending[0].cancelled());
        pending[0].cancel();
    };
    run_paused(main());
}

TEST_CASE("wait refuses an empty set") {
    auto main = []() -> Coro<void> { co_await asyncio::wait(std::vector<Task<int>>{}); };
    CHECK_THROWS_AS(run_guarded(main()), std::invalid_argument);
}

TEST_CASE("cancelling a task in wait does not cancel what it waits for") {
    auto main = []() -> Coro<void> {
        Task<int> child = asyncio::create_task(never());
        auto waiter = [](Task<int> c) -> Coro<void> {
            std::vector<Task<int>> one{c};  // GCC 12: no braced temporaries in co_await
            co_await asyncio::wait(one);
        };
        Task<void> outer = asyncio::create_task(waiter(child));
        co_await asyncio::sleep(0);
        outer.cancel();
        try {
            co_await outer;
        } catch (const CancelledError&) {
        }
        CHECK(outer.cancelled());
        CHECK_FALSE(child.done());
        child.cancel();
    };
    run_guarded(main());
}

// -- wait_for --------------------------------------------------------------------------

TEST_CASE("wait_for returns a result that arrives in time") {
    auto main = []() -> Coro<int> {
        const int value = co_await asyncio::wait_for(value_after(2, 7), 10s);
        CHECK(loop_time() == 0.0);
        co_return value;
    };
    CHECK(run_paused(main()) == 7);
}

TEST_CASE("wait_for raises TimeoutError and cancels the awaitable, after it finished") {
    auto main = []() -> Coro<void> {
        Task<int> inner = asyncio::create_task(never());
        bool timed_out = false;
        try {
            co_await asyncio::wait_for(inner, 1h);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(loop_time() == 3600.0);
        CHECK(inner.cancelled());  // cancelled and awaited before wait_for returned
        CHECK(asyncio::current_task()->cancelling() == 0);
    };
    run_paused(main());
}

TEST_CASE("wait_for with a zero or negative timeout") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto done = loop.create_future<int>();
        done.set_result(3);
        const int got = co_await asyncio::wait_for(done, 0s);
        CHECK(got == 3);
        Task<int> pending = asyncio::create_task(never());
        bool timed_out = false;
        try {
            co_await asyncio::wait_for(pending, -1s);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(pending.cancelled());
        CHECK(loop_time() == 0.0);  // expired at once
    };
    run_paused(main());
}

TEST_CASE("wait_for without a deadline just awaits") {
    auto main = []() -> Coro<int> {
        co_return co_await asyncio::wait_for(value_after(2, 4), std::optional<double>{});
    };
    CHECK(run_guarded(main()) == 4);
}

TEST_CASE("wait_for returns the value of an awaitable that swallows the cancellation") {
    // GH-86296: not TimeoutError.
    auto main = []() -> Coro<int> {
        auto returns_42 = []() -> Coro<int> {
            try {
                co_await asyncio::sleep(10s);
            } catch (const CancelledError&) {
                co_return 42;
            }
            co_return 0;
        };
        const int value = co_await asyncio::wait_for(returns_42(), 5ms);
        CHECK(loop_time() == 0.005);
        co_return value;
    };
    CHECK(run_paused(main()) == 42);
}

TEST_CASE("wait_for waits for an awaitable that ignores the cancellation") {
    auto main = []() -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        auto release = loop.create_future<int>();
        auto stubborn = [](Future<int> gate) -> Coro<int> {
            try {
                co_await asyncio::sleep(10s);
            } catch (const CancelledError&) {
            }
            co_return co_await gate;  // keeps running after the cancellation
        };
        Task<int> inner = asyncio::create_task(stubborn(release));
        loop.call_later(20ms, [release]() mutable { release.set_result(9); });
        const int got = co_await asyncio::wait_for(inner, 5ms);
        CHECK(inner.done());
        CHECK(loop_time() == 0.02);  // the release, well after the timeout
        co_return got;
    };
    CHECK(run_paused(main()) == 9);
}

TEST_CASE("a result arriving together with the timeout is not lost") {
    // The inner future's result and the deadline are processed in the same
    // loop iteration, the result first: wait_for returns it.
    asyncio::TestClock clock;
    auto main = [](asyncio::TestClock& clock) -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        auto inner = loop.create_future<int>();
        loop.call_at(0.01, [inner]() mutable { inner.set_result(5); });
        // Move the clock past the deadline (0.02) at once, so both become due together.
        loop.call_soon([&clock] { clock.advance_time(0.025); });
        const int value = co_await asyncio::wait_for(inner, 20ms);
        CHECK(loop.time() == 0.025);
        co_return value;
    };
    CHECK(run_guarded(main(clock), {.clock = &clock}) == 5);
}

TEST_CASE("wait_for propagates an outside cancellation, not TimeoutError") {
    auto main = []() -> Coro<void> {
        auto waiter = []() -> Coro<void> { co_await asyncio::wait_for(never(), 10s); };
        Task<void> outer = asyncio::create_task(waiter());
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        outer.cancel();
        bool cancelled = false;
        try {
            co_await outer;
        } catch (const CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
    };
    run_guarded(main());
}

TEST_CASE("wait_for rethrows the awaitable's exception") {
    auto main = []() -> Coro<void> { co_await asyncio::wait_for(fail_after(1), 10s); };
    CHECK_THROWS_WITH(run_guarded(main()), "failed");
}

// -- shield ---------------------------------------------------------------------------

TEST_CASE("shield keeps the inner task running when the outer one is cancelled") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto gate = loop.create_future<int>();
        auto inner_body = [](Future<int> g) -> Coro<int> { co_return co_await g; };
        Task<int> inner = asyncio::create_task(inner_body(gate));
        auto outer_body = [](Task<int> t) -> Coro<int> { co_return co_await asyncio::shield(t); };
        Task<int> outer = asyncio::create_task(outer_body(inner));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        outer.cancel();
        bool outer_cancelled = false;
        try {
            co_await outer;
        } catch (const CancelledError&) {
            outer_cancelled = true;
        }
        CHECK(outer_cancelled);
        CHECK_FALSE(inner.done());
        gate.set_result(8);
        const int inner_result = co_await inner;
        CHECK(inner_result == 8);
    };
    run_guarded(main());
}

TEST_CASE("shield of a done task returns its result; of a failing one its exception") {
    auto main = []() -> Coro<void> {
        Task<int> done = asyncio::create_task(value_after(0, 3));
        co_await asyncio::sleep(0);
        const int got = co_await asyncio::shield(done);
        CHECK(got == 3);
        bool failed = false;
        try {
            co_await asyncio::shield(fail_after(1));
        } catch (const std::runtime_error&) {
            failed = true;
        }
        CHECK(failed);
    };
    run_guarded(main());
}

TEST_CASE("shield of a task cancelled from outside raises CancelledError") {
    auto main = []() -> Coro<bool> {
        Task<int> inner = asyncio::create_task(never());
        asyncio::get_running_loop().call_later(1ms, [inner]() mutable { inner.cancel(); });
        try {
            co_await asyncio::shield(inner);
        } catch (const CancelledError&) {
            co_return loop_time() == 0.001;
        }
        co_return false;
    };
    CHECK(run_paused(main()));
}

// -- as_completed --------------------------------------------------------------------

TEST_CASE("as_completed yields results in completion order") {
    auto main = []() -> Coro<std::vector<int>> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(6, 3)),
                                     asyncio::create_task(value_after(2, 1)),
                                     asyncio::create_task(value_after(4, 2))};
        std::vector<int> order;
        for (auto next : asyncio::as_completed(tasks)) {
            const int v = co_await std::move(next);
            order.push_back(v);
        }
        co_return order;
    };
    CHECK(run_guarded(main()) == std::vector<int>{1, 2, 3});
}

TEST_CASE("as_completed as an async iterator yields the tasks") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(3, 0), {.name = "slow"}),
                                     asyncio::create_task(value_after(1, 0), {.name = "fast"})};
        auto completed = asyncio::as_completed(tasks);
        std::vector<std::string> names;
        while (auto task = co_await completed.next())
            names.push_back(task->get_name());
        co_return names;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"fast", "slow"});
}

TEST_CASE("as_completed with a timeout raises TimeoutError for what is left") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<Task<int>> tasks{asyncio::create_task(value_after(1, 1)),
                                     asyncio::create_task(never())};
        std::vector<std::string> outcomes;
        for (auto next : asyncio::as_completed(tasks, 10ms)) {
            try {
                const int v = co_await std::move(next);
                outcomes.push_back(std::to_string(v));
            } catch (const asyncio::TimeoutError&) {
                outcomes.push_back("timeout at " + std::to_string(loop_time()));
            }
        }
        tasks[1].cancel();
        co_return outcomes;
    };
    CHECK(run_paused(main()) == std::vector<std::string>{"1", "timeout at 0.010000"});
}

TEST_CASE("as_completed rethrows a task's exception at its turn") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<Task<int>> tasks{asyncio::create_task(fail_after(1)),
                                     asyncio::create_task(value_after(3, 2))};
        std::vector<std::string> outcomes;
        for (auto next : asyncio::as_completed(tasks)) {
            try {
                const int v = co_await std::move(next);
                outcomes.push_back(std::to_string(v));
            } catch (const std::runtime_error& e) {
                outcomes.push_back(e.what());
            }
        }
        co_return outcomes;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"failed", "2"});
}
