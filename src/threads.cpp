// Executors and the loop's default executor (concurrent.futures.thread,
// base_events.run_in_executor / shutdown_default_executor).
#include "asyncio/threads.hpp"

#include <algorithm>

#include "asyncio/log.hpp"
#include "asyncio/tasks.hpp"

namespace asyncio {

// -- ThreadPoolExecutor -----------------------------------------------------------

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers)
    : max_workers_(max_workers != 0
                       ? max_workers
                       : std::min<std::size_t>(32, std::thread::hardware_concurrency() + 4)) {}

ThreadPoolExecutor::~ThreadPoolExecutor() {
    shutdown(true);
}

void ThreadPoolExecutor::execute(std::function<void()> work) {
    std::unique_lock lock(mutex_);
    if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
    queue_.push_back(std::move(work));
    if (idle_ == 0 && threads_.size() < max_workers_) {
        threads_.emplace_back([this] { work_loop(); });
    } else {
        wake_.notify_one();
    }
}

void ThreadPoolExecutor::shutdown(bool wait) {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mutex_);
        shutdown_ = true;
        if (wait) threads.swap(threads_);
    }
    wake_.notify_all();
    for (std::thread& thread : threads)
        thread.join();
}

void ThreadPoolExecutor::work_loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
        while (queue_.empty() && !shutdown_) {
            ++idle_;
            wake_.wait(lock);
            --idle_;
        }
        if (queue_.empty()) return;  // shut down, and the queue is drained
        std::function<void()> work = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        try {
            work();
        } catch (...) {
            log_message(LogLevel::error, "ThreadPoolExecutor: work threw an exception");
        }
        work = nullptr;  // its captures die here, on this thread, before we wait again
        lock.lock();
    }
}

// -- the loop's executor ------------------------------------------------------------

namespace detail {

bool post_to_loop(const std::shared_ptr<ThreadsafeGate>& gate, std::function<void()> fn) noexcept {
    std::lock_guard lock(gate->mutex);
    if (gate->loop == nullptr) return false;
    try {
        gate->loop->call_soon_threadsafe(std::move(fn));
        return true;
    } catch (...) {
        return false;
    }
}

void report_orphaned_job() noexcept {
    log_message(LogLevel::warning,
                "run_in_executor: the work finished after its event loop was closed; its result "
                "was dropped");
}

}  // namespace detail

Executor& EventLoop::default_executor() {
    if (executor_shutdown_called_) throw RuntimeError("Executor shutdown has been called");
    if (!default_executor_) default_executor_ = std::make_unique<ThreadPoolExecutor>();
    return *default_executor_;
}

void EventLoop::set_default_executor(std::unique_ptr<Executor> executor) {
    default_executor_ = std::move(executor);
}

Coro<void> EventLoop::shutdown_default_executor(std::optional<double> timeout_seconds) {
    executor_shutdown_called_ = true;
    if (!default_executor_) co_return;
    // The joiner thread only ever touches `done` through the loop thread.
    struct Signal {
        Future<> done;
    };
    auto signal = std::make_shared<Signal>(Signal{create_future()});
    Executor* executor = default_executor_.get();
    std::thread joiner([executor, signal, gate = gate_] {
        executor->shutdown(true);
        detail::post_to_loop(gate, [signal] {
            if (signal->done.state() != nullptr && !signal->done.done()) signal->done.set_result();
        });
    });
    bool timed_out = false;
    try {
        co_await wait_for(signal->done, timeout_seconds.value_or(300.0));
    } catch (const TimeoutError&) {
        timed_out = true;
    }
    if (timed_out) {
        log(LogLevel::warning, "The executor did not finish joining its threads within {} seconds.",
            timeout_seconds.value_or(300.0));
        signal->done = Future<>(nullptr);  // disarmed: nothing left for the joiner to touch
        joiner.detach();
        default_executor_.release();  // still in use by the joiner: leaked, never freed under it
    } else {
        joiner.join();
        default_executor_.reset();
    }
}

}  // namespace asyncio
