// Boost.Asio peer of the core micro benchmarks.
//
// The same five workloads exist in our own Google Benchmark binary and in
// benchmarks/peers/python/core.py; benchmarks/compare.py matches them by name.
// Contract shared with our binary: one benchmark iteration performs exactly one
// batch of `batch` operations, and the `batch` counter records that size, so
// ns/op = real_time per iteration / batch.
//
// Everything runs on a single thread, like a Python event loop. The io_context
// is built with concurrency hint 1, which is how a single-threaded Asio user is
// told to configure it (Asio still takes its internal locks).

#include <benchmark/benchmark.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <vector>

namespace {

namespace asio = boost::asio;

// Operations per batch (per benchmark iteration). Large enough to amortise
// io_context::run()/restart(), small enough that the working set of one batch
// (handlers, coroutine frames, timers) stays in L2 like a busy real loop's.
constexpr std::int64_t kBatch = 10000;

constexpr int kSingleThreaded = 1;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

asio::awaitable<int> trivial() {
    co_return 1;
}

// 1. Plain callbacks: the Asio spelling of loop.call_soon(cb).
void BM_call_soon(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    std::int64_t counter = 0;
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i)
            asio::post(io, [&counter] { ++counter; });
        io.run();
        io.restart();
    }
    if (counter != state.iterations() * n) state.SkipWithError("not every callback ran");
    report_batch(state, n);
}

// 2. Spawn a trivial coroutine and let it finish: Asio's create_task. All the
// spawns are queued before run(), like Python's tasks before the loop resumes.
void BM_create_task(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i)
            asio::co_spawn(io, trivial(), asio::detached);
        io.run();
        io.restart();
    }
    report_batch(state, n);
}

// 3. Asio has no future type that a coroutine can await, so the closest
// equivalent of `await done_future` is awaiting an awaitable<int> that returns
// immediately: it never suspends to the scheduler either, but it does create
// (and free) a coroutine frame per operation, which a done future does not.
asio::awaitable<void> await_done_loop(std::int64_t n, std::int64_t& sum) {
    for (std::int64_t i = 0; i < n; ++i)
        sum += co_await trivial();
}

void BM_await_done_future(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    std::int64_t sum = 0;
    for (auto _ : state) {
        asio::co_spawn(io, await_done_loop(n, sum), asio::detached);
        io.run();
        io.restart();
    }
    if (sum != state.iterations() * n) state.SkipWithError("not every await completed");
    report_batch(state, n);
}

// 4. asyncio.sleep(0): give the scheduler a turn and come back.
asio::awaitable<void> sleep0_loop(std::int64_t n, std::int64_t& resumed) {
    auto executor = co_await asio::this_coro::executor;
    for (std::int64_t i = 0; i < n; ++i) {
        co_await asio::post(executor, asio::use_awaitable);
        ++resumed;
    }
}

void BM_sleep0(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    std::int64_t resumed = 0;
    for (auto _ : state) {
        asio::co_spawn(io, sleep0_loop(n, resumed), asio::detached);
        io.run();
        io.restart();
    }
    if (resumed != state.iterations() * n) state.SkipWithError("not every yield resumed");
    report_batch(state, n);
}

// 5. Arm a far-future timer and cancel it. In Asio, cancelling completes the
// wait with operation_aborted, and running those handlers is part of the cost,
// as purging cancelled TimerHandles is part of asyncio's. A fresh timer per
// operation (as a user would have); only the vector's capacity is reused, and
// destroying the timers is inside the timed region.
void BM_timer_cancel(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    std::vector<asio::steady_timer> timers;
    timers.reserve(static_cast<std::size_t>(n));
    std::int64_t aborted = 0;
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i) {
            auto& timer = timers.emplace_back(io, std::chrono::hours(1));
            timer.async_wait([&aborted](const boost::system::error_code& ec) {
                if (ec == asio::error::operation_aborted) ++aborted;
            });
            timer.cancel();
        }
        io.run();
        io.restart();
        timers.clear();
    }
    if (aborted != state.iterations() * n) state.SkipWithError("not every wait was aborted");
    report_batch(state, n);
}

// Real time, not CPU time, drives the iteration count: that is what
// compare.py reads, and the work is single-threaded and never blocks anyway.
BENCHMARK(BM_call_soon)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_create_task)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_await_done_future)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sleep0)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_timer_cancel)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
