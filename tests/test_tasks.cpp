// Task: ports of CPython's Lib/test/test_asyncio/test_tasks.py (creation,
// names, current_task/all_tasks, cancellation at every kind of suspension,
// cancelling()/uncancel(), lost exceptions) plus 100,000 concurrent tasks.
// Tasks that sleep for an hour run on a TestClock (run_paused): a lost
// cancellation shows as the hour having passed instead of hanging the test.
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <source_location>
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

double loop_time() {
    return asyncio::get_running_loop().time();
}

Coro<int> value_after_yield(int v) {
    co_await asyncio::sleep(0);
    co_return v;
}

Coro<void> forever() {
    auto never = asyncio::get_running_loop().create_future();
    co_await never;
}

}  // namespace

TEST_CASE("create_task runs the coroutine and holds its result") {
    auto main = []() -> Coro<int> {
        Task<int> t = asyncio::create_task(value_after_yield(7));
        CHECK_FALSE(t.done());
        const int v = co_await t;
        CHECK(t.done());
        CHECK(t.result() == 7);
        co_return v;
    };
    CHECK(run_guarded(main()) == 7);
}

TEST_CASE("create_task outside a running loop is refused") {
    CHECK_THROWS_WITH(asyncio::create_task(value_after_yield(1)), "no running event loop");
}

TEST_CASE("task names") {
    auto main = []() -> Coro<void> {
        auto a = asyncio::create_task(value_after_yield(1));
        auto b = asyncio::create_task(value_after_yield(2), {.name = "worker"});
        CHECK(a.get_name().rfind("Task-", 0) == 0);
        CHECK(b.get_name() == "worker");
        a.set_name("renamed");
        CHECK(a.get_name() == "renamed");
        co_await a;
        co_await b;
    };
    run_guarded(main());
}

TEST_CASE("default task names count up") {
    auto main = []() -> Coro<void> {
        auto a = asyncio::create_task(value_after_yield(1));
        auto b = asyncio::create_task(value_after_yield(2));
        const auto number = [](const std::string& name) { return std::stoull(name.substr(5)); };
        CHECK(number(b.get_name()) == number(a.get_name()) + 1);
        co_await a;
        co_await b;
    };
    run_guarded(main());
}

TEST_CASE("the loop keeps a task alive after its handle is dropped") {
    auto main = []() -> Coro<int> {
        int result = 0;
        auto body = [](int& out) -> Coro<void> {
            co_await asyncio::sleep(0);
            co_await asyncio::sleep(0);
            out = 5;
        };
        { asyncio::create_task(body(result)); }
        for (int i = 0; i < 4; ++i)
            co_await asyncio::sleep(0);
        co_return result;
    };
    CHECK(run_guarded(main()) == 5);
}

TEST_CASE("current_task and all_tasks") {
    auto main = []() -> Coro<void> {
        auto me = asyncio::current_task();
        REQUIRE(me.has_value());
        auto child = asyncio::create_task(value_after_yield(3), {.name = "child"});
        auto tasks = asyncio::all_tasks();
        CHECK(tasks.size() == 2);
        bool found_child = false;
        for (auto& t : tasks)
            found_child |= (t.get_name() == "child");
        CHECK(found_child);
        auto probe = []() -> Coro<std::string> { co_return asyncio::current_task()->get_name(); };
        auto named = asyncio::create_task(probe(), {.name = "probe"});
        const std::string probed = co_await named;
        CHECK(probed == "probe");
        co_await child;
        CHECK(asyncio::all_tasks().size() == 1);
        CHECK(*asyncio::current_task() == *me);
    };
    run_guarded(main());
}

TEST_CASE("current_task is empty outside a task and needs a running loop") {
    auto loop = asyncio::new_event_loop();
    CHECK_FALSE(asyncio::current_task(*loop).has_value());
    CHECK_THROWS_AS(asyncio::current_task(), asyncio::RuntimeError);
    CHECK_THROWS_AS(asyncio::all_tasks(), asyncio::RuntimeError);
    bool empty_in_callback = false;
    loop->call_soon([&] {
        empty_in_callback = !asyncio::current_task().has_value();
        loop->stop();
    });
    loop->run_forever();
    CHECK(empty_in_callback);
}

// -- cancellation ------------------------------------------------------------------

namespace {

/// Runs `body` as a task, lets it reach its first suspension, cancels it with
/// a message, and returns what happened.
struct CancelOutcome {
    bool cancelled = false;
    std::string message;
    bool caught_inside = false;
};

Coro<CancelOutcome> cancel_at_first_suspension(std::function<Coro<void>(bool&)> body) {
    CancelOutcome outcome;
    Task<void> task = asyncio::create_task(body(outcome.caught_inside));
    co_await asyncio::sleep(0);  // the task starts and suspends
    CHECK(task.cancel("stop it"));
    CHECK(task.cancelling() == 1);
    try {
        co_await task;
    } catch (const CancelledError& e) {
        outcome.cancelled = true;
        outcome.message = e.message();
    }
    CHECK(task.cancelled());
    CHECK(loop_time() == 0.0);  // whatever it waited for, the cancellation ended it
    co_return outcome;
}

Coro<void> rethrow_cancel(bool& caught, Coro<void> inner) {
    try {
        co_await inner;
    } catch (const CancelledError&) {
        caught = true;
        throw;
    }
}

}  // namespace

TEST_CASE("cancelling a task at each kind of suspension") {
    SECTION("sleep") {
        auto body = [](bool& caught) { return rethrow_cancel(caught, asyncio::sleep(1h)); };
        auto outcome = run_paused(cancel_at_first_suspension(body));
        CHECK(outcome.cancelled);
        CHECK(outcome.caught_inside);
        CHECK(outcome.message == "stop it");
    }
    SECTION("sleep(0)") {
        auto body = [](bool& caught) -> Coro<void> {
            auto spin = []() -> Coro<void> {
                for (;;)
                    co_await asyncio::sleep(0);
            };
            return rethrow_cancel(caught, spin());
        };
        auto outcome = run_paused(cancel_at_first_suspension(body));
        CHECK(outcome.cancelled);
        CHECK(outcome.caught_inside);
        CHECK(outcome.message == "stop it");
    }
    SECTION("a future") {
        auto body = [](bool& caught) { return rethrow_cancel(caught, forever()); };
        auto outcome = run_paused(cancel_at_first_suspension(body));
        CHECK(outcome.cancelled);
        CHECK(outcome.caught_inside);
        CHECK(outcome.message == "stop it");
    }
    SECTION("another task, which is cancelled too") {
        auto body = [](bool& caught) -> Coro<void> {
            auto waits_on_task = []() -> Coro<void> {
                Task<void> inner = asyncio::create_task(forever());
                try {
                    co_await inner;
                } catch (const CancelledError&) {
                    CHECK(inner.cancelled());
                    throw;
                }
            };
            return rethrow_cancel(caught, waits_on_task());
        };
        auto outcome = run_paused(cancel_at_first_suspension(body));
        CHECK(outcome.cancelled);
        CHECK(outcome.caught_inside);
        CHECK(outcome.message == "stop it");
    }
}

TEST_CASE("a task cancelled before its first step never runs") {
    auto main = []() -> Coro<void> {
        bool ran = false;
        auto body = [](bool& flag) -> Coro<void> {
            flag = true;
            co_return;
        };
        Task<void> t = asyncio::create_task(body(ran));
        CHECK(t.cancel());
        try {
            co_await t;
            FAIL("not cancelled");
        } catch (const CancelledError&) {
        }
        CHECK(t.cancelled());
        CHECK_FALSE(ran);
    };
    run_guarded(main());
}

TEST_CASE("cancelling a done task returns false") {
    auto main = []() -> Coro<void> {
        Task<int> t = asyncio::create_task(value_after_yield(1));
        co_await t;
        CHECK_FALSE(t.cancel());
        CHECK_FALSE(t.cancelled());
        CHECK(t.cancelling() == 0);
        CHECK(t.result() == 1);
    };
    run_guarded(main());
}

TEST_CASE("a task that cancels itself is cancelled at its next suspension") {
    auto main = []() -> Coro<void> {
        std::vector<std::string> steps;
        auto body = [](std::vector<std::string>& log) -> Coro<void> {
            asyncio::current_task()->cancel();
            log.push_back("after cancel");  // still running: no suspension yet
            try {
                co_await asyncio::sleep(0);
            } catch (const CancelledError&) {
                log.push_back("cancelled at sleep");
                throw;
            }
        };
        Task<void> t = asyncio::create_task(body(steps));
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        CHECK(steps == std::vector<std::string>{"after cancel", "cancelled at sleep"});
    };
    run_guarded(main());
}

TEST_CASE("a task that swallows the cancellation finishes normally") {
    auto main = []() -> Coro<void> {
        auto stubborn = []() -> Coro<int> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
                co_return 99;
            }
            co_return 0;
        };
        Task<int> t = asyncio::create_task(stubborn());
        co_await asyncio::sleep(0);
        t.cancel();
        const int result = co_await t;
        CHECK(result == 99);
        CHECK(loop_time() == 0.0);
        CHECK_FALSE(t.cancelled());
        CHECK(t.cancelling() == 1);  // the request is still counted
    };
    run_paused(main());
}

TEST_CASE("a task cancelled right before it returns ends cancelled") {
    auto main = []() -> Coro<void> {
        auto body = []() -> Coro<int> {
            co_await asyncio::sleep(0);
            asyncio::current_task()->cancel();
            co_return 1;  // no suspension after the cancel
        };
        Task<int> t = asyncio::create_task(body());
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        CHECK(t.cancelled());
    };
    run_guarded(main());
}

TEST_CASE("cancelling() and uncancel() count requests") {
    auto main = []() -> Coro<void> {
        Task<void> t = asyncio::create_task(forever());
        co_await asyncio::sleep(0);
        CHECK(t.cancelling() == 0);
        t.cancel();
        t.cancel();
        CHECK(t.cancelling() == 2);
        CHECK(t.uncancel() == 1);
        CHECK(t.uncancel() == 0);
        CHECK(t.uncancel() == 0);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        CHECK(t.cancelled());
    };
    run_guarded(main());
}

TEST_CASE("uncancel down to zero withdraws a pending cancellation (3.13)") {
    auto main = []() -> Coro<void> {
        auto body = []() -> Coro<int> {
            asyncio::current_task()->cancel();  // must_cancel, while running
            asyncio::current_task()->uncancel();
            co_await asyncio::sleep(0);  // not cancelled here
            co_return 3;
        };
        const int result = co_await asyncio::create_task(body());
        CHECK(result == 3);
    };
    run_guarded(main());
}

TEST_CASE("a cancelled task catches, cleans up with co_await, then re-raises") {
    auto main = []() -> Coro<void> {
        std::vector<std::string> log;
        auto body = [](std::vector<std::string>& out) -> Coro<void> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
                out.push_back("caught");
            }
            co_await asyncio::sleep(0);  // cleanup may await
            out.push_back("cleaned up");
            throw CancelledError("again");
        };
        Task<void> t = asyncio::create_task(body(log));
        co_await asyncio::sleep(0);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError& e) {
            log.push_back("outer saw " + e.message());
        }
        CHECK(log == std::vector<std::string>{"caught", "cleaned up", "outer saw again"});
        CHECK(loop_time() == 0.0);
    };
    run_paused(main());
}

TEST_CASE("cancellation runs destructors down the await chain") {
    struct Guard {
        int& count;
        ~Guard() { ++count; }
    };
    auto main = []() -> Coro<int> {
        int destroyed = 0;
        auto leaf = [](int& count) -> Coro<void> {
            Guard g{count};
            co_await asyncio::sleep(1h);
        };
        auto middle = [&leaf](int& count) -> Coro<void> {
            Guard g{count};
            co_await leaf(count);
        };
        Task<void> t = asyncio::create_task(middle(destroyed));
        co_await asyncio::sleep(0);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        CHECK(loop_time() == 0.0);
        co_return destroyed;
    };
    CHECK(run_paused(main()) == 2);
}

TEST_CASE("a task awaiting itself is refused") {
    auto main = []() -> Coro<std::string> {
        auto self = []() -> Coro<std::string> {
            Task<> me = *asyncio::current_task();
            try {
                co_await me;
            } catch (const asyncio::RuntimeError& e) {
                co_return e.what();
            }
            co_return "awaited itself";
        };
        co_return co_await asyncio::create_task(self());
    };
    CHECK(run_guarded(main()) == "Task cannot await on itself");
}

// A task's outcome comes from its coroutine only: setting it from outside
// would mark the task done while the coroutine stays suspended for ever.
template <class F>
concept settable_with_result = requires(F f) { f.set_result(1); };
template <class F>
concept settable_with_exception = requires(F f) { f.set_exception(std::runtime_error("x")); };
static_assert(settable_with_result<Future<int>> && settable_with_exception<Future<int>>);
static_assert(!settable_with_result<Task<int>> && !settable_with_exception<Task<int>>);

TEST_CASE("a task refuses set_result and set_exception (through a Future<> handle)") {
    auto main = []() -> Coro<void> {
        Task<int> task = asyncio::create_task(value_after_yield(3));
        Future<> view = task;
        CHECK_THROWS_AS(view.set_result(), asyncio::RuntimeError);
        CHECK_THROWS_WITH(view.set_result(), "Task does not support set_result() operation");
        CHECK_THROWS_WITH(view.set_exception(std::runtime_error("x")),
                          "Task does not support set_exception() operation");
        CHECK_FALSE(task.done());
        const int v = co_await task;
        CHECK(v == 3);
    };
    run_guarded(main());
}

TEST_CASE("Task.get_context is the context the task runs in") {
    auto main = []() -> Coro<void> {
        asyncio::ContextVar<int> var("var", 0);
        auto set = [](asyncio::ContextVar<int>& v) -> Coro<void> {
            v.set(5);
            co_await asyncio::sleep(0);
        };
        Task<> own = asyncio::create_task(set(var));
        co_await own;
        CHECK(own.get_context().get(var) == 5);  // its own copy, which it changed
        CHECK(var.get() == 0);
        asyncio::Context given;
        Task<> shared = asyncio::create_task(set(var), {.context = given});
        co_await shared;
        CHECK(given.get(var) == 5);
        CHECK(shared.get_context().get(var) == 5);
        shared.get_context().run([&var] { var.set(6); });
        CHECK(given.get(var) == 6);  // the same Context, not a copy
    };
    run_guarded(main());
}

TEST_CASE("Task.get_stack: creation sites of the awaiting chain, oldest first") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Future<> gate = loop.create_future();
        auto inner = [](Future<> g) -> Coro<void> { co_await g; };
        auto outer = [](Task<> t) -> Coro<void> { co_await t; };
        Task<> in = asyncio::create_task(inner(gate));
        const int in_line = __LINE__ - 1;
        Task<> out = asyncio::create_task(outer(in));
        const int out_line = __LINE__ - 1;
        co_await asyncio::sleep(0);  // both are suspended now: out awaits in
        const std::vector<std::source_location> stack = in.get_stack();
        REQUIRE(stack.size() == 2);
        CHECK(static_cast<int>(stack[0].line()) == out_line);
        CHECK(static_cast<int>(stack[1].line()) == in_line);
        const std::vector<std::source_location> newest = in.get_stack(1);
        REQUIRE(newest.size() == 1);
        CHECK(static_cast<int>(newest[0].line()) == in_line);
        CHECK(out.get_stack().size() == 1);  // nobody awaits `out`

        std::FILE* file = std::tmpfile();
        REQUIRE(file != nullptr);
        in.print_stack({}, file);
        std::rewind(file);
        std::string text(4096, '\0');
        text.resize(std::fread(text.data(), 1, text.size(), file));
        std::fclose(file);
        CHECK(text.rfind("Stack for <Task pending", 0) == 0);
        CHECK(text.find("(most recent call last):") != std::string::npos);
        CHECK(text.find(fmt::format(", line {}, in ", in_line)) != std::string::npos);

        gate.set_result();
        co_await out;
        CHECK(in.get_stack().empty());  // done: no stack
    };
    run_guarded(main());
}

TEST_CASE("sleep(delay, result) returns the result after the delay") {
    auto main = []() -> Coro<void> {
        const std::string word = co_await asyncio::sleep(2s, std::string("slept"));
        CHECK(word == "slept");
        CHECK(loop_time() == 2.0);
        std::unique_ptr<int> moved = co_await asyncio::sleep(0.5, std::make_unique<int>(9));
        REQUIRE(moved != nullptr);
        CHECK(*moved == 9);  // a move-only result is moved through
        CHECK(loop_time() == 2.5);
    };
    run_paused(main());
}

TEST_CASE("ensure_future: a Coro becomes a task, a Task or Future comes back as it is") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Task<int> made = asyncio::ensure_future(value_after_yield(4));
        const int made_line = __LINE__ - 1;
        CHECK(static_cast<int>(made.created_at().line()) == made_line);
        CHECK_FALSE(made.done());
        Task<int> same_task = asyncio::ensure_future(made);
        CHECK(same_task == made);
        Future<int> fut = loop.create_future<int>();
        Future<int> same_future = asyncio::ensure_future(fut);
        CHECK(same_future == fut);
        const int v = co_await made;
        CHECK(v == 4);
    };
    run_guarded(main());
}

TEST_CASE("CancelledError is not a std::exception") {
    auto main = []() -> Coro<std::string> {
        auto body = []() -> Coro<void> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const std::exception&) {
                FAIL("a std::exception handler caught the cancellation");
            }
        };
        Task<void> t = asyncio::create_task(body());
        co_await asyncio::sleep(0);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError&) {
            co_return "cancelled";
        }
        co_return "finished";
    };
    CHECK(run_paused(main()) == "cancelled");
}

// -- lost work is reported ------------------------------------------------------------

TEST_CASE("a task exception never retrieved is reported") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        auto fails = []() -> Coro<void> {
            throw std::runtime_error("nobody looked");
            co_return;
        };
        { asyncio::create_task(fails(), {.name = "lost"}); }
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        REQUIRE(reports.contexts.size() == 1);
        CHECK(reports.messages[0] == "Task exception was never retrieved");
        CHECK(reports.contexts[0].repr.find("name='lost'") != std::string::npos);
        CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception), "nobody looked");
    };
    run_guarded(main());
}

TEST_CASE("a task destroyed while pending is reported when its loop closes") {
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    bool destroyed = false;
    struct Guard {
        bool& flag;
        ~Guard() { flag = true; }
    };
    auto body = [](bool& flag) -> Coro<void> {
        Guard g{flag};
        co_await asyncio::sleep(1h);
    };
    Task<void> t = loop->create_task(body(destroyed), {.name = "stuck"});
    loop->call_soon([&] { loop->stop(); });
    loop->run_forever();
    loop->close();
    CHECK(destroyed);
    REQUIRE(reports.contexts.size() == 1);
    CHECK(reports.messages[0] == "Task was destroyed but it is pending!");
    REQUIRE(reports.contexts[0].task.has_value());
    CHECK(reports.contexts[0].task->get_name() == "stuck");
    CHECK(t.cancelled());  // it can never run again
}

TEST_CASE("closing the loop frees a task awaiting another and a watcher of both") {
    // Whatever order the loop frees them in, nothing may be left pointing
    // into a freed coroutine frame (ASan checks this).
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    auto inner = loop->create_task(forever(), {.name = "inner"});
    auto outer_body = [](Task<void> waited) -> Coro<void> { co_await waited; };
    auto outer = loop->create_task(outer_body(inner), {.name = "outer"});
    int callbacks = 0;
    inner.add_done_callback([&](Future<>&) { ++callbacks; });
    loop->call_soon([&] { loop->stop(); });
    loop->run_forever();
    loop->close();
    CHECK(inner.cancelled());
    CHECK(outer.cancelled());
    CHECK(callbacks == 0);  // dropped with the loop, never run
    CHECK(reports.messages.size() == 2);
}

TEST_CASE("100,000 concurrent tasks") {
    // long long: the sum passes 2^31, and long is 32-bit on Windows.
    auto main = []() -> Coro<long long> {
        constexpr int kTasks = 100'000;
        auto gate = asyncio::get_running_loop().create_future();
        auto worker = [](Future<> start, int i) -> Coro<long long> {
            co_await start;
            co_await asyncio::sleep(0);
            co_return i;
        };
        std::vector<Task<long long>> tasks;
        tasks.reserve(kTasks);
        for (int i = 0; i < kTasks; ++i)
            tasks.push_back(asyncio::create_task(worker(gate, i)));
        co_await asyncio::sleep(0);
        CHECK(asyncio::all_tasks().size() == kTasks + 1);
        gate.set_result();
        long long sum = 0;
        for (auto& t : tasks)
            sum += co_await t;
        CHECK(asyncio::all_tasks().size() == 1);
        co_return sum;
    };
    CHECK(run_guarded(main()) == 100'000LL * 99'999LL / 2);
}
