// Future: ports of CPython's Lib/test/test_asyncio/test_futures.py.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using asyncio::Coro;
using asyncio::Future;
using asyncio_test::run_guarded;

namespace {

/// A loop for tests that drive it by hand, closed at scope exit.
struct Loop {
    std::unique_ptr<asyncio::EventLoop> loop = asyncio::new_event_loop();
    asyncio::EventLoop* operator->() { return loop.get(); }
    asyncio::EventLoop& operator*() { return *loop; }
    /// Runs one iteration (stop() before run_forever() runs exactly one).
    void run_once() {
        loop->stop();
        loop->run_forever();
    }
};

}  // namespace

TEST_CASE("a new future is pending") {
    Loop loop;
    auto f = loop->create_future<int>();
    CHECK_FALSE(f.cancelled());
    CHECK_FALSE(f.done());
    CHECK_THROWS_AS(f.result(), asyncio::InvalidStateError);
    CHECK_THROWS_WITH(f.result(), "Result is not ready.");
    CHECK_THROWS_AS(f.exception(), asyncio::InvalidStateError);
    CHECK_THROWS_WITH(f.exception(), "Exception is not set.");
}

TEST_CASE("cancelling a future") {
    Loop loop;
    auto f = loop->create_future<int>();
    CHECK(f.cancel());
    CHECK(f.cancelled());
    CHECK(f.done());
    CHECK_THROWS_AS(f.result(), asyncio::CancelledError);
    CHECK_THROWS_AS(f.exception(), asyncio::CancelledError);
    CHECK_THROWS_AS(f.set_result(1), asyncio::InvalidStateError);
    CHECK_THROWS_AS(f.set_exception(std::runtime_error("x")), asyncio::InvalidStateError);
    CHECK_FALSE(f.cancel());
}

TEST_CASE("the cancel message reaches the CancelledError") {
    Loop loop;
    auto f = loop->create_future<void>();
    f.cancel("my message");
    try {
        f.result();
        FAIL("result() did not throw");
    } catch (const asyncio::CancelledError& e) {
        CHECK(e.message() == "my message");
    }
}

TEST_CASE("a future with a result") {
    Loop loop;
    auto f = loop->create_future<int>();
    f.set_result(42);
    CHECK_FALSE(f.cancelled());
    CHECK(f.done());
    CHECK(f.result() == 42);
    CHECK(f.exception() == nullptr);
    CHECK_THROWS_WITH(f.set_result(2), "set_result(): the future is already done (FINISHED)");
    CHECK_THROWS_AS(f.set_exception(std::runtime_error("x")), asyncio::InvalidStateError);
    CHECK_FALSE(f.cancel());
}

TEST_CASE("a future with an exception") {
    Loop loop;
    auto f = loop->create_future<int>();
    f.set_exception(std::runtime_error("boom"));
    CHECK(f.done());
    CHECK_THROWS_WITH(f.result(), "boom");
    REQUIRE(f.exception() != nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(f.exception()), std::runtime_error);
    CHECK_THROWS_AS(f.set_result(1), asyncio::InvalidStateError);
    CHECK_FALSE(f.cancel());
    CHECK_THROWS_AS(f.set_exception(std::exception_ptr{}), asyncio::InvalidStateError);
    auto g = loop->create_future<int>();
    CHECK_THROWS_AS(g.set_exception(std::exception_ptr{}), std::invalid_argument);
}

TEST_CASE("Future<void> and Future<T&>") {
    Loop loop;
    auto v = loop->create_future();
    v.set_result();
    v.result();
    int x = 1;
    auto r = loop->create_future<int&>();
    r.set_result(x);
    r.result() = 7;
    CHECK(x == 7);
}

TEST_CASE("type erasure to Future<>") {
    Loop loop;
    auto typed = loop->create_future<std::string>();
    Future<> erased = typed;
    CHECK(erased == Future<>(typed));
    CHECK_FALSE(erased.done());
    CHECK_THROWS_AS(erased.set_result(), asyncio::InvalidStateError);
    typed.set_result("x");
    CHECK(erased.done());
    erased.result();
}

TEST_CASE("done callbacks run from the loop, in order, not inline") {
    Loop loop;
    std::vector<int> order;
    auto f = loop->create_future<int>();
    f.add_done_callback([&](Future<int>& done) { order.push_back(done.result()); });
    f.add_done_callback([&](Future<int>&) { order.push_back(100); });
    f.add_done_callback([&](Future<int>&) { order.push_back(200); });
    f.set_result(10);
    CHECK(order.empty());
    loop.run_once();
    CHECK(order == std::vector<int>{10, 100, 200});
}

TEST_CASE("a callback added to a done future is scheduled soon") {
    Loop loop;
    auto f = loop->create_future<int>();
    f.set_result(5);
    int seen = 0;
    f.add_done_callback([&](Future<int>& done) { seen = done.result(); });
    CHECK(seen == 0);
    loop.run_once();
    CHECK(seen == 5);
}

TEST_CASE("remove_done_callback") {
    Loop loop;
    std::vector<int> order;
    auto f = loop->create_future<int>();
    f.add_done_callback([&](Future<int>&) { order.push_back(1); });
    auto id = f.add_done_callback([&](Future<int>&) { order.push_back(2); });
    f.add_done_callback([&](Future<int>&) { order.push_back(3); });
    CHECK(f.remove_done_callback(id) == 1);
    CHECK(f.remove_done_callback(id) == 0);
    f.set_result(0);
    loop.run_once();
    CHECK(order == std::vector<int>{1, 3});
    CHECK(f.remove_done_callback(12345) == 0);
}

TEST_CASE("callbacks are scheduled on cancel too") {
    Loop loop;
    auto f = loop->create_future<int>();
    bool cancelled = false;
    f.add_done_callback([&](Future<int>& done) { cancelled = done.cancelled(); });
    f.cancel();
    loop.run_once();
    CHECK(cancelled);
}

TEST_CASE("an exception in a done callback goes to the exception handler") {
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    auto f = loop->create_future<int>();
    bool after = false;
    f.add_done_callback([](Future<int>&) { throw std::runtime_error("callback failed"); });
    f.add_done_callback([&](Future<int>&) { after = true; });
    f.set_result(1);
    loop.run_once();
    REQUIRE(reports.contexts.size() == 1);
    CHECK(reports.contains("Exception in callback"));
    CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception), "callback failed");
    CHECK(reports.contexts[0].future.has_value());
    CHECK(after);
}

TEST_CASE("an exception never retrieved is reported when the future dies") {
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    {
        auto f = loop->create_future<int>();
        f.set_exception(std::runtime_error("lost"));
    }
    REQUIRE(reports.contexts.size() == 1);
    CHECK(reports.messages[0] == "Future exception was never retrieved");
    CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception), "lost");
}

TEST_CASE("an exception retrieved by exception(), result() or cancel() is not reported") {
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    {
        auto f = loop->create_future<int>();
        f.set_exception(std::runtime_error("seen"));
        CHECK(f.exception() != nullptr);
    }
    {
        auto f = loop->create_future<int>();
        f.set_exception(std::runtime_error("seen"));
        CHECK_THROWS(f.result());
    }
    {
        auto f = loop->create_future<int>();
        f.set_exception(std::runtime_error("seen"));
        f.cancel();
    }
    CHECK(reports.contexts.empty());
}

TEST_CASE("a future that outlives its loop still reports to the log") {
    asyncio_test::CapturedLog log;
    std::optional<Future<int>> survivor;
    {
        Loop loop;
        survivor = loop->create_future<int>();
        survivor->set_exception(std::runtime_error("orphan"));
        loop->close();
    }
    survivor.reset();
    CHECK(log.contains("Future exception was never retrieved"));
    CHECK(log.contains("orphan"));
}

TEST_CASE("every awaiter of a future gets its result") {
    auto main = []() -> Coro<int> {
        auto f = asyncio::get_running_loop().create_future<int>();
        auto waiter = [](Future<int> fut) -> Coro<int> { co_return co_await fut; };
        auto a = asyncio::create_task(waiter(f));
        auto b = asyncio::create_task(waiter(f));
        co_await asyncio::sleep(0);
        f.set_result(21);
        const int first = co_await a;
        const int second = co_await b;
        co_return first + second;
    };
    CHECK(run_guarded(main()) == 42);
}

TEST_CASE("awaiting a done future does not suspend") {
    auto main = []() -> Coro<int> {
        auto f = asyncio::get_running_loop().create_future<int>();
        f.set_result(3);
        int iterations = 0;
        asyncio::get_running_loop().call_soon([&] { ++iterations; });
        int sum = 0;
        for (int i = 0; i < 1000; ++i)
            sum += co_await f;
        CHECK(iterations == 0);  // the loop never got control
        co_return sum;
    };
    CHECK(run_guarded(main()) == 3000);
}

TEST_CASE("a move-only result is moved to a sole awaiter") {
    auto main = []() -> Coro<int> {
        auto f = asyncio::get_running_loop().create_future<std::unique_ptr<int>>();
        f.set_result(std::make_unique<int>(9));
        std::unique_ptr<int> p = co_await std::move(f);
        co_return *p;
    };
    CHECK(run_guarded(main()) == 9);
}

TEST_CASE("a move-only result can be taken by result() once") {
    Loop loop;
    auto f = loop->create_future<std::unique_ptr<int>>();
    f.set_result(std::make_unique<int>(4));
    CHECK(*f.result() == 4);
    CHECK_THROWS_AS(f.result(), asyncio::InvalidStateError);
}

TEST_CASE("awaiting a future that raises rethrows in the awaiter") {
    auto main = []() -> Coro<std::string> {
        auto f = asyncio::get_running_loop().create_future<int>();
        asyncio::get_running_loop().call_soon(
            [f]() mutable { f.set_exception(std::invalid_argument("bad")); });
        try {
            co_await f;
        } catch (const std::invalid_argument& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    CHECK(run_guarded(main()) == "bad");
}

TEST_CASE("Future() binds to the running loop") {
    auto main = []() -> Coro<bool> {
        Future<int> f;
        co_return &f.get_loop() == &asyncio::get_running_loop();
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("awaiting a future of another loop is refused") {
    Loop other;
    auto foreign = other->create_future<int>();
    auto main = [](Future<int> f) -> Coro<std::string> {
        try {
            co_await f;
        } catch (const asyncio::RuntimeError& e) {
            co_return e.what();
        }
        co_return "awaited";
    };
    CHECK(run_guarded(main(foreign)) == "Task got Future attached to a different loop");
}
