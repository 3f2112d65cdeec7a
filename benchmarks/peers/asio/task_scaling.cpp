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
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdint>
#include <exception>
#include <stdexcept>

#include "task_scaling.hpp"  // benchmarks/net: shared with task_scaling.cpp

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

struct Counts {
    std::int64_t started = 0, finished = 0, completed = 0;
};

awaitable<void> wait_for(asio::steady_timer& go, Counts& counts) {
    ++counts.started;
    boost::system::error_code ec;
    co_await go.async_wait(asio::redirect_error(use_awaitable, ec));
    ++counts.finished;
}

awaitable<task_scaling::Result> measure(std::int64_t n) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer go(executor, asio::steady_timer::time_point::max());
    asio::steady_timer all_done(executor, asio::steady_timer::time_point::max());
    Counts counts;
    std::exception_ptr failure;
    task_scaling::Measurement measurement;
    measurement.start();
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
    measurement.all_waiting();
    if (counts.started != n) throw std::runtime_error("not every coroutine started");
    go.cancel();
    boost::system::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(use_awaitable, ec));
    if (failure) std::rethrow_exception(failure);
    if (counts.finished != n) throw std::runtime_error("not every coroutine finished");
    co_return measurement.all_finished(n);
}

// One run on a fresh io_context, as task_scaling runs each on a fresh loop.
task_scaling::Result run(std::int64_t n) {
    asio::io_context io(1);
    task_scaling::Result result{};
    std::exception_ptr failure;
    asio::co_spawn(io, measure(n), [&](std::exception_ptr e, task_scaling::Result r) {
        failure = e;
        result = r;
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    return task_scaling::main("asio_task_scaling", argc, argv, run);
}
