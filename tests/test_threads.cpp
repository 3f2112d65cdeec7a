// Threads: ports of CPython's Lib/test/test_asyncio/test_threads.py
// (to_thread), test_tasks.py RunCoroutineThreadsafeTests, and the
// run_in_executor / shutdown_default_executor cases of test_base_events.py,
// plus ThreadPoolExecutor, wrap_future for std::future, debug-mode thread
// checks and a concurrent run_coroutine_threadsafe stress test.
//
// Catch2's assertions are not thread-safe: other threads only record what
// they saw, and the test's own thread checks it after joining them.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Future;
using asyncio::Task;
using asyncio::ThreadPoolExecutor;
using asyncio_test::run_guarded;

namespace {

/// The log sink may be called from any thread: this one locks.
struct ThreadSafeLog {
    ThreadSafeLog() {
        previous = asyncio::set_log_sink([this](asyncio::LogLevel, std::string_view text) {
            std::lock_guard lock(mutex);
            lines.emplace_back(text);
        });
    }
    ~ThreadSafeLog() { asyncio::set_log_sink(std::move(previous)); }
    bool contains(const std::string& needle) {
        std::lock_guard lock(mutex);
        return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) {
            return line.find(needle) != std::string::npos;
        });
    }
    asyncio::LogSink previous;
    std::mutex mutex;
    std::vector<std::string> lines;
};

/// A loop running forever in its own thread.
struct LoopThread {
    LoopThread() : loop(asyncio::new_event_loop()) {
        thread = std::thread([this] { loop->run_forever(); });
    }
    ~LoopThread() {
        stop();
        loop->close();
    }
    void stop() {
        if (!thread.joinable()) return;
        loop->call_soon_threadsafe([this] { loop->stop(); });
        thread.join();
    }
    std::unique_ptr<asyncio::EventLoop> loop;
    std::thread thread;
};

/// A counter that threads can wait on with a deadline, so that a test that
/// would deadlock fails instead.
struct Rendezvous {
    explicit Rendezvous(int parties) : parties(parties) {}
    /// Arrives and waits for all the parties; false if they did not all come.
    bool arrive_and_wait() {
        std::unique_lock lock(mutex);
        ++arrived;
        cv.notify_all();
        return cv.wait_for(lock, 10s, [this] { return arrived >= parties; });
    }
    int parties;
    int arrived = 0;
    std::mutex mutex;
    std::condition_variable cv;
};

/// An exception that can tell whether it is the object that was thrown.
struct Traced : std::runtime_error {
    explicit Traced(const std::string& message) : std::runtime_error(message), origin(this) {}
    Traced(const Traced& other) : std::runtime_error(other), origin(other.origin) {}
    const Traced* origin;
};

Coro<int> add(int a, int b) {
    co_await asyncio::sleep(0);
    co_return a + b;
}

Coro<int> add_then_fail(int a, int b) {
    co_await asyncio::sleep(0);
    if (a + b != 0) throw std::runtime_error("Fail!");
    co_return 0;
}

Coro<int> cancels_itself() {
    co_await asyncio::sleep(0);
    asyncio::current_task()->cancel("cancelled by itself");
    co_await asyncio::sleep(1h);
    co_return 0;
}

}  // namespace

// -- to_thread -----------------------------------------------------------------------------

TEST_CASE("to_thread returns the function's result") {
    auto main = []() -> Coro<int> {
        auto sum = [](std::vector<int> v) { return std::accumulate(v.begin(), v.end(), 0); };
        std::vector<int> values{40, 2};  // no braced temporary inside co_await (GCC 12)
        const int r = co_await asyncio::to_thread(sum, values);
        co_return r;
    };
    CHECK(run_guarded(main()) == 42);
}

TEST_CASE("to_thread runs the function once, on another thread, with its arguments") {
    auto main = []() -> Coro<void> {
        std::atomic<int> calls{0};
        std::thread::id ran_on;
        auto fn = [&](const std::string& text, int n) {
            ++calls;
            ran_on = std::this_thread::get_id();
            return text + std::to_string(n);
        };
        const std::string r = co_await asyncio::to_thread(fn, std::string("test"), 7);
        CHECK(r == "test7");
        CHECK(calls == 1);
        CHECK(ran_on != std::this_thread::get_id());
    };
    run_guarded(main());
}

TEST_CASE("to_thread propagates the exception object intact") {
    auto main = []() -> Coro<void> {
        auto raise_traced = []() -> int { throw Traced("test"); };
        bool same_object = false;
        std::string what;
        try {
            const int r = co_await asyncio::to_thread(raise_traced);
            CHECK(r == 0);  // not reached
        } catch (const Traced& e) {
            same_object = e.origin == &e;
            what = e.what();
        }
        CHECK(what == "test");
        CHECK(same_object);  // not a copy: the very object the worker threw

        auto raise_int = [] { throw 42; };
        int thrown = 0;
        try {
            co_await asyncio::to_thread(raise_int);
        } catch (int v) {
            thrown = v;
        }
        CHECK(thrown == 42);  // not only std::exceptions
    };
    run_guarded(main());
}

TEST_CASE("to_thread: ten concurrent calls") {
    auto main = []() -> Coro<void> {
        std::atomic<int> calls{0};
        auto fn = [&] { ++calls; };
        std::vector<Task<void>> tasks;
        for (int i = 0; i < 10; ++i)
            tasks.push_back(asyncio::create_task(asyncio::to_thread(fn)));
        co_await asyncio::gather(tasks);
        CHECK(calls == 10);
    };
    run_guarded(main());
}

// -- run_in_executor -----------------------------------------------------------------------

TEST_CASE("run_in_executor(nullptr) runs the work in the default executor") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto work = [] { return std::make_pair(std::this_thread::get_id(), std::string("done")); };
        Future<std::pair<std::thread::id, std::string>> fut = loop.run_in_executor(nullptr, work);
        CHECK_FALSE(fut.done());
        auto [id, text] = co_await fut;
        CHECK(text == "done");
        CHECK(id != std::this_thread::get_id());

        auto fails = []() -> int { throw std::invalid_argument("bad"); };
        std::string what;
        try {
            const int r = co_await loop.run_in_executor(nullptr, fails);
            CHECK(r == 0);  // not reached
        } catch (const std::invalid_argument& e) {
            what = e.what();
        }
        CHECK(what == "bad");
    };
    run_guarded(main());
}

TEST_CASE("run_in_executor with a user ThreadPoolExecutor") {
    ThreadPoolExecutor pool(2);
    auto main = [](ThreadPoolExecutor& pool) -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::mutex mutex;
        std::set<std::thread::id> threads;
        auto work = [&](int i) {
            return [&, i] {
                std::lock_guard lock(mutex);
                threads.insert(std::this_thread::get_id());
                return i * i;
            };
        };
        std::vector<Future<int>> futures;
        for (int i = 0; i < 20; ++i)
            futures.push_back(loop.run_in_executor(&pool, work(i)));
        int sum = 0;
        for (auto& f : futures)
            sum += co_await f;
        CHECK(sum == 2470);
        CHECK(threads.size() <= 2);
        CHECK(threads.count(std::this_thread::get_id()) == 0);
    };
    run_guarded(main(pool));
}

TEST_CASE("cancelling the future before the work starts keeps the work from running") {
    ThreadPoolExecutor pool(1);
    auto main = [](ThreadPoolExecutor& pool) -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::Latch release(1);
        std::atomic<bool> second_ran{false};
        auto blocker = [&] { release.wait(); };
        auto second = [&] { second_ran = true; };
        auto third = [] { return 3; };
        Future<void> a = loop.run_in_executor(&pool, blocker);
        Future<void> b = loop.run_in_executor(&pool, second);  // queued behind a
        CHECK(b.cancel());
        co_await asyncio::sleep(0);  // b's done callback tells the job
        release.count_down();
        co_await a;
        const int c = co_await loop.run_in_executor(&pool, third);  // runs after b's turn
        CHECK(c == 3);
        CHECK(b.cancelled());
        CHECK_FALSE(second_ran);
    };
    run_guarded(main(pool));
}

TEST_CASE("a result for a future cancelled while the work ran is dropped") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        // Shared: the work may still be leaving release.wait() when we return.
        auto started = std::make_shared<asyncio_test::Latch>(1);
        auto release = std::make_shared<asyncio_test::Latch>(1);
        auto work = [started, release] {
            started->count_down();
            release->wait();
            return 5;
        };
        Future<int> fut = loop.run_in_executor(nullptr, work);
        started->wait();
        fut.cancel();
        release->count_down();
        auto probe = [] { return 0; };
        // A later job, on the same (idle by then) pool, is delivered after.
        for (int i = 0; i < 3; ++i)
            co_await loop.run_in_executor(nullptr, probe);
        CHECK(fut.cancelled());
    };
    run_guarded(main());
}

TEST_CASE("run_in_executor on an executor that was shut down throws, and leaks nothing") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        ThreadPoolExecutor pool(1);
        pool.shutdown();
        auto work = [] { return 1; };
        std::string error;
        try {
            co_await loop.run_in_executor(&pool, work);
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        CHECK(error == "cannot schedule new futures after shutdown");
    };
    run_guarded(main());
}

TEST_CASE("run_in_executor on a closed loop is refused") {
    auto loop = asyncio::new_event_loop();
    loop->close();
    CHECK_THROWS_WITH(loop->run_in_executor(nullptr, [] { return 1; }), "Event loop is closed");
}

namespace {
/// Counts the work it is given, and runs it on a pool of its own.
struct CountingExecutor : asyncio::Executor {
    void execute(std::function<void()> work) override {
        ++executed;
        pool.execute(std::move(work));
    }
    void shutdown(bool wait) override {
        shut_down = true;
        pool.shutdown(wait);
    }
    ThreadPoolExecutor pool{1};
    std::atomic<int> executed{0};
    std::atomic<bool> shut_down{false};
};
}  // namespace

TEST_CASE("set_default_executor replaces the executor of run_in_executor(nullptr) and to_thread") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto owned = std::make_unique<CountingExecutor>();
        CountingExecutor* executor = owned.get();
        loop.set_default_executor(std::move(owned));
        auto one = [] { return 1; };
        auto two = [] { return 2; };
        const int a = co_await loop.run_in_executor(nullptr, one);
        const int b = co_await asyncio::to_thread(two);
        CHECK(a + b == 3);
        CHECK(executor->executed == 2);
        co_await loop.shutdown_default_executor();
        // Not used after its shutdown: it is gone.
    };
    run_guarded(main());
}

TEST_CASE("shutdown_default_executor waits for the work, then refuses more") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::Latch started(1);
        asyncio_test::Latch release(1);
        std::atomic<bool> finished{false};
        auto work = [&] {
            started.count_down();
            release.wait();
            finished = true;
        };
        Future<void> fut = loop.run_in_executor(nullptr, work);
        started.wait();  // blocks the loop for a moment: the worker needs nothing from it
        Task<void> shutdown = asyncio::create_task(loop.shutdown_default_executor());
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK_FALSE(shutdown.done());  // the loop keeps running while it waits
        release.count_down();
        co_await shutdown;
        CHECK(finished);    // joined
        CHECK(fut.done());  // and the result delivered before
        std::string error;
        try {
            auto one = [] { return 1; };
            co_await loop.run_in_executor(nullptr, one);
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        CHECK(error == "Executor shutdown has been called");
        auto one = [] { return 1; };
        error.clear();
        try {
            co_await asyncio::to_thread(one);
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        CHECK(error == "Executor shutdown has been called");
        // A user executor still works.
        ThreadPoolExecutor pool(1);
        auto seven = [] { return 7; };
        const int r = co_await loop.run_in_executor(&pool, seven);
        CHECK(r == 7);
    };
    run_guarded(main());
}

TEST_CASE("shutdown_default_executor without a default executor returns at once") {
    auto loop = asyncio::new_event_loop();
    loop->run_until_complete(loop->shutdown_default_executor());
    CHECK_THROWS_WITH(loop->run_in_executor(nullptr, [] { return 1; }),
                      "Executor shutdown has been called");
    loop->close();
}

TEST_CASE("shutdown_default_executor stops waiting after its timeout") {
    ThreadSafeLog log;
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::Latch started(1);
        asyncio_test::Latch release(1);
        auto work = [&] {
            started.count_down();
            release.wait();
        };
        Future<void> fut = loop.run_in_executor(nullptr, work);
        started.wait();
        co_await loop.shutdown_default_executor(0.01);  // the work is blocked: it times out
        release.count_down();
        co_await fut;  // the result still arrives
    };
    run_guarded(main());
    CHECK(log.contains("The executor did not finish joining its threads within 0.01 seconds."));
}

TEST_CASE("cancelling shutdown_default_executor leaves the joining to its thread") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio_test::Latch started(1);
        asyncio_test::Latch release(1);
        auto work = [&] {
            started.count_down();
            release.wait();
            return 9;
        };
        Future<int> fut = loop.run_in_executor(nullptr, work);
        started.wait();
        Task<void> shutdown = asyncio::create_task(loop.shutdown_default_executor());
        co_await asyncio::sleep(0);
        shutdown.cancel();
        bool cancelled = false;
        try {
            co_await shutdown;
        } catch (const CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
        release.count_down();
        const int r = co_await fut;
        CHECK(r == 9);
    };
    run_guarded(main());
}

TEST_CASE("loop.close() waits for the default executor's threads") {
    auto loop = asyncio::new_event_loop();
    asyncio_test::Latch release(1);
    std::atomic<bool> closing{false};
    std::atomic<bool> finished{false};
    auto work = [&] {
        release.wait();
        finished = true;
    };
    Future<void> fut = loop->run_in_executor(nullptr, work);
    std::thread releaser([&] {
        while (!closing)
            std::this_thread::yield();
        release.count_down();
    });
    closing = true;
    loop->close();
    CHECK(finished);
    CHECK_FALSE(fut.done());  // its result was dropped with the loop's callbacks
    releaser.join();
}

TEST_CASE("a result that arrives after its loop closed is dropped with a warning") {
    ThreadSafeLog log;
    ThreadPoolExecutor pool(1);
    asyncio_test::Latch release(1);
    {
        auto loop = asyncio::new_event_loop();
        auto work = [&] {
            release.wait();
            return std::string("too late");
        };
        Future<std::string> fut = loop->run_in_executor(&pool, work);
        loop->close();  // does not wait for a user executor
        release.count_down();
        pool.shutdown(true);
        CHECK_FALSE(fut.done());
    }
    CHECK(log.contains("the work finished after its event loop was closed"));
}

// -- ThreadPoolExecutor ----------------------------------------------------------------------

TEST_CASE("ThreadPoolExecutor::submit returns a std::future") {
    ThreadPoolExecutor pool(2);
    std::future<int> sum = pool.submit([](int a, int b) { return a + b; }, 2, 3);
    CHECK(sum.get() == 5);
    std::future<void> fails = pool.submit([] { throw std::runtime_error("in the pool"); });
    CHECK_THROWS_WITH(fails.get(), "in the pool");
    std::string text = "moved";
    std::future<std::size_t> size =
        pool.submit([](const std::string& s) { return s.size(); }, std::move(text));
    CHECK(size.get() == 5);
}

TEST_CASE("ThreadPoolExecutor refuses work after shutdown") {
    ThreadPoolExecutor pool(1);
    std::atomic<int> ran{0};
    pool.execute([&] { ++ran; });
    pool.shutdown();  // waits
    CHECK(ran == 1);
    CHECK_THROWS_AS(pool.execute([] {}), asyncio::RuntimeError);
    CHECK_THROWS_WITH(pool.submit([] { return 1; }), "cannot schedule new futures after shutdown");
    pool.shutdown();  // again: nothing
}

TEST_CASE("ThreadPoolExecutor runs what was queued before shutdown(wait=false)") {
    std::atomic<int> ran{0};
    {
        asyncio_test::Latch release(1);  // outlives the pool, whose destructor joins
        ThreadPoolExecutor pool(1);
        pool.execute([&] { release.wait(); });
        for (int i = 0; i < 5; ++i)
            pool.execute([&] { ++ran; });
        pool.shutdown(false);  // returns at once
        release.count_down();
    }  // the destructor joins
    CHECK(ran == 5);
}

TEST_CASE("ThreadPoolExecutor max_workers: Python's default, or as given") {
    const std::size_t cpus = std::max(1U, std::thread::hardware_concurrency());
    CHECK(ThreadPoolExecutor().max_workers() == std::min<std::size_t>(32, cpus + 4));
    CHECK(ThreadPoolExecutor(3).max_workers() == 3);
}

TEST_CASE("ThreadPoolExecutor starts a thread for work its idle threads cannot take") {
    // Jobs that wait for each other need a thread each: one idle thread must
    // not count for two queued jobs.
    for (int round = 0; round < 20; ++round) {
        ThreadPoolExecutor pool(2);
        pool.submit([] {}).get();
        // Give the thread time to go idle: that is the case under test (the
        // outcome does not depend on it, only whether the case is exercised).
        std::this_thread::sleep_for(2ms);
        auto meeting = std::make_shared<Rendezvous>(2);
        auto a = pool.submit([meeting] { return meeting->arrive_and_wait(); });
        auto b = pool.submit([meeting] { return meeting->arrive_and_wait(); });
        const bool met = a.get() && b.get();
        REQUIRE(met);
    }
}

TEST_CASE("ThreadPoolExecutor never runs more than max_workers jobs at once") {
    ThreadPoolExecutor pool(3);
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    std::vector<std::future<void>> futures;
    for (int i = 0; i < 200; ++i) {
        futures.push_back(pool.submit([&] {
            const int now = ++running;
            int seen = most.load();
            while (now > seen && !most.compare_exchange_weak(seen, now)) {
            }
            std::this_thread::yield();
            --running;
        }));
    }
    for (auto& f : futures)
        f.get();
    CHECK(most <= 3);
    CHECK(most >= 1);
}

// -- run_coroutine_threadsafe ----------------------------------------------------------------

TEST_CASE("run_coroutine_threadsafe from another thread returns the value") {
    LoopThread lt;
    std::future<int> f = asyncio::run_coroutine_threadsafe(add(1, 2), *lt.loop);
    CHECK(f.get() == 3);
}

TEST_CASE("run_coroutine_threadsafe propagates the exception") {
    LoopThread lt;
    std::future<int> f = asyncio::run_coroutine_threadsafe(add_then_fail(1, 2), *lt.loop);
    CHECK_THROWS_AS(f.get(), std::runtime_error);
    std::future<int> g = asyncio::run_coroutine_threadsafe(add_then_fail(1, 2), *lt.loop);
    CHECK_THROWS_WITH(g.get(), "Fail!");
}

TEST_CASE("run_coroutine_threadsafe gives CancelledError when the task is cancelled") {
    LoopThread lt;
    std::future<int> f = asyncio::run_coroutine_threadsafe(cancels_itself(), *lt.loop);
    std::string message;
    try {
        f.get();
    } catch (const CancelledError& e) {
        message = e.message();
    }
    CHECK(message == "cancelled by itself");
}

TEST_CASE("run_coroutine_threadsafe with a void coroutine") {
    LoopThread lt;
    std::atomic<bool> ran{false};
    auto body = [](std::atomic<bool>& ran) -> Coro<void> {
        co_await asyncio::sleep(0);
        ran = true;
    };
    std::future<void> f = asyncio::run_coroutine_threadsafe(body(ran), *lt.loop);
    f.get();
    CHECK(ran);
}

TEST_CASE("run_coroutine_threadsafe: the task is created through the loop's task factory") {
    std::atomic<int> made{0};
    LoopThread lt;
    auto set_factory = [](asyncio::EventLoop& loop, std::atomic<int>& made) -> Coro<void> {
        loop.set_task_factory([&made](asyncio::EventLoop&, Task<>&, asyncio::TaskOptions& opts) {
            ++made;
            opts.name = "from another thread";
        });
        co_return;
    };
    asyncio::run_coroutine_threadsafe(set_factory(*lt.loop, made), *lt.loop).get();
    auto name = []() -> Coro<std::string> { co_return asyncio::current_task()->get_name(); };
    std::future<std::string> f = asyncio::run_coroutine_threadsafe(name(), *lt.loop);
    CHECK(f.get() == "from another thread");
    CHECK(made == 1);
}

TEST_CASE(
    "run_coroutine_threadsafe on a closed loop throws; a task it leaves is a broken promise") {
    {
        ThreadSafeLog log;
        auto loop = asyncio::new_event_loop();
        loop->close();
        CHECK_THROWS_WITH(asyncio::run_coroutine_threadsafe(add(1, 2), *loop),
                          "Event loop is closed");
        CHECK(log.contains("was never awaited"));  // as Python warns of the refused coroutine
    }
    {
        auto loop = asyncio::new_event_loop();
        asyncio_test::RecordedReports reports(*loop);
        auto forever = []() -> Coro<int> {
            co_await asyncio::sleep(1h);
            co_return 0;
        };
        std::future<int> f = asyncio::run_coroutine_threadsafe(forever(), *loop);
        loop->call_soon([&] { loop->call_soon([&] { loop->stop(); }); });
        loop->run_forever();
        loop->close();  // the task is still pending
        std::future_errc code{};
        try {
            f.get();
        } catch (const std::future_error& e) {
            code = static_cast<std::future_errc>(e.code().value());
        }
        CHECK(code == std::future_errc::broken_promise);
        CHECK(reports.contains("Task was destroyed but it is pending!"));
    }
}

TEST_CASE("four threads hammering run_coroutine_threadsafe") {
    constexpr int kThreads = 4;
    constexpr int kPerThread = 500;
    LoopThread lt;
    std::vector<std::vector<int>> results(kThreads);
    std::vector<std::thread> threads;
    asyncio_test::Latch go(kThreads);
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            go.arrive_and_wait();
            std::vector<std::future<int>> futures;
            for (int i = 0; i < kPerThread; ++i)
                futures.push_back(asyncio::run_coroutine_threadsafe(add(t * 1000, i), *lt.loop));
            for (auto& f : futures)
                results[t].push_back(f.get());
        });
    }
    for (auto& thread : threads)
        thread.join();
    for (int t = 0; t < kThreads; ++t) {
        REQUIRE(results[t].size() == kPerThread);
        std::vector<int> expected(kPerThread);
        std::iota(expected.begin(), expected.end(), t * 1000);
        CHECK(results[t] == expected);
    }
}

// -- wrap_future -----------------------------------------------------------------------------

TEST_CASE("wrap_future(std::future) completes with the std::future") {
    auto main = []() -> Coro<void> {
        std::promise<int> value;
        std::promise<void> done;
        std::promise<int> failure;
        Future<int> a = asyncio::wrap_future(value.get_future());
        Future<void> b = asyncio::wrap_future(done.get_future());
        Future<int> c = asyncio::wrap_future(failure.get_future());
        CHECK_FALSE(a.done());
        std::thread setter([&] {
            value.set_value(5);
            done.set_value();
            failure.set_exception(std::make_exception_ptr(std::runtime_error("failed over there")));
        });
        const int v = co_await a;
        co_await b;
        std::string what;
        try {
            co_await c;
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        setter.join();
        CHECK(v == 5);
        CHECK(what == "failed over there");
    };
    run_guarded(main());
}

TEST_CASE("wrap_future(std::shared_future): every wrapper gets the value") {
    auto main = []() -> Coro<void> {
        std::promise<std::string> promise;
        std::shared_future<std::string> shared = promise.get_future().share();
        Future<std::string> a = asyncio::wrap_future(shared);
        Future<std::string> b = asyncio::wrap_future(shared);
        std::thread setter([&] { promise.set_value("shared"); });
        const std::string va = co_await a;
        const std::string vb = co_await b;
        setter.join();
        CHECK(va == "shared");
        CHECK(vb == "shared");
    };
    run_guarded(main());
}

// -- debug mode ---------------------------------------------------------------------------------

TEST_CASE("in debug mode, loop methods called from a foreign thread throw") {
    ThreadSafeLog log;  // the refused coroutine reports that it was never awaited
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        REQUIRE(loop.get_debug());
        std::vector<std::string> errors;
        Future<int> fut = loop.create_future<int>();
        Future<int>* target = &fut;
        std::thread foreign([&loop, &errors, target] {
            const auto attempt = [&](auto&& fn) {
                try {
                    fn();
                    errors.emplace_back("no error");
                } catch (const asyncio::RuntimeError& e) {
                    errors.emplace_back(e.what());
                }
            };
            attempt([&] { loop.call_soon([] {}); });
            attempt([&] { loop.call_later(1s, [] {}); });
            attempt([&] { static_cast<void>(loop.create_task(add(1, 2))); });
            // Not create_future: CPython does not thread-check it (test_events.cpp).
            attempt([&] { static_cast<void>(loop.run_in_executor(nullptr, [] { return 0; })); });
            // The thread-safe way works.
            loop.call_soon_threadsafe([target] { target->set_result(1); });
        });
        const int v = co_await fut;
        foreign.join();
        CHECK(v == 1);
        REQUIRE(errors.size() == 4);
        for (const std::string& e : errors) {
            CHECK(e ==
                  "Non-thread-safe operation invoked on an event loop other than the current one");
        }
    };
    run_guarded(main(), {.debug = true});
}
