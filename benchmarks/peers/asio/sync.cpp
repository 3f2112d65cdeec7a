// Boost.Asio peer of the synchronization micro benchmarks (bench_sync.cpp).
// Contract as in core.cpp: one benchmark iteration runs one batch of `batch`
// operations; ns/op = real_time per iteration / batch. Single-threaded
// io_context (concurrency hint 1), C++20 awaitables, as in core.cpp.
//
//   queue_pingpong  experimental::channel is Asio's queue between
//                   coroutines. One op = one round trip through two
//                   channels of capacity 1 (as our Queue(1)): two sends,
//                   two receives, two coroutine switches.
//   lock_contended  Asio has no asynchronous mutex. A strand is not one
//                   either: it serialises handlers, but a coroutine that
//                   suspends inside its critical section (the sleep(0) here)
//                   lets the others in. The equivalent that keeps mutual
//                   exclusion across a suspension is a channel of capacity 1
//                   holding one token: acquire = co_await async_receive()
//                   (waiters queue in FIFO order), release = try_send() the
//                   token back, which hands it to the first waiter. sleep(0)
//                   is co_await post(executor), as in core.cpp's sleep0. One
//                   op = one acquire/release pair, 4 coroutines contending.

#include <benchmark/benchmark.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>

namespace {

namespace asio = boost::asio;
using boost::system::error_code;

constexpr std::int64_t kBatch = 10000;
constexpr int kSingleThreaded = 1;
constexpr int kContenders = 4;

using ItemChannel = asio::experimental::channel<void(error_code, int)>;
using TokenChannel = asio::experimental::channel<void(error_code)>;

void report_batch(benchmark::State& state, std::int64_t n) {
    state.SetItemsProcessed(state.iterations() * n);
    state.counters["batch"] = static_cast<double>(n);
}

asio::awaitable<void> echo(ItemChannel& in, ItemChannel& out, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
        const int v = co_await in.async_receive(asio::use_awaitable);
        co_await out.async_send(error_code{}, v + 1, asio::use_awaitable);
    }
}

asio::awaitable<void> pingpong(ItemChannel& ping, ItemChannel& pong, std::int64_t n,
                               std::int64_t& sum) {
    for (std::int64_t i = 0; i < n; ++i) {
        co_await ping.async_send(error_code{}, 1, asio::use_awaitable);
        sum += co_await pong.async_receive(asio::use_awaitable);
    }
}

void BM_queue_pingpong(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    ItemChannel ping(io.get_executor(), 1);
    ItemChannel pong(io.get_executor(), 1);
    std::int64_t sum = 0;
    for (auto _ : state) {
        asio::co_spawn(io, echo(ping, pong, n), asio::detached);
        asio::co_spawn(io, pingpong(ping, pong, n, sum), asio::detached);
        io.run();
        io.restart();
    }
    if (sum != 2 * n * state.iterations()) state.SkipWithError("items lost");
    report_batch(state, n);
}

asio::awaitable<void> contender(TokenChannel& lock, std::int64_t n, std::int64_t& pairs) {
    auto executor = co_await asio::this_coro::executor;
    for (std::int64_t i = 0; i < n; ++i) {
        co_await lock.async_receive(asio::use_awaitable);    // acquire
        co_await asio::post(executor, asio::use_awaitable);  // sleep(0) while holding it
        ++pairs;
        lock.try_send(error_code{});  // release: always room for the one token
    }
}

void BM_lock_contended(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    asio::io_context io{kSingleThreaded};
    TokenChannel lock(io.get_executor(), 1);
    lock.try_send(error_code{});  // unlocked: the token is in the channel
    std::int64_t pairs = 0;
    for (auto _ : state) {
        for (int c = 0; c < kContenders; ++c)
            asio::co_spawn(io, contender(lock, n / kContenders, pairs), asio::detached);
        io.run();
        io.restart();
    }
    if (pairs != n * state.iterations()) state.SkipWithError("lost pairs");
    report_batch(state, n);
}

BENCHMARK(BM_queue_pingpong)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_lock_contended)->Arg(kBatch)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
