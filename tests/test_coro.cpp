// Coro<T>: laziness, results, exceptions, references, single await, and the
// stack-safety of long chains of synchronously completing awaits.
#include <memory>
#include <stdexcept>
#include <string>

#include "support.hpp"

using asyncio::Coro;
using asyncio_test::run_guarded;

namespace {

Coro<int> answer() {
    co_return 42;
}
Coro<void> nothing() {
    co_return;
}
Coro<std::string> text(std::string s) {
    co_return s + "!";
}
Coro<int> fails() {
    throw std::runtime_error("boom");
    co_return 0;
}
Coro<int&> ref_to(int& x) {
    co_return x;
}
Coro<std::unique_ptr<int>> move_only() {
    co_return std::make_unique<int>(7);
}

Coro<int> add(int a, int b) {
    int x = co_await answer();
    co_return x - 42 + a + b;
}

}  // namespace

TEST_CASE("a coroutine returns its value to the awaiter") {
    CHECK(run_guarded(add(1, 2)) == 3);
    CHECK(run_guarded(text("hi")) == "hi!");
    CHECK(*run_guarded(move_only()) == 7);
}

TEST_CASE("a coroutine does not run until it is awaited") {
    bool ran = false;
    auto body = [](bool& flag) -> Coro<void> {
        flag = true;
        co_return;
    };
    auto main = [&]() -> Coro<void> {
        Coro<void> lazy = body(ran);
        CHECK_FALSE(ran);
        co_await lazy;
        CHECK(ran);
    };
    run_guarded(main());
}

TEST_CASE("an exception thrown in a coroutine reaches its awaiter") {
    auto main = []() -> Coro<std::string> {
        try {
            co_await fails();
        } catch (const std::runtime_error& e) {
            co_return e.what();
        }
        co_return "not thrown";
    };
    CHECK(run_guarded(main()) == "boom");
    CHECK_THROWS_WITH(run_guarded(fails()), "boom");
}

TEST_CASE("a coroutine may return a reference") {
    int value = 1;
    auto main = [&]() -> Coro<void> {
        int& r = co_await ref_to(value);
        r = 5;
        co_await nothing();
    };
    run_guarded(main());
    CHECK(value == 5);
}

TEST_CASE("awaiting a coroutine twice is refused") {
    auto main = []() -> Coro<std::string> {
        Coro<int> c = answer();
        co_await c;
        CHECK_FALSE(c.valid());
        try {
            co_await c;
        } catch (const asyncio::RuntimeError& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    CHECK(run_guarded(main()) == "cannot reuse already awaited coroutine");
}

TEST_CASE("a moved-from coroutine cannot be awaited") {
    auto main = []() -> Coro<bool> {
        Coro<int> a = answer();
        Coro<int> b = std::move(a);
        const int got = co_await std::move(b);
        CHECK(got == 42);
        try {
            co_await a;
        } catch (const asyncio::RuntimeError&) {
            co_return true;
        }
        co_return false;
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("a coroutine never awaited is reported with its name") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        { Coro<int> dropped = answer(); }
        REQUIRE(reports.messages.size() == 1);
        CHECK(reports.contains("was never awaited"));
        CHECK(reports.contains("answer"));
        Coro<int> closed = answer();
        closed.close();
        CHECK(reports.messages.size() == 1);
        co_return;
    };
    run_guarded(main());
}

namespace {
Coro<int> one() {
    co_return 1;
}
Coro<long> many_sync_awaits(long n) {
    long sum = 0;
    for (long i = 0; i < n; ++i)
        sum += co_await one();
    co_return sum;
}
Coro<int> deep(int depth) {
    if (depth == 0) co_return 0;
    co_return 1 + co_await deep(depth - 1);
}
}  // namespace

TEST_CASE("ten million synchronously completing awaits do not grow the stack") {
    CHECK(run_guarded(many_sync_awaits(10'000'000)) == 10'000'000);
}

TEST_CASE("deeply nested coroutines unwind their results") {
    CHECK(run_guarded(deep(2'000)) == 2'000);
}

TEST_CASE("a coroutine that suspends in the middle of a chain resumes its callers") {
    auto leaf = []() -> Coro<int> {
        co_await asyncio::sleep(0);
        co_return 3;
    };
    auto middle = [&]() -> Coro<int> {
        int v = co_await leaf();
        co_await asyncio::sleep(0);
        co_return v * 2;
    };
    auto top = [&]() -> Coro<int> {
        int sum = 0;
        for (int i = 0; i < 100; ++i)
            sum += co_await middle();
        co_return sum;
    };
    CHECK(run_guarded(top()) == 600);
}

// -- try_await ---------------------------------------------------------------------------

TEST_CASE("try_await gives the value or the exception of a coroutine") {
    auto main = []() -> Coro<void> {
        asyncio::Outcome<int> value = co_await asyncio::detail::try_await(answer());
        CHECK(value.has_value());
        CHECK(value.value() == 42);

        asyncio::Outcome<int> failure = co_await asyncio::detail::try_await(fails());
        CHECK_FALSE(failure.has_value());
        CHECK_THROWS_WITH(std::move(failure).get(), "boom");

        asyncio::Outcome<void> done = co_await asyncio::detail::try_await(nothing());
        CHECK(done.has_value());
        CHECK(done.exception() == nullptr);

        int x = 1;
        asyncio::Outcome<int&> ref = co_await asyncio::detail::try_await(ref_to(x));
        CHECK(&std::move(ref).get() == &x);

        asyncio::Outcome<std::unique_ptr<int>> moved =
            co_await asyncio::detail::try_await(move_only());
        CHECK(*std::move(moved).get() == 7);
    };
    asyncio::run(main());
}

TEST_CASE("try_await catches what any step of the co_await throws") {
    auto main = []() -> Coro<void> {
        // Making the awaiter: a coroutine awaited twice.
        Coro<int> once = answer();
        co_await once;
        asyncio::Outcome<int> again = co_await asyncio::detail::try_await(once);
        CHECK_THROWS_AS(std::move(again).get(), asyncio::RuntimeError);

        // await_suspend: a future of another loop.
        asyncio::EventLoop other;
        asyncio::Future<int> foreign = other.create_future<int>();
        asyncio::Outcome<int> refused = co_await asyncio::detail::try_await(foreign);
        CHECK_THROWS_WITH(std::move(refused).get(), "Task got Future attached to a different loop");
        other.close();

        // await_resume: the task is cancelled while it waits; the coroutine
        // goes on, and may await again before it lets the error out.
        asyncio::Future<int> never = asyncio::get_running_loop().create_future<int>();
        asyncio::current_task()->cancel();
        asyncio::Outcome<int> cancelled = co_await asyncio::detail::try_await(never);
        CHECK(asyncio::detail::is_cancellation(cancelled.exception()));
        asyncio::current_task()->uncancel();
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
}
