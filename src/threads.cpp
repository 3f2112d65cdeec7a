// Executors and the loop's default executor (concurrent.futures.thread,
// base_events.run_in_executor / shutdown_default_executor).
#include "asyncio/threads.hpp"

#include <algorithm>

#include "asyncio/log.hpp"
#include "asyncio/tasks.hpp"

namespace asyncio {

// -- ThreadPoolExecutor -----------------------------------------------------------

namespace {
std::size_t default_max_workers() noexcept {
    // Python: min(32, (os.process_cpu_count() or 1) + 4).
    const std::size_t cpus = std::max(1U, std::thread::hardware_concurrency());
    return std::min<std::size_t>(32, cpus + 4);
}
}  // namespace

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t max_workers)
    : max_workers_(max_workers != 0 ? max_workers : default_max_workers()) {}

ThreadPoolExecutor::~ThreadPoolExecutor() {
    shutdown(/*wait=*/true);
}

void ThreadPoolExecutor::execute(std::function<void()> work) {
    std::unique_lock lock(mutex_);
    if (shutdown_) throw RuntimeError("cannot schedule new futures after shutdown");
    queue_.push_back(std::move(work));
    // Each idle thread takes one item: start a thread when the queue holds
    // more than the idle threads will take (Python's _adjust_thread_count).
    if (queue_.size() > idle_ && threads_.size() < max_workers_) {
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
        if (queue_.empty()) {
            if (shutdown_) return;  // shut down, and the queue is drained
            ++idle_;
            wake_.wait(lock, [this] { return !queue_.empty() || shutdown_; });
            --idle_;
            continue;
        }
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

void keep_forever(void* leaked) noexcept {
    static std::mutex mutex;
    static auto* kept = new std::vector<void*>;  // reachable, never freed
    try {
        std::lock_guard lock(mutex);
        kept->push_back(leaked);
    } catch (...) {
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
    // A thread joins the executor's threads while the loop keeps running,
    // then sets `done` through the loop. It owns the executor from here on,
    // so that nothing it uses dies under it if we stop waiting (timeout,
    // cancellation, or this coroutine freed with its loop); it reaches
    // `done` only through `link`, which this frame disarms when it ends.
    struct Link {
        Future<>* done = nullptr;  // touched only on the loop thread
    };
    Future<> done = create_future();
    auto link = std::make_shared<Link>(Link{&done});
    struct Disarm {
        Link& link;
        ~Disarm() { link.done = nullptr; }
    } disarm{*link};
    std::shared_ptr<Executor> executor(std::move(default_executor_));
    std::thread([executor, link, gate = gate_] {
        executor->shutdown(/*wait=*/true);
        detail::post_to_loop(*gate, [link] {
            if (link->done != nullptr && !link->done->done()) link->done->set_result();
        });
    }).detach();
    // The timeout is for threads that hang, in wall time even on a TestClock.
    hold_clock();
    struct Release {
        EventLoop& loop;
        ~Release() { loop.release_clock(); }
    } release{*this};
    const double timeout = timeout_seconds.value_or(300.0);
    bool timed_out = false;
    try {
        co_await wait_for(done, timeout);
    } catch (const TimeoutError&) {
        timed_out = true;
    }
    if (timed_out) {
        log(LogLevel::warning, "The executor did not finish joining its threads within {} seconds.",
            timeout);
    }
}

}  // namespace asyncio
