// Synchronization micro benchmarks: a Queue ping-pong and a contended Lock.
// Peers: peers/asio/sync.cpp (experimental::channel) and
// peers/python/sync.py (asyncio.Queue, asyncio.Lock); compare.py --suite
// sync runs them side by side. Contract as in bench_core.cpp: one iteration
// runs one batch of `batch` operations, so ns/op = real time per iteration
// / `batch`.
//
//   queue_pingpong  one op = one round trip: task A puts an item on `ping`,
//                   task B gets it and puts it on `pong`, A gets it back
//                   (two puts, two gets, two task switches).
//   lock_contended  one op = one acquire/release pair; 4 tasks contend for
//                   one Lock and each yields (sleep(0)) while holding it, so
//                   every acquire waits and every release hands over.
#include <benchmark/benchmark.h>

#include <asyncio.hpp>
#include <cstdint>

namespace {

constexpr std::int64_t kBatch = 10000;
constexpr int kContenders = 4;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

asyncio::Coro<void> echo(asyncio::Queue<int>& in, asyncio::Queue<int>& out, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
        const int v = co_await in.get();
        co_await out.put(v + 1);
    }
}

asyncio::Coro<std::int64_t> pingpong(std::int64_t n) {
    // maxsize 1, as the peers' channel capacity; one item is in flight.
    asyncio::Queue<int> ping(1), pong(1);
    asyncio::Task<void> echo_task = asyncio::create_task(echo(ping, pong, n));
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        co_await ping.put(1);
        sum += co_await pong.get();
    }
    co_await echo_task;
    co_return sum;
}

void BM_queue_pingpong(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        if (loop->run_until_complete(pingpong(n)) != 2 * n) state.SkipWithError("items lost");
    }
    report_batch(state, n);
}
BENCHMARK(BM_queue_pingpong)->Arg(kBatch)->UseRealTime();

asyncio::Coro<void> contender(asyncio::Lock& lock, std::int64_t n, std::int64_t& pairs) {
    for (std::int64_t i = 0; i < n; ++i) {
        auto held = co_await lock;
        co_await asyncio::sleep(0);
        ++pairs;
    }
}

asyncio::Coro<std::int64_t> lock_contended(std::int64_t n) {
    asyncio::Lock lock;
    std::int64_t pairs = 0;
    const std::int64_t each = n / kContenders;
    auto t1 = asyncio::create_task(contender(lock, each, pairs));
    auto t2 = asyncio::create_task(contender(lock, each, pairs));
    auto t3 = asyncio::create_task(contender(lock, each, pairs));
    auto t4 = asyncio::create_task(contender(lock, each, pairs));
    co_await t1;
    co_await t2;
    co_await t3;
    co_await t4;
    co_return pairs;
}

void BM_lock_contended(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    auto loop = asyncio::new_event_loop();
    for (auto _ : state) {
        if (loop->run_until_complete(lock_contended(n)) != n) state.SkipWithError("lost pairs");
    }
    report_batch(state, n);
}
BENCHMARK(BM_lock_contended)->Arg(kBatch)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
