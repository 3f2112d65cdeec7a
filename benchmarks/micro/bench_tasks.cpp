// Structured concurrency micro benchmarks: gather and TaskGroup over 10,000
// tasks. Peers: peers/asio/tasks.cpp (experimental::make_parallel_group) and
// peers/python/tasks.py. Contract as in bench_core.cpp: one iteration runs
// one batch; ns/op = real time per iteration / `batch`, one op = one task
// created, run and collected.
#include <benchmark/benchmark.h>

#include <asyncio.hpp>
#include <cstdint>
#include <vector>

namespace {

constexpr std::int64_t kBatch = 10000;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

asyncio::Coro<int> trivial(int i) {
    co_return i;
}

asyncio::Coro<std::int64_t> gather_batch(std::int64_t n) {
    std::vector<asyncio::Task<int>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
        tasks.push_back(asyncio::create_task(trivial(1)));
    std::vector<int> results = co_await asyncio::gather(std::move(tasks));
    std::int64_t sum = 0;
    for (int r : results)
        sum += r;
    co_return sum;
}

// gather(*[trivial() for _ in range(n)])
void BM_gather(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        if (loop->run_until_complete(gather_batch(n)) != n) state.SkipWithError("wrong sum");
    }
    report_batch(state, n);
}
BENCHMARK(BM_gather)->Arg(kBatch)->UseRealTime();

asyncio::Coro<std::int64_t> taskgroup_batch(std::int64_t n) {
    std::vector<asyncio::Task<int>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    asyncio::TaskGroup tg;
    for (std::int64_t i = 0; i < n; ++i)
        tasks.push_back(tg.create_task(trivial(1)));
    co_await tg.wait();
    std::int64_t sum = 0;
    for (auto& t : tasks)
        sum += t.result();
    co_return sum;
}

// async with TaskGroup() as tg: for _ in range(n): tg.create_task(trivial())
void BM_taskgroup(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        if (loop->run_until_complete(taskgroup_batch(n)) != n) state.SkipWithError("wrong sum");
    }
    report_batch(state, n);
}
BENCHMARK(BM_taskgroup)->Arg(kBatch)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
