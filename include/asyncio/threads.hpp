// Threads (Lib/asyncio/threads.py, base_events.run_in_executor,
// tasks.run_coroutine_threadsafe, futures.wrap_future) and the executor
// they run on (concurrent.futures.ThreadPoolExecutor).
//
//     r = await asyncio.to_thread(blocking)
//     r = await loop.run_in_executor(None, blocking)
//     fut = asyncio.run_coroutine_threadsafe(c(), loop)   # from another thread
//     fut.result()
//
// is, in C++:
//
//     int r = co_await asyncio::to_thread(blocking);
//     int r = co_await loop.run_in_executor(nullptr, blocking);
//     std::future<int> fut = asyncio::run_coroutine_threadsafe(c(), loop);
//     fut.get();
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
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/contextvars.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/detail/storage.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"
#include "asyncio/future.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

/// concurrent.futures.Executor: runs work on other threads.
class ASYNCIO_EXPORT Executor {
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
class ASYNCIO_EXPORT ThreadPoolExecutor : public Executor {
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

/// Keeps `leaked` reachable (and never frees it): for loop-bound state that
/// no thread may release any more (its loop closed while a worker held it).
ASYNCIO_EXPORT void keep_forever(void* leaked) noexcept;

/// The outcome of one run_in_executor call, shared by the worker and the
/// loop. The Future inside is touched only on the thread that created the
/// job (the loop's): released there by deliver() or when the result is
/// dropped at loop close; a job that dies elsewhere with its Future still
/// set (its loop closed first) keeps the Future forever rather than
/// release it off-thread (its count is not atomic).
template <class R, class F>
struct ExecutorJob {
    ExecutorJob(Future<R> future, F fn)
        : future(std::move(future)), fn(std::move(fn)), owner(std::this_thread::get_id()) {}
    ExecutorJob(const ExecutorJob&) = delete;
    ExecutorJob& operator=(const ExecutorJob&) = delete;
    ~ExecutorJob() {
        if (future.state() != nullptr && std::this_thread::get_id() != owner) {
            keep_forever(new Future<R>(std::move(future)));
        }
    }

    /// On the worker thread.
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
        future.state()->loop().owner().release_clock();
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
    std::thread::id owner;
};

/// The callback a worker posts to the loop: delivers the outcome; dropped
/// unrun (the loop closed), it releases the Future on the loop's thread.
template <class Job>
class DeliverJob {
  public:
    explicit DeliverJob(std::shared_ptr<Job> job) noexcept : job_(std::move(job)) {}
    DeliverJob(DeliverJob&& other) noexcept = default;
    DeliverJob& operator=(DeliverJob&&) = delete;
    ~DeliverJob() {
        if (job_ && std::this_thread::get_id() == job_->owner)
            job_->future = decltype(job_->future)(nullptr);
    }
    void operator()() { job_->deliver(); }

  private:
    std::shared_ptr<Job> job_;
};

/// Posts `fn` to the loop behind `gate` from any thread. False, and `fn`
/// destroyed on this thread, if the loop is closed or gone.
template <class Fn>
bool post_to_loop(ThreadsafeGate& gate, Fn&& fn) noexcept {
    std::lock_guard lock(gate.mutex);
    if (gate.loop == nullptr) return false;
    try {
        gate.loop->call_soon_threadsafe(std::forward<Fn>(fn));
        return true;
    } catch (...) {
        return false;
    }
}
/// Called when a job's result cannot reach its closed loop.
ASYNCIO_EXPORT void report_orphaned_job() noexcept;

}  // namespace detail

template <class F>
Future<std::invoke_result_t<F&>> EventLoop::run_in_executor(Executor* executor, F fn) {
    using R = std::invoke_result_t<F&>;
    using Job = detail::ExecutorJob<R, F>;
    check_closed();
    if (debug_) check_thread();
    Executor& target = executor != nullptr ? *executor : default_executor();
    Future<R> future = create_future<R>();
    auto job = std::make_shared<Job>(future, std::move(fn));
    // If execute() throws, the job dies here, on the loop thread, unrun.
    target.execute([job, gate = gate_]() mutable {
        job->run();
        if (!detail::post_to_loop(*gate, detail::DeliverJob<Job>(job))) {
            detail::report_orphaned_job();
        }
        job.reset();  // now, on this thread, before the executor goes on
    });
    hold_clock();  // until deliver()
    // Cancelling the future keeps work that has not started from running.
    // The callback refers to the job weakly: the job owns the future.
    future.add_done_callback([weak = std::weak_ptr<Job>(job)](Future<R>& done) {
        if (!done.cancelled()) return;
        if (std::shared_ptr<Job> job = weak.lock())
            job->cancelled.store(true, std::memory_order_release);
    });
    return future;
}

/// asyncio.to_thread: runs fn(args...) in the default executor, in a copy of
/// the caller's context, and returns its result.
template <class F, class... A>
Coro<std::invoke_result_t<F&, A&...>> to_thread(F fn, A... args) {
    auto call = [context = copy_context(), fn = std::move(fn),
                 ... args = std::move(args)]() mutable -> decltype(auto) {
        return context.run([&]() -> decltype(auto) { return fn(args...); });
    };
    // A named Future, not a temporary in the co_await: GCC 12 mishandles
    // temporaries there (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100611).
    auto future = get_running_loop().run_in_executor(nullptr, std::move(call));
    co_return co_await std::move(future);
}

/// asyncio.run_coroutine_threadsafe: schedules `coro` on `loop` from any
/// thread and returns a std::future of its result (a cancelled task gives a
/// CancelledError; a loop closed first gives std::future_error, or the
/// RuntimeError of call_soon_threadsafe if it was closed already).
template <class T>
std::future<T> run_coroutine_threadsafe(Coro<T> coro, EventLoop& loop) {
    auto promise = std::make_shared<std::promise<T>>();
    std::future<T> result = promise->get_future();
    loop.call_soon_threadsafe([&loop, promise, coro = std::move(coro)]() mutable {
        std::optional<Task<T>> task;
        try {
            task.emplace(loop.create_task(std::move(coro)));
        } catch (...) {
            promise->set_exception(std::current_exception());
            throw;  // and to the loop's exception handler, as in Python
        }
        task->add_done_callback([promise](Future<T>& done) {
            if (done.cancelled()) {
                promise->set_exception(
                    std::make_exception_ptr(CancelledError(done.state()->cancel_message())));
            } else if (std::exception_ptr error = done.exception()) {
                promise->set_exception(error);
            } else if constexpr (std::is_void_v<T>) {
                promise->set_value();
            } else {
                promise->set_value(done.value(detail::library_key, detail::ValueReaders::shared));
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
