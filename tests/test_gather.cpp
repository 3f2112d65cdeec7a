// gather: ports of CPython's test_tasks.py gather tests (GatherTests,
// test_gather_*): order, void results, the first exception, return_exceptions,
// cancellation both ways, children that are coroutines start at once.
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Future;
using asyncio::Task;
using asyncio_test::run_guarded;

namespace {

Coro<int> value_after(int steps, int value) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    co_return value;
}

Coro<void> fail_after(int steps, std::string what) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    throw std::runtime_error(what);
}

Coro<void> forever() {
    auto never = asyncio::get_running_loop().create_future();
    co_await never;
}

}  // namespace

TEST_CASE("gather returns results in argument order, void as monostate") {
    auto main = []() -> Coro<std::tuple<int, std::monostate, std::string>> {
        auto text = []() -> Coro<std::string> { co_return "text"; };
        co_return co_await asyncio::gather(value_after(3, 1), asyncio::sleep(0), text());
    };
    auto [a, b, c] = run_guarded(main());
    CHECK(a == 1);
    CHECK(b == std::monostate{});
    CHECK(c == "text");
}

TEST_CASE("gather accepts tasks, futures and coroutines together") {
    auto main = []() -> Coro<int> {
        Task<int> task = asyncio::create_task(value_after(1, 10));
        Future<int> future = asyncio::get_running_loop().create_future<int>();
        asyncio::get_running_loop().call_soon([future]() mutable { future.set_result(20); });
        auto [x, y, z] = co_await asyncio::gather(task, future, value_after(2, 30));
        co_return x + y + z;
    };
    CHECK(run_guarded(main()) == 60);
}

TEST_CASE("gather of nothing returns at once") {
    auto main = []() -> Coro<std::size_t> {
        auto empty = co_await asyncio::gather();
        static_assert(std::tuple_size_v<decltype(empty)> == 0);
        auto none = co_await asyncio::gather(std::vector<Task<int>>{});
        co_return none.size();
    };
    CHECK(run_guarded(main()) == 0);
}

TEST_CASE("gather over a vector of tasks") {
    auto main = []() -> Coro<std::vector<int>> {
        std::vector<Task<int>> tasks;
        for (int i = 0; i < 5; ++i)
            tasks.push_back(asyncio::create_task(value_after(5 - i, i)));
        co_return co_await asyncio::gather(std::move(tasks));
    };
    CHECK(run_guarded(main()) == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("gather moves a move-only result it alone holds") {
    auto main = []() -> Coro<int> {
        auto make = []() -> Coro<std::unique_ptr<int>> { co_return std::make_unique<int>(7); };
        auto [p] = co_await asyncio::gather(make());
        co_return *p;
    };
    CHECK(run_guarded(main()) == 7);
}

TEST_CASE("gather starts coroutine children when called, not when awaited") {
    auto main = []() -> Coro<bool> {
        bool started = false;
        auto child = [](bool& flag) -> Coro<void> {
            flag = true;
            co_return;
        };
        auto gathering = asyncio::gather(child(started));
        co_await asyncio::sleep(0);
        const bool before_await = started;
        co_await std::move(gathering);
        co_return before_await;
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("the first exception propagates while the other children keep running") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        Task<int> slow = asyncio::create_task(value_after(10, 5));
        std::string error;
        try {
            co_await asyncio::gather(fail_after(1, "first"), slow, fail_after(3, "second"));
        } catch (const std::runtime_error& e) {
            error = e.what();
        }
        CHECK(error == "first");
        CHECK_FALSE(slow.done());
        const int slow_result = co_await slow;
        CHECK(slow_result == 5);
        // "second" failed after gather gave up on it: not a lost exception.
        CHECK(reports.contexts.empty());
    };
    run_guarded(main());
}

TEST_CASE("later exceptions of gathered children are not reported as lost") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        try {
            co_await asyncio::gather(fail_after(1, "first"), fail_after(2, "second"));
        } catch (const std::runtime_error&) {
        }
        for (int i = 0; i < 5; ++i)
            co_await asyncio::sleep(0);
        CHECK(reports.contexts.empty());
    };
    run_guarded(main());
}

TEST_CASE("gather with return_exceptions returns every outcome") {
    auto main = []() -> Coro<void> {
        Task<void> cancelled = asyncio::create_task(forever());
        asyncio::get_running_loop().call_soon([cancelled]() mutable { cancelled.cancel("gone"); });
        auto [ok, failed, gone] = co_await asyncio::gather(
            asyncio::return_exceptions, value_after(2, 3), fail_after(1, "bad"), cancelled);
        CHECK(ok.has_value());
        CHECK(ok.value() == 3);
        CHECK_FALSE(failed.has_value());
        CHECK_THROWS_WITH(failed.value(), "bad");
        REQUIRE(gone.exception() != nullptr);
        try {
            std::rethrow_exception(gone.exception());
        } catch (const CancelledError& e) {
            CHECK(e.message() == "gone");
        }
    };
    run_guarded(main());
}

TEST_CASE("gather with return_exceptions over a vector") {
    auto main = []() -> Coro<void> {
        std::vector<Task<int>> tasks;
        tasks.push_back(asyncio::create_task(value_after(1, 1)));
        auto failing = []() -> Coro<int> {
            co_await asyncio::sleep(0);
            throw std::logic_error("nope");
        };
        tasks.push_back(asyncio::create_task(failing()));
        auto outcomes = co_await asyncio::gather(asyncio::return_exceptions, tasks);
        REQUIRE(outcomes.size() == 2);
        CHECK(outcomes[0].value() == 1);
        CHECK_THROWS_AS(outcomes[1].value(), std::logic_error);
    };
    run_guarded(main());
}

TEST_CASE("a child cancelled by someone else makes gather raise CancelledError") {
    auto main = []() -> Coro<bool> {
        Task<void> child = asyncio::create_task(forever());
        asyncio::get_running_loop().call_soon([child]() mutable { child.cancel(); });
        try {
            co_await asyncio::gather(child, value_after(3, 1));
        } catch (const CancelledError&) {
            co_return true;
        }
        co_return false;
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("cancelling the task awaiting gather cancels every child") {
    auto main = []() -> Coro<void> {
        Task<void> a = asyncio::create_task(forever());
        Task<void> b = asyncio::create_task(forever());
        auto waiter = [](Task<void> x, Task<void> y) -> Coro<void> {
            co_await asyncio::gather(x, y);
        };
        Task<void> outer = asyncio::create_task(waiter(a, b));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        outer.cancel("stop");
        bool outer_cancelled = false;
        try {
            co_await outer;
        } catch (const CancelledError&) {
            outer_cancelled = true;
        }
        CHECK(outer_cancelled);
        CHECK(a.cancelled());
        CHECK(b.cancelled());
    };
    run_guarded(main());
}

TEST_CASE("cancelled gather raises CancelledError even if children swallow it") {
    auto main = []() -> Coro<void> {
        auto stubborn = []() -> Coro<int> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
            }
            co_return 1;
        };
        auto waiter = [&]() -> Coro<std::string> {
            try {
                co_await asyncio::gather(stubborn(), stubborn());
            } catch (const CancelledError&) {
                co_return "cancelled";
            }
            co_return "finished";
        };
        Task<std::string> outer = asyncio::create_task(waiter());
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        outer.cancel();
        const std::string outcome = co_await outer;
        CHECK(outcome == "cancelled");
    };
    run_guarded(main());
}

TEST_CASE("gather of futures that are already done") {
    auto main = []() -> Coro<int> {
        auto& loop = asyncio::get_running_loop();
        auto a = loop.create_future<int>();
        auto b = loop.create_future<int>();
        a.set_result(1);
        b.set_result(2);
        auto [x, y] = co_await asyncio::gather(a, b);
        co_return x + y;
    };
    CHECK(run_guarded(main()) == 3);
}

TEST_CASE("gather of one task twice returns its result twice") {
    auto main = []() -> Coro<std::vector<int>> {
        Task<int> t = asyncio::create_task(value_after(1, 4));
        std::vector<Task<int>> twice{t, t};  // GCC 12: no braced temporaries in co_await
        co_return co_await asyncio::gather(std::move(twice));
    };
    CHECK(run_guarded(main()) == std::vector<int>{4, 4});
}

TEST_CASE("gather starts its children in argument order") {
    auto main = []() -> Coro<std::vector<int>> {
        std::vector<int> order;
        auto child = [](std::vector<int>& out, int id) -> Coro<void> {
            out.push_back(id);
            co_return;
        };
        co_await asyncio::gather(child(order, 1), child(order, 2), child(order, 3));
        co_return order;
    };
    CHECK(run_guarded(main()) == std::vector<int>{1, 2, 3});
}
