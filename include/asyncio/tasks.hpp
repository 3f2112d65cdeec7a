// Task functions (Lib/asyncio/tasks.py): create_task, current_task,
// all_tasks and sleep. Later slices add gather, wait, wait_for, shield and
// as_completed here.
#pragma once

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

/// asyncio.create_task: schedules `coro` on the running loop.
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions opts = {},
                    std::source_location where = std::source_location::current()) {
    return get_running_loop().create_task(std::move(coro), std::move(opts), where);
}

/// The task running on the running loop, nullopt outside of a task;
/// RuntimeError if no loop is running.
std::optional<Task<>> current_task();
/// The task running on `loop`, nullopt if none.
std::optional<Task<>> current_task(EventLoop& loop);

/// The pending tasks of the running loop; RuntimeError if none is running.
std::vector<Task<>> all_tasks();
std::vector<Task<>> all_tasks(EventLoop& loop);

namespace detail {

/// Python's bare `yield` inside sleep(0): gives the loop one iteration.
class YieldAwaiter {
  public:
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> at) {
        task_ = &TaskBase::running();
        task_->yield_at(at);
    }
    void await_resume() { task_->resume_point(); }

  private:
    TaskBase* task_ = nullptr;
};

/// Waits until a deadline on the loop's timer heap. The timer's callback
/// steps the task directly, so a sleep costs one trip through the ready queue.
class SleepAwaiter : public Waiter {
  public:
    explicit SleepAwaiter(std::int64_t delay_ns) noexcept : delay_ns_(delay_ns) {}
    SleepAwaiter(const SleepAwaiter&) = delete;
    SleepAwaiter& operator=(const SleepAwaiter&) = delete;
    ~SleepAwaiter() { timer_.cancel(); }

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = TaskBase::running();
        EventLoop& loop = current.loop().owner();
        timer_ = loop.call_later(std::chrono::nanoseconds(delay_ns_), [this]() noexcept {
            timer_fired_ = true;
            task->step(resume_at);
        });
        current.suspend_on(*this, at, &cancel_sleep);
    }
    void await_resume() {
        task->resume_point();
        if (cancelled_) throw CancelledError(task->cancel_message());
    }

  private:
    static bool cancel_sleep(Waiter& waiter, const std::string&) noexcept {
        auto& self = static_cast<SleepAwaiter&>(waiter);
        if (self.timer_fired_) return false;
        self.timer_.cancel();
        self.timer_fired_ = true;
        self.cancelled_ = true;
        self.task->loop().schedule(self);  // resumes through Waiter::resume_task
        return true;
    }

    std::int64_t delay_ns_;
    TimerHandle timer_;
    bool timer_fired_ = false;
    bool cancelled_ = false;
};

Coro<void> sleep_ns(std::int64_t delay_ns);

}  // namespace detail

/// asyncio.sleep: suspends the calling task for `delay`. A delay of zero or
/// less yields to the loop for one iteration (sleep(0)).
template <class Rep, class Period>
Coro<void> sleep(std::chrono::duration<Rep, Period> delay) {
    using namespace std::chrono;
    if (delay <= delay.zero()) return detail::sleep_ns(0);
    if (duration<double, std::nano>(delay).count() >= static_cast<double>(EventLoop::kNeverNs)) {
        return detail::sleep_ns(EventLoop::kNeverNs);
    }
    return detail::sleep_ns(std::max<std::int64_t>(1, duration_cast<nanoseconds>(delay).count()));
}

/// asyncio.sleep(seconds).
Coro<void> sleep(double seconds);

/// asyncio.sleep(delay, result): returns `result` after the delay.
template <class Rep, class Period, class T>
Coro<T> sleep(std::chrono::duration<Rep, Period> delay, T result) {
    co_await sleep(delay);
    co_return std::move(result);
}

}  // namespace asyncio
