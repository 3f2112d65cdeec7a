// Boost.Asio peer of the structured concurrency benchmarks (bench_tasks.cpp):
// N coroutines spawned as deferred operations and run as one ranged
// experimental::parallel_group. gather is wait_for_all; taskgroup is
// wait_for_one_error, Asio's closest match to TaskGroup (the first failure
// cancels the rest). Contract: one iteration = one batch; the `batch`
// counter gives ns/op.
#include <benchmark/benchmark.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdint>
#include <vector>

namespace {

namespace asio = boost::asio;

constexpr std::int64_t kBatch = 10000;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

asio::awaitable<int> trivial(int i) {
    co_return i;
}

template <class Condition>
asio::awaitable<std::int64_t> group_batch(std::int64_t n, Condition condition) {
    auto executor = co_await asio::this_coro::executor;
    using Op = decltype(asio::co_spawn(executor, trivial(1), asio::deferred));
    std::vector<Op> ops;
    ops.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i)
        ops.push_back(asio::co_spawn(executor, trivial(1), asio::deferred));
    auto [order, errors, values] = co_await asio::experimental::make_parallel_group(std::move(ops))
                                       .async_wait(condition, asio::use_awaitable);
    std::int64_t sum = 0;
    for (int v : values)
        sum += v;
    co_return sum;
}

template <class Condition>
void run_batches(benchmark::State& state, Condition condition) {
    const std::int64_t n = state.range(0);
    asio::io_context io{1};
    for (auto _ : state) {
        std::int64_t sum = 0;
        asio::co_spawn(io, group_batch(n, condition), [&](std::exception_ptr e, std::int64_t s) {
            if (e) std::rethrow_exception(e);
            sum = s;
        });
        io.run();
        io.restart();
        if (sum != n) state.SkipWithError("wrong sum");
    }
    report_batch(state, n);
}

void BM_gather(benchmark::State& state) {
    run_batches(state, asio::experimental::wait_for_all());
}
BENCHMARK(BM_gather)->Arg(kBatch)->UseRealTime();

void BM_taskgroup(benchmark::State& state) {
    run_batches(state, asio::experimental::wait_for_one_error());
}
BENCHMARK(BM_taskgroup)->Arg(kBatch)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
