// Task functions that need no template: current_task, all_tasks, sleep.
#include "asyncio/tasks.hpp"

#include <cmath>
#include <stdexcept>

namespace asyncio {

std::optional<Task<>> current_task(EventLoop& loop) {
    detail::TaskBase* task = loop.current_task();
    if (task == nullptr) return std::nullopt;
    task->add_ref();
    return Task<>(task, detail::AdoptRef{});
}

std::optional<Task<>> current_task() {
    return current_task(get_running_loop());
}

std::vector<Task<>> all_tasks(EventLoop& loop) {
    std::vector<Task<>> tasks;
    loop.for_each_task([&](detail::TaskBase& task) {
        if (task.done()) return;
        task.add_ref();
        tasks.emplace_back(&task, detail::AdoptRef{});
    });
    return tasks;
}

std::vector<Task<>> all_tasks() {
    return all_tasks(get_running_loop());
}

namespace detail {

Coro<void> sleep_ns(std::int64_t delay_ns) {
    if (delay_ns <= 0) {
        co_await YieldAwaiter{};
    } else {
        co_await SleepAwaiter{delay_ns};
    }
}

}  // namespace detail

Coro<void> sleep(double seconds) {
    if (std::isnan(seconds)) throw std::invalid_argument("sleep(): delay must not be NaN");
    if (seconds <= 0) return detail::sleep_ns(0);
    const double ns = seconds * 1e9;
    if (ns >= static_cast<double>(EventLoop::kNeverNs))
        return detail::sleep_ns(EventLoop::kNeverNs);
    return detail::sleep_ns(std::max<std::int64_t>(1, std::llround(ns)));
}

}  // namespace asyncio
