// Core micro benchmarks. The same five workloads exist for Boost.Asio
// (peers/asio/core.cpp) and Python asyncio/uvloop (peers/python/core.py);
// compare.py runs them side by side. Contract: one benchmark iteration runs
// one batch of `batch` operations, recorded in the `batch` counter, so
// ns/op = real time per iteration / batch.
#include <benchmark/benchmark.h>

#include <asyncio.hpp>
#include <chrono>
#include <cstdint>

namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kBatch = 10000;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

/// Runs exactly one loop iteration: everything ready now, nothing scheduled by it.
void run_one_iteration(asyncio::EventLoop& loop) {
    loop.stop();
    loop.run_forever();
}

asyncio::Coro<int> trivial() {
    co_return 1;
}

// 1. loop.call_soon(cb) of a plain callback, then the loop runs them all.
void BM_call_soon(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    std::int64_t counter = 0;
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i)
            loop->call_soon([&counter] { ++counter; });
        run_one_iteration(*loop);
    }
    if (counter != state.iterations() * n) state.SkipWithError("not every callback ran");
    report_batch(state, n);
}
BENCHMARK(BM_call_soon)->Arg(kBatch)->UseRealTime();

// 2. create_task of a trivial coroutine (handle dropped) and its completion.
void BM_create_task(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i)
            loop->create_task(trivial());
        run_one_iteration(*loop);
    }
    if (loop->stats().tasks != 0) state.SkipWithError("tasks left pending");
    report_batch(state, n);
}
BENCHMARK(BM_create_task)->Arg(kBatch)->UseRealTime();

asyncio::Coro<std::int64_t> await_done(std::int64_t n) {
    auto future = asyncio::get_running_loop().create_future<int>();
    future.set_result(1);
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < n; ++i)
        sum += co_await future;
    co_return sum;
}

// 3. co_await of a Future that is already done.
void BM_await_done_future(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        if (loop->run_until_complete(await_done(n)) != n) state.SkipWithError("wrong sum");
    }
    report_batch(state, n);
}
BENCHMARK(BM_await_done_future)->Arg(kBatch)->UseRealTime();

asyncio::Coro<> yield_many(std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
        co_await asyncio::sleep(0);
}

// 4. sleep(0): a round trip through the loop.
void BM_sleep0(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state)
        loop->run_until_complete(yield_many(n));
    report_batch(state, n);
}
BENCHMARK(BM_sleep0)->Arg(kBatch)->UseRealTime();

// 5. call_later far in the future, then cancel; the loop purges them.
void BM_timer_cancel(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        for (std::int64_t i = 0; i < n; ++i)
            loop->call_later(3600s, [] {}).cancel();
        run_one_iteration(*loop);
    }
    if (loop->stats().timers != 0) state.SkipWithError("cancelled timers were not purged");
    report_batch(state, n);
}
BENCHMARK(BM_timer_cancel)->Arg(kBatch)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
