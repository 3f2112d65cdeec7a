// Eager tasks: ports of CPython's Lib/test/test_asyncio/test_eager_task_factory.py
// (EagerTaskFactoryLoopTests and the task-counting tests), for both
// TaskOptions{.eager_start = true} and loop.set_task_factory(eager_task_factory).
#include <chrono>
#include <optional>
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

namespace {

/// How a test asks for eager tasks.
enum class Eager { option, factory };

/// create_task, eagerly by the way the section chose.
template <class T>
Task<T> eager_task(Eager how, Coro<T> coro, asyncio::TaskOptions opts = {}) {
    auto& loop = asyncio::get_running_loop();
    if (how == Eager::option) {
        opts.eager_start = true;
    } else {
        REQUIRE(loop.get_task_factory());
    }
    return loop.create_task(std::move(coro), std::move(opts));
}

/// Runs `main` with the eager task factory installed when `how` asks for it.
template <class T>
T run_eager(Eager how, Coro<T> main) {
    asyncio::Runner runner;
    if (how == Eager::factory) runner.get_loop().set_task_factory(asyncio::eager_task_factory);
    return runner.run(std::move(main));
}

Eager pick_mode() {
    Eager how = Eager::option;
    SECTION("TaskOptions::eager_start") {
        how = Eager::option;
    }
    SECTION("eager_task_factory") {
        how = Eager::factory;
    }
    return how;
}

Coro<std::string> hello() {
    co_return "hello";
}

Coro<std::string> finished_after_blocking() {
    co_await asyncio::sleep(1ms);
    co_return "finished after blocking";
}

}  // namespace

TEST_CASE("the eager task factory is the loop's task factory once set") {
    asyncio::Runner runner;
    auto& loop = runner.get_loop();
    CHECK_FALSE(loop.get_task_factory());
    loop.set_task_factory(asyncio::eager_task_factory);
    REQUIRE(loop.get_task_factory());
    auto main = []() -> Coro<std::string> {
        Task<std::string> t = asyncio::create_task(hello());
        CHECK(t.done());
        co_return co_await t;
    };
    CHECK(runner.run(main()) == "hello");
}

TEST_CASE(
    "create_eager_task_factory starts tasks eagerly and lets the constructor configure them") {
    // test_eager_task_factory.py: create_eager_task_factory(custom_task_constructor).
    asyncio::Runner runner;
    int constructed = 0;
    runner.get_loop().set_task_factory(asyncio::create_eager_task_factory(
        [&constructed](asyncio::EventLoop&, Task<>&, asyncio::TaskOptions& opts) {
            CHECK(opts.eager_start);  // asked for, as CPython passes eager_start=True
            ++constructed;
            opts.name = "custom-" + std::to_string(constructed);
        }));
    auto main = []() -> Coro<std::string> {
        Task<std::string> t = asyncio::create_task(hello());
        CHECK(t.done());  // its only step ran inside create_task
        std::string name = t.get_name();
        co_return name + " " + co_await t;
    };
    CHECK(runner.run(main()) == "custom-2 hello");  // the main task was custom-1
    CHECK(constructed == 2);
    CHECK_THROWS_AS(asyncio::create_eager_task_factory({}), std::invalid_argument);
}

TEST_CASE("the first step runs inside create_task") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::vector<std::string>> {
        std::vector<std::string> log;
        auto child = [](std::vector<std::string>& log) -> Coro<void> {
            log.push_back("child: first step");
            co_await asyncio::sleep(0);
            log.push_back("child: second step");
        };
        Task<void> t = eager_task(how, child(log));
        log.push_back("creator: create_task returned");
        co_await t;
        co_return log;
    };
    CHECK(run_eager(how, main(how)) == std::vector<std::string>{"child: first step",
                                                                "creator: create_task returned",
                                                                "child: second step"});
}

TEST_CASE("without eager start the first step waits for the loop") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> log;
        auto child = [](std::vector<std::string>& log) -> Coro<void> {
            log.push_back("child: first step");
            co_return;
        };
        Task<void> t = asyncio::create_task(child(log));
        log.push_back("creator: create_task returned");
        co_await t;
        co_return log;
    };
    CHECK(run_guarded(main()) ==
          std::vector<std::string>{"creator: create_task returned", "child: first step"});
}

TEST_CASE("a coroutine that never suspends is done when create_task returns") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        Task<std::string> t = eager_task(how, hello());
        CHECK(t.done());
        CHECK(t.result() == "hello");
        co_return co_await t;
    };
    CHECK(run_eager(how, main(how)) == "hello");
}

TEST_CASE("a future set during the eager step is done when create_task returns") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        Future<std::string> fut = asyncio::get_running_loop().create_future<std::string>();
        auto set_result = [](Future<std::string> fut) -> Coro<void> {
            fut.set_result("my message");
            co_return;
        };
        Task<void> t = eager_task(how, set_result(fut));
        CHECK(t.done());
        CHECK(fut.done());
        co_return co_await fut;
    };
    CHECK(run_eager(how, main(how)) == "my message");
}

TEST_CASE("an eager task that suspends continues normally") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        Task<std::string> t = eager_task(how, finished_after_blocking());
        CHECK_FALSE(t.done());
        const std::string result = co_await t;
        CHECK(t.done());
        co_return result;
    };
    CHECK(run_eager(how, main(how)) == "finished after blocking");
}

TEST_CASE("cancelling a task that completed eagerly does nothing") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        Task<std::string> t = eager_task(how, hello());
        CHECK_FALSE(t.cancel());
        const std::string result = co_await t;
        CHECK_FALSE(t.cancelled());
        co_return result;
    };
    CHECK(run_eager(how, main(how)) == "hello");
}

TEST_CASE("cancelling an eager task that suspended works") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        Task<std::string> t = eager_task(how, finished_after_blocking());
        CHECK(t.cancel("cancellation message"));
        CHECK(t.cancelling() > 0);
        std::string message;
        try {
            co_await t;
        } catch (const CancelledError& e) {
            message = e.message();
        }
        CHECK(t.cancelled());
        co_return message;
    };
    CHECK(run_eager(how, main(how)) == "cancellation message");
}

TEST_CASE("an exception in the eager step is stored in the task") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<std::string> {
        auto fails = []() -> Coro<int> {
            throw std::runtime_error("failed eagerly");
            co_return 0;
        };
        Task<int> t = eager_task(how, fails());
        REQUIRE(t.done());
        CHECK(t.exception() != nullptr);
        std::string what;
        try {
            co_await t;
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        co_return what;
    };
    CHECK(run_eager(how, main(how)) == "failed eagerly");
}

TEST_CASE("current_task() in the eager step is the new task, and is restored after") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<void> {
        Task<> me = *asyncio::current_task();
        std::optional<Task<>> during_first_step;
        std::optional<Task<>> after_blocking;
        auto probe = [](std::optional<Task<>>& first, std::optional<Task<>>& later) -> Coro<void> {
            first = asyncio::current_task();
            co_await asyncio::sleep(0);
            later = asyncio::current_task();
        };
        Task<void> t = eager_task(how, probe(during_first_step, after_blocking));
        REQUIRE(during_first_step.has_value());
        CHECK(Future<>(*during_first_step) == Future<>(t));
        CHECK(*asyncio::current_task() == me);
        co_await t;
        REQUIRE(after_blocking.has_value());
        CHECK(Future<>(*after_blocking) == Future<>(t));
    };
    run_eager(how, main(how));
}

TEST_CASE("eager tasks nest: each step sees its own current task") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<void> {
        Task<> me = *asyncio::current_task();
        struct Seen {
            std::optional<Task<>> inner_in_inner, outer_before, outer_after;
        } seen;
        auto inner = [](Seen& seen) -> Coro<void> {
            seen.inner_in_inner = asyncio::current_task();
            co_return;
        };
        auto outer = [](Eager how, Seen& seen, auto inner) -> Coro<void> {
            seen.outer_before = asyncio::current_task();
            Task<void> i = eager_task(how, inner(seen));
            CHECK(i.done());
            seen.outer_after = asyncio::current_task();
            co_await asyncio::sleep(0);
        };
        Task<void> o = eager_task(how, outer(how, seen, inner));
        CHECK(*asyncio::current_task() == me);
        REQUIRE(seen.outer_before.has_value());
        REQUIRE(seen.outer_after.has_value());
        REQUIRE(seen.inner_in_inner.has_value());
        CHECK(Future<>(*seen.outer_before) == Future<>(o));
        CHECK(Future<>(*seen.outer_after) == Future<>(o));
        CHECK(Future<>(*seen.inner_in_inner) != Future<>(o));
        co_await o;
    };
    run_eager(how, main(how));
}

TEST_CASE("all_tasks() during and after an eager step") {
    const Eager how = pick_mode();
    auto main = [](Eager how) -> Coro<void> {
        std::vector<Task<>> captured;
        auto capture = [](std::vector<Task<>>& out) -> Coro<void> {
            out = asyncio::all_tasks();
            co_return;
        };
        Task<void> t = eager_task(how, capture(captured));
        const auto contains = [](const std::vector<Task<>>& tasks, const Task<void>& t) {
            for (const auto& task : tasks) {
                if (task == t) return true;
            }
            return false;
        };
        CHECK(contains(captured, t));
        CHECK_FALSE(contains(asyncio::all_tasks(), t));

        Future<> fut1 = asyncio::get_running_loop().create_future();
        Future<> fut2 = asyncio::get_running_loop().create_future();
        auto blocking = [](std::vector<Task<>>& out, Future<> fut1, Future<> fut2) -> Coro<void> {
            out = asyncio::all_tasks();
            co_await fut1;
            fut2.set_result();
        };
        Task<void> b = eager_task(how, blocking(captured, fut1, fut2));
        CHECK(contains(captured, b));
        CHECK(contains(asyncio::all_tasks(), b));
        fut1.set_result();
        co_await fut2;
        co_await b;
        CHECK_FALSE(contains(asyncio::all_tasks(), b));
    };
    run_eager(how, main(how));
}

TEST_CASE("the eager step runs in the task's own copy of the context") {
    const Eager how = pick_mode();
    static asyncio::ContextVar<int> cv("cv", 0);
    auto main = [](Eager how) -> Coro<void> {
        bool first_step_ran = false;
        bool second_step_ran = false;
        auto coro = [](bool& first, bool& second) -> Coro<void> {
            CHECK(cv.get() == 1);
            cv.set(2);
            CHECK(cv.get() == 2);
            first = true;
            co_await asyncio::sleep(0);
            CHECK(cv.get() == 2);
            cv.set(3);
            CHECK(cv.get() == 3);
            second = true;
        };
        cv.set(1);
        Task<void> t = eager_task(how, coro(first_step_ran, second_step_ran));
        CHECK(first_step_ran);
        CHECK_FALSE(second_step_ran);
        CHECK(cv.get() == 1);
        co_await t;
        CHECK(second_step_ran);
        CHECK(cv.get() == 1);
    };
    run_eager(how, main(how));
}

TEST_CASE("an eager task gets its name and context before its first step") {
    auto main = []() -> Coro<void> {
        static asyncio::ContextVar<std::string> where("where", "nowhere");
        asyncio::Context ctx;
        ctx.run([] { where.set("given context"); });
        auto probe = []() -> Coro<std::string> {
            co_return asyncio::current_task()->get_name() + " in " + where.get();
        };
        Task<std::string> t = asyncio::create_task(
            probe(), {.name = "eager one", .context = ctx, .eager_start = true});
        REQUIRE(t.done());
        CHECK(t.result() == "eager one in given context");
        co_return;
    };
    run_guarded(main());
}

TEST_CASE("eager start is not used when the loop is not running") {
    auto loop = asyncio::new_event_loop();
    bool started = false;
    auto body = [](bool& started) -> Coro<int> {
        started = true;
        co_return 5;
    };
    Task<int> t = loop->create_task(body(started), {.eager_start = true});
    CHECK_FALSE(started);
    CHECK_FALSE(t.done());
    CHECK(loop->run_until_complete(t) == 5);
    CHECK(started);

    // Nor with the factory.
    loop->set_task_factory(asyncio::eager_task_factory);
    started = false;
    Task<int> u = loop->create_task(body(started));
    CHECK_FALSE(started);
    CHECK(loop->run_until_complete(u) == 5);
    loop->close();
}

TEST_CASE("an eager task created from a callback runs at once, outside any task") {
    auto loop = asyncio::new_event_loop();
    std::vector<std::string> log;
    std::optional<Task<>> current_in_callback;
    auto body = [](std::vector<std::string>& log) -> Coro<void> {
        log.push_back("task: first step");
        co_await asyncio::sleep(0);
        log.push_back("task: second step");
    };
    std::optional<Task<void>> t;
    loop->call_soon([&] {
        t = loop->create_task(body(log), {.eager_start = true});
        log.push_back("callback: create_task returned");
        current_in_callback = asyncio::current_task();
    });
    loop->call_soon([&] { loop->call_soon([&] { loop->stop(); }); });
    loop->run_forever();
    REQUIRE(t.has_value());
    loop->run_until_complete(*t);
    loop->close();
    CHECK_FALSE(current_in_callback.has_value());
    CHECK(log == std::vector<std::string>{"task: first step", "callback: create_task returned",
                                          "task: second step"});
}

namespace {
Coro<int> awaitable_chain(int depth) {
    if (depth == 0) co_return 0;
    const int below = co_await awaitable_chain(depth - 1);
    co_return 1 + below;
}

/// Counts the tasks that were already done when create_task returned.
Coro<void> recursive_gather(int width, int depth, int& done_at_once) {
    if (depth == 0) co_return;
    std::vector<Task<void>> children;
    for (int i = 0; i < width; ++i) {
        children.push_back(asyncio::create_task(recursive_gather(width, depth - 1, done_at_once)));
        if (children.back().done()) ++done_at_once;
    }
    co_await asyncio::gather(children);
}

Coro<void> recursive_taskgroups(int width, int depth, int& done_at_once) {
    if (depth == 0) co_return;
    asyncio::TaskGroup tg;
    for (int i = 0; i < width; ++i) {
        Task<void> t = tg.create_task(recursive_taskgroups(width, depth - 1, done_at_once));
        if (t.done()) ++done_at_once;
    }
    co_await tg.wait();
}
}  // namespace

TEST_CASE("task counting: awaits, gather and TaskGroups under the eager factory") {
    // test_eager_task_factory.py's counting tests: with eager tasks, a task
    // that never suspends is finished by create_task; without, none is.
    const bool eager = GENERATE(true, false);
    asyncio::Runner runner;
    auto& loop = runner.get_loop();
    int created = 0;
    loop.set_task_factory([&, eager](asyncio::EventLoop& l, Task<>& t, asyncio::TaskOptions& opts) {
        if (eager) asyncio::eager_task_factory(l, t, opts);
        ++created;
    });
    CHECK(runner.run(awaitable_chain(100)) == 100);
    CHECK(created == 1);

    created = 0;
    int done_at_once = 0;
    runner.run(recursive_gather(5, 4, done_at_once));
    CHECK(created == 781);  // 1 + 5 + 5^2 + 5^3 + 5^4
    CHECK(done_at_once == (eager ? 625 : 0));

    created = 0;
    done_at_once = 0;
    runner.run(recursive_taskgroups(5, 4, done_at_once));
    CHECK(created == 781);
    // gather always waits a loop turn for its children's callbacks; a
    // TaskGroup whose children are all done does not wait at all, so every
    // task but the root finishes eagerly.
    CHECK(done_at_once == (eager ? 780 : 0));
}
