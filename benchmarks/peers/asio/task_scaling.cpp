// Boost.Asio peer of benchmarks/net/task_scaling.cpp (run.py's tasks
// workload): how a coroutine's cost grows with the number alive. For each N,
// co_spawn N awaitable<void> coroutines on an io_context that each wait for
// one "event", then fire it and let them all finish. Each N runs twice, each
// time on a fresh io_context: the first (cold) run takes its memory from the
// heap, the second (warm) finds the blocks the first freed. Prints one JSON
// line per N with task_scaling's keys and meanings:
//   spawn_ns       co_spawn per coroutine, until all of them wait (warm)
//   finish_ns      waking and finishing per coroutine (warm)
//   cold_spawn_ns  spawn_ns of the cold run
//   heap_bytes     heap taken per pending coroutine (mallinfo2, cold run)
//   rss_bytes      resident memory added per pending coroutine (VmRSS, cold)
//
//   asio_task_scaling [N...]     (default: 1000 10000 100000 1000000)
//
// The event is a steady_timer that expires never (time_point::max()): every
// coroutine co_awaits its async_wait, and cancel() completes all of them at
// once with operation_aborted. That is how Asio's own C++20 example signals
// coroutines (cpp20/coroutines/chat_server.cpp: a timer at time_point::max(),
// redirect_error(use_awaitable, ec), cancel_one() to wake the writer). Asio
// has no Event; an experimental::channel has one message per receiver, so
// waking N waiters would take N sends or a close() that reads as an error,
// and it is still experimental. redirect_error keeps the cancellation out of
// exceptions, as the example does: a throw per wake-up would be measured
// instead of the wake-up.
//
// As task_scaling awaits every task, the measuring coroutine waits until all
// N have completed, counted by co_spawn's completion handler, where Asio
// reports how a coroutine ended (its exception_ptr); the last one cancels a
// second never-expiring timer that the measuring coroutine waits on.
#include <malloc.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

std::int64_t rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            std::int64_t kib = 0;
            status >> kib;
            return kib * 1024;
        }
        status.ignore(4096, '\n');
    }
    return 0;
}

std::int64_t heap_bytes() {
    return static_cast<std::int64_t>(mallinfo2().uordblks);
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

struct Counts {
    std::int64_t started = 0, finished = 0, completed = 0;
};

awaitable<void> wait_for(asio::steady_timer& go, Counts& counts) {
    ++counts.started;
    boost::system::error_code ec;
    co_await go.async_wait(asio::redirect_error(use_awaitable, ec));
    ++counts.finished;
}

struct Result {
    double spawn_ns, finish_ns, heap_bytes, rss_bytes;
};

awaitable<Result> measure(std::int64_t n) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer go(executor, asio::steady_timer::time_point::max());
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    Counts counts;
    std::exception_ptr failure;
    const std::int64_t heap_before = heap_bytes(), rss_before = rss_bytes();
    const std::int64_t t0 = now_ns();
    for (std::int64_t i = 0; i < n; ++i) {
        asio::co_spawn(executor, wait_for(go, counts), [&](std::exception_ptr e) {
            if (e && !failure) failure = e;
            if (++counts.completed == n) all_done.cancel();
        });
    }
    // From the io_context's own thread co_spawn runs each coroutine up to its
    // wait at once (its entry point dispatches); this post is task_scaling's
    // sleep(0), one turn of the loop, in case a start was queued instead.
    co_await asio::post(executor, use_awaitable);
    const std::int64_t t1 = now_ns();
    const std::int64_t heap_after = heap_bytes(), rss_after = rss_bytes();
    if (counts.started != n) throw std::runtime_error("not every coroutine started");
    go.cancel();
    boost::system::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(use_awaitable, ec));
    const std::int64_t t2 = now_ns();
    if (failure) std::rethrow_exception(failure);
    if (counts.finished != n) throw std::runtime_error("not every coroutine finished");
    const auto per = [n](std::int64_t v) {
        return static_cast<double>(v) / static_cast<double>(n);
    };
    co_return Result{per(t1 - t0), per(t2 - t1), per(heap_after - heap_before),
                     per(rss_after - rss_before)};
}

// One run on a fresh io_context, as task_scaling runs each on a fresh loop.
Result run(std::int64_t n) {
    asio::io_context io(1);
    Result result{};
    std::exception_ptr failure;
    asio::co_spawn(io, measure(n), [&](std::exception_ptr e, Result r) {
        failure = e;
        result = r;
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::int64_t> counts;
    for (int i = 1; i < argc; ++i)
        counts.push_back(std::atoll(argv[i]));
    if (counts.empty()) counts = {1000, 10000, 100000, 1000000};
    try {
        for (const std::int64_t n : counts) {
            if (n <= 0) {
                std::fprintf(stderr, "asio_task_scaling: counts must be positive\n");
                return 2;
            }
            const Result cold = run(n);
            const Result warm = run(n);
            std::printf(
                "{\"tasks\": %lld, \"spawn_ns\": %.1f, \"finish_ns\": %.1f, "
                "\"cold_spawn_ns\": %.1f, \"heap_bytes\": %.1f, \"rss_bytes\": %.1f}\n",
                static_cast<long long>(n), warm.spawn_ns, warm.finish_ns, cold.spawn_ns,
                cold.heap_bytes, cold.rss_bytes);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_task_scaling: %s\n", e.what());
        return 1;
    }
    return 0;
}
