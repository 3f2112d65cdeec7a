// AsyncGenerator: ports of the asyncio part of CPython's Lib/test/test_asyncgen.py
// (AsyncGenAsyncioTest: iteration, exceptions, awaits between yields, "already
// running", aclose() in every state, cleanup that awaits, "ignored
// GeneratorExit", finalization of dropped generators, shutdown_asyncgens and
// asyncio.run) plus cancellation and loop-close cases the C++ frames add.
#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::AsyncGenerator;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Future;
using asyncio::GeneratorExit;
using asyncio::Task;
using asyncio_test::run_guarded;

namespace {

/// Records reports like RecordedReports and removes its handler again, so a
/// report made after the test body cannot reach a dead recorder.
struct ScopedReports : asyncio_test::RecordedReports {
    explicit ScopedReports(asyncio::EventLoop& loop) : RecordedReports(loop), loop(loop) {}
    ~ScopedReports() { loop.set_exception_handler(nullptr); }
    asyncio::EventLoop& loop;
};

/// What a generator's cleanup did.
struct Cleanup {
    bool raii = false;          // a destructor in the generator's frame ran
    bool caught_exit = false;   // catch (const GeneratorExit&) ran
    bool after_await = false;   // cleanup code after a co_await ran
    bool body_started = false;  // the body ran at all
    std::optional<Task<>> closed_by;
};

struct Guard {
    bool* flag;
    ~Guard() { *flag = true; }
};

AsyncGenerator<int> count_to(int n) {
    for (int i = 0; i < n; ++i)
        co_yield i;
}

AsyncGenerator<int> ticker(int n) {
    for (int i = 0; i < n; ++i) {
        co_await asyncio::sleep(0);
        co_yield i;
    }
}

/// Yields 0, 1, 2, ... forever; on GeneratorExit records it (and which task
/// closed it) and lets it end the generator.
AsyncGenerator<int> with_cleanup(Cleanup& c) {
    c.body_started = true;
    Guard guard{&c.raii};
    try {
        for (int i = 0;; ++i)
            co_yield i;
    } catch (const GeneratorExit&) {
        c.caught_exit = true;
        c.closed_by = asyncio::current_task(asyncio::get_running_loop());
        throw;
    }
}

/// Like with_cleanup, but the cleanup awaits before it finishes (Python's
/// `finally: await asyncio.sleep(0)`).
AsyncGenerator<int> with_async_cleanup(Cleanup& c) {
    c.body_started = true;
    Guard guard{&c.raii};
    std::exception_ptr exit;
    try {
        for (int i = 0;; ++i)
            co_yield i;
    } catch (const GeneratorExit&) {
        c.caught_exit = true;
        exit = std::current_exception();
    }
    co_await asyncio::sleep(0);
    co_await asyncio::sleep(0);
    c.after_await = true;
    std::rethrow_exception(exit);
}

/// Its cleanup throws instead of finishing.
AsyncGenerator<int> cleanup_throws(Cleanup& c) {
    Guard guard{&c.raii};
    std::exception_ptr exit;
    try {
        co_yield 1;
        co_yield 2;
    } catch (const GeneratorExit&) {
        c.caught_exit = true;
        exit = std::current_exception();
    }
    if (exit) throw std::logic_error("cleanup failed");
}

/// Catches GeneratorExit and yields again (Python's test_async_gen_asyncio_aclose_06).
AsyncGenerator<int> ignores_exit(int& exits) {
    for (int i = 0;; ++i) {
        try {
            co_yield i;
        } catch (const GeneratorExit&) {
            ++exits;
        }
    }
}

template <class T>
Coro<T> first_value(AsyncGenerator<T>& gen) {
    auto v = co_await gen.next();
    REQUIRE(v.has_value());
    co_return std::move(*v);
}

template <class T>
Coro<std::vector<T>> drain(AsyncGenerator<T>& gen) {
    std::vector<T> out;
    while (auto v = co_await gen.next())
        out.push_back(std::move(*v));
    co_return out;
}

}  // namespace

// -- iteration ---------------------------------------------------------------------

TEST_CASE("an async generator runs to exhaustion, then keeps returning nullopt") {
    auto main = []() -> Coro<void> {
        auto gen = count_to(3);
        std::vector<int> seen;
        while (auto v = co_await gen.next())
            seen.push_back(*v);
        CHECK(seen == std::vector<int>{0, 1, 2});
        auto again = co_await gen.next();
        CHECK_FALSE(again.has_value());
        auto and_again = co_await gen.next();
        CHECK_FALSE(and_again.has_value());
    };
    run_guarded(main());
}

TEST_CASE("an async generator that returns at once yields nothing") {
    auto main = []() -> Coro<void> {
        auto gen = count_to(0);
        auto v = co_await gen.next();
        CHECK_FALSE(v.has_value());
    };
    run_guarded(main());
}

TEST_CASE("nothing runs before the first next()") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = with_cleanup(c);
        co_await asyncio::sleep(0);
        CHECK_FALSE(c.body_started);
        auto v = co_await gen.next();
        CHECK(c.body_started);
        CHECK(v == 0);
        co_await gen.aclose();
    };
    run_guarded(main());
}

namespace {
AsyncGenerator<std::string> reuses_one_string() {
    std::string s = "a";
    co_yield s;  // an lvalue is copied: the generator keeps its own
    s += "b";
    co_yield s;
    co_yield std::string("moved");
}

AsyncGenerator<std::unique_ptr<int>> move_only() {
    co_yield std::make_unique<int>(1);
    auto p = std::make_unique<int>(2);
    co_yield std::move(p);
}
}  // namespace

TEST_CASE("yielded values: lvalues are copied, rvalues moved, move-only types work") {
    auto main = []() -> Coro<void> {
        auto strings = reuses_one_string();
        auto seen = co_await drain(strings);
        CHECK(seen == std::vector<std::string>{"a", "ab", "moved"});

        auto ptrs = move_only();
        std::vector<int> values;
        while (auto p = co_await ptrs.next())
            values.push_back(**p);
        CHECK(values == std::vector<int>{1, 2});
    };
    run_guarded(main());
}

namespace {
AsyncGenerator<int&> elements(std::vector<int>& v) {
    for (int& x : v) {
        co_await asyncio::sleep(0);
        co_yield x;
    }
}

AsyncGenerator<const std::string&> temporaries() {
    co_yield std::string("lives until the generator resumes");
    co_yield std::string(100, 'x');
}
}  // namespace

TEST_CASE("AsyncGenerator<T&> yields references, given as pointers") {
    auto main = []() -> Coro<void> {
        std::vector<int> data{1, 2, 3};
        auto gen = elements(data);
        while (int* p = co_await gen.next())
            *p *= 10;
        CHECK(data == std::vector<int>{10, 20, 30});
        int* end = co_await gen.next();
        CHECK(end == nullptr);

        auto texts = temporaries();
        std::vector<std::string> copies;
        while (const std::string* s = co_await texts.next())
            copies.push_back(*s);
        REQUIRE(copies.size() == 2);
        CHECK(copies[0] == "lives until the generator resumes");
        CHECK(copies[1] == std::string(100, 'x'));
    };
    run_guarded(main());
}

TEST_CASE("100,000 synchronous yields do not grow the stack") {
    // long long: the sum passes 2^31, and long is 32-bit on Windows.
    auto main = []() -> Coro<long long> {
        auto gen = count_to(100'000);
        long long sum = 0;
        while (auto v = co_await gen.next())
            sum += *v;
        co_return sum;
    };
    CHECK(run_guarded(main()) == 100'000LL * 99'999LL / 2);
}

namespace {
AsyncGenerator<int> fails_after(int n, bool& destroyed) {
    Guard guard{&destroyed};
    for (int i = 0; i < n; ++i)
        co_yield i;
    throw std::runtime_error("generator failed");
}
}  // namespace

TEST_CASE("an exception thrown by the generator reaches next() and ends it") {
    auto main = []() -> Coro<void> {
        bool destroyed = false;
        auto gen = fails_after(1, destroyed);
        auto first = co_await gen.next();
        CHECK(first == 0);
        std::string what;
        try {
            auto v = co_await gen.next();
            CHECK_FALSE(v.has_value());  // not reached
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "generator failed");
        CHECK(destroyed);  // its frame unwound
        auto after = co_await gen.next();
        CHECK_FALSE(after.has_value());
        co_await gen.aclose();  // finished: nothing to do
    };
    run_guarded(main());
}

namespace {
AsyncGenerator<int> awaits_between(Future<int> fut) {
    co_await asyncio::sleep(1ms);
    co_yield 1;
    const int v = co_await fut;
    co_yield v;
    co_await asyncio::sleep(0);
    co_yield v + 1;
}
}  // namespace

TEST_CASE("the generator awaits sleeps and futures between its yields") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Future<int> fut = loop.create_future<int>();
        auto gen = awaits_between(fut);
        auto first = co_await gen.next();
        CHECK(first == 1);
        loop.call_soon([fut]() mutable { fut.set_result(41); });
        auto rest = co_await drain(gen);
        CHECK(rest == std::vector<int>{41, 42});
    };
    run_guarded(main());
}

TEST_CASE("async generators interleave in concurrent tasks") {
    auto main = []() -> Coro<void> {
        std::vector<int> order;
        auto consume = [](int base, std::vector<int>& out) -> Coro<void> {
            auto gen = ticker(3);
            while (auto v = co_await gen.next())
                out.push_back(base + *v);
        };
        auto a = asyncio::create_task(consume(0, order));
        auto b = asyncio::create_task(consume(10, order));
        co_await a;
        co_await b;
        CHECK(order == std::vector<int>{0, 10, 1, 11, 2, 12});
    };
    run_guarded(main());
}

TEST_CASE("next() or aclose() while the generator is running is a RuntimeError") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        Future<int> fut = loop.create_future<int>();
        auto gen = awaits_between(fut);
        auto first = co_await gen.next();
        CHECK(first == 1);
        auto consumer = [](AsyncGenerator<int>& g) -> Coro<int> {
            auto v = co_await g.next();
            co_return v.value();
        };
        Task<int> t = asyncio::create_task(consumer(gen));
        co_await asyncio::sleep(0);  // t is now inside the generator, awaiting fut
        std::string next_error;
        try {
            auto v = co_await gen.next();
            CHECK_FALSE(v.has_value());  // not reached
        } catch (const asyncio::RuntimeError& e) {
            next_error = e.what();
        }
        CHECK(next_error == "anext(): asynchronous generator is already running");
        std::string close_error;
        try {
            co_await gen.aclose();
        } catch (const asyncio::RuntimeError& e) {
            close_error = e.what();
        }
        CHECK(close_error == "aclose(): asynchronous generator is already running");
        fut.set_result(7);
        const int v = co_await t;
        CHECK(v == 7);
        auto last = co_await gen.next();
        CHECK(last == 8);
    };
    run_guarded(main());
}

// -- aclose --------------------------------------------------------------------------

TEST_CASE("aclose() on a generator that never started: its body never runs") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = with_cleanup(c);
        co_await gen.aclose();
        CHECK_FALSE(c.body_started);
        CHECK_FALSE(c.caught_exit);
        auto v = co_await gen.next();
        CHECK_FALSE(v.has_value());
        CHECK_FALSE(c.body_started);
    };
    run_guarded(main());
}

TEST_CASE("aclose() on a suspended generator runs its cleanup: RAII and catch(GeneratorExit)") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = with_cleanup(c);
        auto v0 = co_await gen.next();
        auto v1 = co_await gen.next();
        CHECK(v0 == 0);
        CHECK(v1 == 1);
        CHECK_FALSE(c.raii);
        co_await gen.aclose();
        CHECK(c.caught_exit);
        CHECK(c.raii);
        REQUIRE(c.closed_by.has_value());
        CHECK(*c.closed_by == *asyncio::current_task());  // aclose ran it inline
        auto after = co_await gen.next();
        CHECK_FALSE(after.has_value());
    };
    run_guarded(main());
}

TEST_CASE("aclose() on a finished generator does nothing, and a second aclose() neither") {
    auto main = []() -> Coro<void> {
        auto gen = count_to(1);
        auto all = co_await drain(gen);
        CHECK(all == std::vector<int>{0});
        co_await gen.aclose();
        co_await gen.aclose();

        Cleanup c;
        auto open = with_cleanup(c);
        auto v = co_await open.next();
        CHECK(v == 0);
        co_await open.aclose();
        c.caught_exit = false;
        co_await open.aclose();
        CHECK_FALSE(c.caught_exit);
    };
    run_guarded(main());
}

TEST_CASE("aclose() waits for cleanup that awaits") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = with_async_cleanup(c);
        auto v = co_await gen.next();
        CHECK(v == 0);
        co_await gen.aclose();
        CHECK(c.caught_exit);
        CHECK(c.after_await);
        CHECK(c.raii);
    };
    run_guarded(main());
}

TEST_CASE("cleanup that throws: aclose() rethrows it") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = cleanup_throws(c);
        auto v = co_await gen.next();
        CHECK(v == 1);
        std::string what;
        try {
            co_await gen.aclose();
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        CHECK(what == "cleanup failed");
        CHECK(c.caught_exit);
        CHECK(c.raii);
        auto after = co_await gen.next();
        CHECK_FALSE(after.has_value());
    };
    run_guarded(main());
}

TEST_CASE("a generator that yields after GeneratorExit: RuntimeError") {
    auto main = []() -> Coro<void> {
        ScopedReports reports(asyncio::get_running_loop());
        int exits = 0;
        {
            auto gen = ignores_exit(exits);
            auto v = co_await gen.next();
            CHECK(v == 0);
            std::string what;
            try {
                co_await gen.aclose();
            } catch (const asyncio::RuntimeError& e) {
                what = e.what();
            }
            CHECK(what == "async generator ignored GeneratorExit");
            CHECK(exits == 1);
            // It is still suspended, at its next co_yield, and resumes normally.
            auto next = co_await gen.next();
            CHECK(next == 2);
            CHECK(exits == 1);
            // Closing again throws GeneratorExit in again.
            what.clear();
            try {
                co_await gen.aclose();
            } catch (const asyncio::RuntimeError& e) {
                what = e.what();
            }
            CHECK(what == "async generator ignored GeneratorExit");
            CHECK(exits == 2);
        }
        // Dropped: closed once more by a task, which reports the same
        // failure, and then freed (not handed to yet another task).
        for (int i = 0; i < 4; ++i)
            co_await asyncio::sleep(0);
        CHECK(exits == 3);
        REQUIRE(reports.contexts.size() == 1);
        CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception),
                          "async generator ignored GeneratorExit");
    };
    run_guarded(main());
}

namespace {
AsyncGenerator<std::string> ignores_exit_with_strings(int& exits) {
    for (int i = 0;; ++i) {
        try {
            co_yield std::string(64, static_cast<char>('a' + i % 26));  // not a small string
        } catch (const GeneratorExit&) {
            ++exits;
        }
    }
}
}  // namespace

TEST_CASE("a value yielded while closing is neither lost nor leaked") {
    // The value yielded after the ignored GeneratorExit is never taken; the
    // next co_yield replaces it (LeakSanitizer checks that it is freed).
    auto main = []() -> Coro<void> {
        int exits = 0;
        auto gen = ignores_exit_with_strings(exits);
        auto a = co_await gen.next();
        REQUIRE(a.has_value());
        CHECK(*a == std::string(64, 'a'));
        bool refused = false;
        try {
            co_await gen.aclose();
        } catch (const asyncio::RuntimeError&) {
            refused = true;
        }
        CHECK(refused);
        auto c = co_await gen.next();
        REQUIRE(c.has_value());
        CHECK(*c == std::string(64, 'c'));
        CHECK(exits == 1);
        // Let the finalizer's close attempt fail quietly.
        asyncio::get_running_loop().set_exception_handler([](auto&, const auto&) {});
    };
    run_guarded(main());
}

namespace {
AsyncGenerator<int> catches_std_exception(bool& caught_std, bool& caught_exit) {
    try {
        co_yield 1;
        co_yield 2;
    } catch (const std::exception&) {
        caught_std = true;
    } catch (const GeneratorExit&) {
        caught_exit = true;
        throw;
    }
}
}  // namespace

TEST_CASE("GeneratorExit is not a std::exception") {
    static_assert(!std::is_base_of_v<std::exception, GeneratorExit>);
    auto main = []() -> Coro<void> {
        bool caught_std = false;
        bool caught_exit = false;
        auto gen = catches_std_exception(caught_std, caught_exit);
        auto v = co_await gen.next();
        CHECK(v == 1);
        co_await gen.aclose();
        CHECK_FALSE(caught_std);
        CHECK(caught_exit);
    };
    run_guarded(main());
}

// -- finalization -----------------------------------------------------------------------

TEST_CASE("a generator dropped while suspended at co_yield is closed by a task on its loop") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        {
            auto gen = with_async_cleanup(c);
            auto v0 = co_await gen.next();
            auto v1 = co_await gen.next();
            CHECK(v1 == 1);
            CHECK(v0 == 0);
        }
        CHECK_FALSE(c.caught_exit);  // not closed inside the destructor
        for (int i = 0; i < 4; ++i)
            co_await asyncio::sleep(0);
        CHECK(c.caught_exit);
        CHECK(c.after_await);  // the cleanup could await: it ran in a task
        CHECK(c.raii);
    };
    run_guarded(main());
}

TEST_CASE("the task that closes a dropped generator is not the one that dropped it") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        {
            auto gen = with_cleanup(c);
            auto v = co_await gen.next();
            CHECK(v == 0);
        }
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK(c.caught_exit);
        REQUIRE(c.closed_by.has_value());
        CHECK(*c.closed_by != *asyncio::current_task());
        CHECK(c.closed_by->done());
    };
    run_guarded(main());
}

TEST_CASE("a dropped generator whose cleanup fails is reported through the exception handler") {
    auto main = []() -> Coro<void> {
        ScopedReports reports(asyncio::get_running_loop());
        Cleanup c;
        int exits = 0;
        {
            auto bad = cleanup_throws(c);
            auto stubborn = ignores_exit(exits);
            auto v1 = co_await bad.next();
            auto v2 = co_await stubborn.next();
            CHECK(v1 == 1);
            CHECK(v2 == 0);
        }
        for (int i = 0; i < 4; ++i)
            co_await asyncio::sleep(0);
        CHECK(c.caught_exit);
        CHECK(exits == 1);
        REQUIRE(reports.contexts.size() == 2);
        std::vector<std::string> errors;
        for (const auto& context : reports.contexts) {
            CHECK(context.message == "an error occurred during closing of asynchronous generator");
            CHECK(context.repr.find("async_generator object") != std::string::npos);
            try {
                std::rethrow_exception(context.exception);
            } catch (const std::exception& e) {
                errors.emplace_back(e.what());
            }
        }
        std::sort(errors.begin(), errors.end());
        CHECK(errors ==
              std::vector<std::string>{"async generator ignored GeneratorExit", "cleanup failed"});
    };
    run_guarded(main());
}

TEST_CASE("loop.shutdown_asyncgens() closes open generators and reports failed cleanups") {
    auto loop = asyncio::new_event_loop();
    ScopedReports reports(*loop);
    Cleanup good, slow, bad, unstarted;
    {
        auto g1 = with_cleanup(good);
        auto g2 = with_async_cleanup(slow);
        auto g3 = cleanup_throws(bad);
        auto g4 = with_cleanup(unstarted);
        auto done = count_to(1);
        CHECK(loop->run_until_complete(first_value(g1)) == 0);
        CHECK(loop->run_until_complete(first_value(g2)) == 0);
        CHECK(loop->run_until_complete(first_value(g3)) == 1);
        auto all = loop->run_until_complete(drain(done));
        CHECK(all.size() == 1);

        loop->run_until_complete(loop->shutdown_asyncgens());
        CHECK(good.caught_exit);
        CHECK(good.raii);
        CHECK(slow.after_await);
        CHECK(bad.caught_exit);
        CHECK_FALSE(unstarted.body_started);  // never started: not the loop's business
        REQUIRE(reports.contexts.size() == 1);
        CHECK(reports.messages[0] == "an error occurred during closing of asynchronous generator");
        CHECK_THROWS_WITH(std::rethrow_exception(reports.contexts[0].exception), "cleanup failed");
        auto after = loop->run_until_complete(drain(g1));
        CHECK(after.empty());

        // A generator first iterated after the shutdown is warned about (and
        // otherwise works).
        asyncio_test::CapturedLog log;
        auto late = count_to(2);
        CHECK(loop->run_until_complete(first_value(late)) == 0);
        CHECK(log.contains("was scheduled after loop.shutdown_asyncgens() call"));
        auto rest = loop->run_until_complete(drain(late));
        CHECK(rest == std::vector<int>{1});
    }
    loop->close();
}

TEST_CASE("a generator being closed by its finalizer is not closed again by shutdown_asyncgens") {
    auto main = []() -> Coro<void> {
        ScopedReports reports(asyncio::get_running_loop());
        Cleanup c;
        {
            auto gen = with_async_cleanup(c);
            auto v = co_await gen.next();
            CHECK(v == 0);
        }  // handed to a closing task, which has not run yet
        co_await asyncio::get_running_loop().shutdown_asyncgens();
        for (int i = 0; i < 4; ++i)
            co_await asyncio::sleep(0);
        CHECK(c.after_await);
        CHECK(reports.contexts.empty());  // no "already running" from a second aclose()
    };
    run_guarded(main());
}

TEST_CASE("shutdown_asyncgens() with no generators returns at once") {
    auto loop = asyncio::new_event_loop();
    loop->run_until_complete(loop->shutdown_asyncgens());
    loop->run_until_complete(loop->shutdown_asyncgens());
    loop->close();
}

TEST_CASE("asyncio::run closes a dangling generator before it returns") {
    Cleanup c;
    std::optional<AsyncGenerator<int>> holder;
    auto main = [](std::optional<AsyncGenerator<int>>& h, Cleanup& c) -> Coro<void> {
        h.emplace(with_async_cleanup(c));
        auto v = co_await h->next();
        CHECK(v == 0);
    };
    asyncio::run(main(holder, c));
    CHECK(c.caught_exit);
    CHECK(c.after_await);  // run by the loop, not by a destructor
    CHECK(c.raii);
}

// -- cancellation and loop close ---------------------------------------------------------

namespace {
AsyncGenerator<int> sleeps_inside(Cleanup& c) {
    Guard guard{&c.raii};
    co_yield 0;
    co_await asyncio::sleep(1h);
    co_yield 1;
}
}  // namespace

TEST_CASE("cancelling the consumer while the generator awaits inside it") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto gen = sleeps_inside(c);
        auto first = co_await gen.next();
        CHECK(first == 0);
        auto consumer = [](AsyncGenerator<int>& g) -> Coro<int> {
            auto v = co_await g.next();
            co_return v.value();
        };
        Task<int> t = asyncio::create_task(consumer(gen));
        co_await asyncio::sleep(0);
        CHECK_FALSE(t.done());
        t.cancel("stop consuming");
        std::string message;
        try {
            co_await t;
        } catch (const CancelledError& e) {
            message = e.message();
        }
        CHECK(message == "stop consuming");
        CHECK(t.cancelled());
        CHECK(c.raii);  // the CancelledError went through the generator and ended it
        auto after = co_await gen.next();
        CHECK_FALSE(after.has_value());
    };
    run_guarded(main());
}

TEST_CASE("a consumer task that owns its generator can be cancelled inside it") {
    auto main = []() -> Coro<void> {
        Cleanup c;
        auto consumer = [](Cleanup& c) -> Coro<void> {
            auto gen = sleeps_inside(c);
            while (auto v = co_await gen.next()) {
            }
        };
        Task<> t = asyncio::create_task(consumer(c));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        CHECK(t.cancelled());
        CHECK(c.raii);
    };
    run_guarded(main());
}

TEST_CASE("closing the loop frees a generator running inside an abandoned task") {
    auto loop = asyncio::new_event_loop();
    ScopedReports reports(*loop);
    Cleanup owned, outside;
    {
        auto outside_gen = sleeps_inside(outside);
        auto owner = [](Cleanup& c) -> Coro<void> {
            auto gen = sleeps_inside(c);
            while (auto v = co_await gen.next()) {
            }
        };
        auto borrower = [](AsyncGenerator<int>& gen) -> Coro<void> {
            while (auto v = co_await gen.next()) {
            }
        };
        Task<> t1 = loop->create_task(owner(owned));
        Task<> t2 = loop->create_task(borrower(outside_gen));
        loop->call_soon([&] { loop->call_soon([&] { loop->stop(); }); });
        loop->run_forever();
        CHECK_FALSE(t1.done());
        CHECK_FALSE(t2.done());
        loop->close();
        CHECK(t1.cancelled());
        CHECK(t2.cancelled());
        CHECK(owned.raii);          // freed with its task
        CHECK_FALSE(outside.raii);  // still owned here; freed at the end of the scope
        CHECK(reports.messages.size() == 2);
    }
    CHECK(outside.raii);
}

TEST_CASE("a generator dropped when its loop is not running is destroyed at once") {
    auto loop = asyncio::new_event_loop();
    Cleanup c;
    {
        auto gen = with_cleanup(c);
        CHECK(loop->run_until_complete(first_value(gen)) == 0);
    }
    // No loop runs to close it: its frame is destroyed (RAII runs, the
    // catch (GeneratorExit) handler cannot).
    CHECK(c.raii);
    CHECK_FALSE(c.caught_exit);
    loop->close();
}
