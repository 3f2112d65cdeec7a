// Threads (Lib/asyncio/threads.py, base_events.run_in_executor,
// tasks.run_coroutine_threadsafe, futures.wrap_future) and the executor
// they run on (concurrent.futures.ThreadPoolExecutor).
//
//     def blocking(): ...                            int blocking();
//     r = await asyncio.to_thread(blocking)           int r = co_await
//     asyncio::to_thread(blocking); r = await loop.run_in_executor(None, blocking)  int r =
//     co_await loop.run_in_executor(nullptr, blocking);
//
//     # from another thread:
//     fut = asyncio.run_coroutine_threadsafe(c(), loop)
//     fut.result()                                   asyncio::run_coroutine_threadsafe(c(),
//     loop).get();
//
// Results and exceptions cross threads intact (the same exception object).
// Only the loop thread touches a Future; workers hand their outcome back
// with call_soon_threadsafe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/contextvars.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/detail/storage.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/future.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

/// concurrent.futures.Executor: runs work on other threads.
class Executor {
  public:
    virtual ~Executor() = default;
    /// Runs `work` on some other thread. Thread-safe; RuntimeError once
    /// shutdown() was called.
    virtual void execute(std::function<void()> work) = 0;
    /// Stops accepting work; with `wait`, returns once all submitted work ran.
    virtual void shutdown(bool wait = true) = 0;
};

/// concurrent.futures.ThreadPoolExecutor. Threads are started on demand,
/// up to max_workers (0: min(32, hardware threads + 4), Python's default).
class ThreadPoolExecutor : public Executor {
  public:
    explicit ThreadPoolExecutor(std::size_t max_workers = 0);
    ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;
    /// shutdown(true).
    ~ThreadPoolExecutor() override;

    void execute(std::function<void()> work) override;
    void shutdown(bool wait = true) override;
    std::size_t max_workers() const noexcept { return max_workers_; }

    /// Executor.submit(fn, *args): a std::future of the result.
    template <class F, class... A>
    std::future<std::invoke_result_t<F&, A&...>> submit(F fn, A... args) {
        using R = std::invoke_result_t<F&, A&...>;
        auto task = std::make_shared<std::packaged_task<R()>>(
            [fn = std::move(fn), ... args = std::move(args)]() mutable { return fn(args...); });
        std::future<R> result = task->get_future();
        execute([task] { (*task)(); });
        return result;
    }

  private:
    void work_loop();

    std::size_t max_workers_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> queue_;
    std::vector<std::thread> threads_;
    std::size_t idle_ = 0;
    bool shutdown_ = false;
};

namespace detail {

/// The outcome of one run_in_executor call, shared by the worker and the
/// loop. The Future inside is touched only on the loop thread.
template <class R, class F>
struct ExecutorJob {
    ExecutorJob(Future<R> future, F fn) : future(std::move(future)), fn(std::move(fn)) {}

    void run() noexcept {
        if (cancelled.load(std::memory_order_acquire)) return;
        try {
            if constexpr (std::is_void_v<R>) {
                fn();
            } else {
                value.emplace(fn());
            }
        } catch (...) {
            error = std::current_exception();
        }
    }

    /// On the loop thread.
    void deliver() noexcept {
        if (!future.done()) {
            if (error) {
                future.set_exception(error);
            } else if constexpr (std::is_void_v<R>) {
                future.set_result();
            } else {
                try {
                    future.set_result(value.take());
                } catch (...) {
                    future.set_exception(std::current_exception());
                }
            }
        }
        future = Future<R>(nullptr);
    }

    Future<R> future;
    F fn;
    Storage<R> value;
    std::exception_ptr error;
    std::atomic<bool> cancelled{false};
};

/// Posts `fn` to `loop` from a worker thread if the loop still accepts work.
/// Returns false (dropping nothing it should not) when it does not.
bool post_to_loop(const std::shared_ptr<ThreadsafeGate>& gate, std::function<void()> fn) noexcept;
/// Called when a job's result cannot reach its closed loop.
void report_orphaned_job() noexcept;

}  // namespace detail

template <class F>
Future<std::invoke_result_t<F&>> EventLoop::run_in_executor(Executor* executor, F fn) {
    using R = std::invoke_result_t<F&>;
    check_closed();
    if (debug_) check_thread();
    Executor& target = executor != nullptr ? *executor : default_executor();
    Future<R> future = create_future<R>();
    auto job = std::make_shared<detail::ExecutorJob<R, F>>(future, std::move(fn));
    // Cancelling the future keeps work that has not started from running.
    future.add_done_callback([job](Future<R>& done) {
        if (done.cancelled()) job->cancelled.store(true, std::memory_order_release);
    });
    std::shared_ptr<detail::ThreadsafeGate> gate = gate_;
    target.execute([job, gate] {
        job->run();
        if (!detail::post_to_loop(gate, [job] { job->deliver(); })) {
            // The loop is closed: its Future may not be touched from here,
            // so it is deliberately leaked rather than released off-thread.
            new Future<R>(std::move(job->future));
            detail::report_orphaned_job();
        }
    });
    return future;
}

/// asyncio.to_thread: runs fn(args...) in the default executor, in a copy of
/// the caller's context, and returns its result.
template <class F, class... A>
Coro<std::invoke_result_t<F&, A&...>> to_thread(F fn, A... args) {
    Context context = copy_context();
    co_return co_await get_running_loop().run_in_executor(
        nullptr, [context, fn = std::move(fn), ... args = std::move(args)]() mutable {
            return context.run([&] { return fn(args...); });
        });
}

/// asyncio.run_coroutine_threadsafe: schedules `coro` on `loop` from any
/// thread and returns a std::future of its result (a cancelled task gives a
/// CancelledError; a loop closed first gives std::future_error).
template <class T>
std::future<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
    auto promise = std::make_shared<std::promise<T>>();
    std::future<T> result = promise->get_future();
    loop.call_soon_threadsafe([&loop, promise, coro = std::move(coro)]() mutable {
        Task<T> task = loop.create_task(std::move(coro));
        task.add_done_callback([promise](Future<T>& done) {
            if (done.cancelled()) {
                promise->set_exception(
                    std::make_exception_ptr(CancelledError(done.state()->cancel_message())));
            } else if (std::exception_ptr error = done.exception()) {
                promise->set_exception(error);
            } else if constexpr (std::is_void_v<T>) {
                promise->set_value();
            } else {
                promise->set_value(done.value(false));
            }
        });
    });
    return result;
}

/// asyncio.wrap_future for a std::future: a Future of the running loop that
/// completes with it. std::future has no completion callback, so a thread of
/// the default executor waits on it.
template <class T>
Future<T> wrap_future(std::future<T> future) {
    return get_running_loop().run_in_executor(
        nullptr, [future = std::make_shared<std::future<T>>(std::move(future))]() -> T {
            return future->get();
        });
}
template <class T>
Future<T> wrap_future(std::shared_future<T> future) {
    return get_running_loop().run_in_executor(nullptr, [future]() -> T { return future.get(); });
}

}  // namespace asyncio
