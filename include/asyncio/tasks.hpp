// Task functions (Lib/asyncio/tasks.py): create_task, current_task,
// all_tasks, sleep, ensure_future, gather, wait, wait_for, shield and
// as_completed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/detail/multi_watch.hpp"
#include "asyncio/export.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/task.hpp"
#include "asyncio/timeouts.hpp"

namespace asyncio {

/// asyncio.create_task: schedules `coro` on the running loop.
template <class T>
Task<T> create_task(Coro<T> coro, TaskOptions opts = {},
                    std::source_location where = std::source_location::current()) {
    return get_running_loop().create_task(std::move(coro), std::move(opts), where);
}

/// asyncio.eager_task_factory: for loop.set_task_factory; every task starts eagerly.
ASYNCIO_EXPORT void eager_task_factory(EventLoop& loop, Task<>& task, TaskOptions& opts);
/// asyncio.create_eager_task_factory: a task factory that asks for an
/// eager start and then lets `custom_task_constructor` configure the task
/// (C++ task factories configure the task the loop built; see TaskFactory).
ASYNCIO_EXPORT TaskFactory create_eager_task_factory(TaskFactory custom_task_constructor);

/// The task running on the running loop, nullopt outside of a task;
/// RuntimeError if no loop is running.
ASYNCIO_EXPORT std::optional<Task<>> current_task();
/// The task running on `loop`, nullopt if none.
ASYNCIO_EXPORT std::optional<Task<>> current_task(EventLoop& loop);

/// The pending tasks of the running loop; RuntimeError if none is running.
ASYNCIO_EXPORT std::vector<Task<>> all_tasks();
ASYNCIO_EXPORT std::vector<Task<>> all_tasks(EventLoop& loop);

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
        auto& self = node_cast<SleepAwaiter>(waiter);
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

ASYNCIO_EXPORT Coro<void> sleep_ns(std::int64_t delay_ns);

}  // namespace detail

/// asyncio.sleep: suspends the calling task for `delay`. A delay of zero or
/// less yields to the loop for one iteration (sleep(0)).
template <class Rep, class Period>
Coro<void> sleep(std::chrono::duration<Rep, Period> delay) {
    using namespace std::chrono;
    if constexpr (std::is_floating_point_v<Rep>) {
        if (std::isnan(delay.count()))
            throw std::invalid_argument("sleep(): delay must not be NaN");
    }
    if (delay <= delay.zero()) return detail::sleep_ns(0);
    if (duration<double, std::nano>(delay).count() >= static_cast<double>(EventLoop::kNeverNs)) {
        return detail::sleep_ns(EventLoop::kNeverNs);
    }
    return detail::sleep_ns(std::max<std::int64_t>(1, duration_cast<nanoseconds>(delay).count()));
}

/// asyncio.sleep(seconds).
ASYNCIO_EXPORT Coro<void> sleep(double seconds);

/// asyncio.sleep(delay, result): returns `result` after the delay.
template <class Rep, class Period, class T>
Coro<T> sleep(std::chrono::duration<Rep, Period> delay, T result) {
    co_await sleep(delay);
    co_return std::move(result);
}
/// asyncio.sleep(seconds, result).
template <class T>
Coro<T> sleep(double seconds, T result) {
    co_await sleep(seconds);
    co_return std::move(result);
}

// -- ensure_future ----------------------------------------------------------------

/// asyncio.ensure_future: a Coro becomes a task on the running loop; a Task
/// or Future is returned as it is.
template <class T>
Task<T> ensure_future(Coro<T> coro, std::source_location where = std::source_location::current()) {
    return create_task(std::move(coro), {}, where);
}
template <class T>
Task<T> ensure_future(Task<T> task) {
    return task;
}
template <class T>
Future<T> ensure_future(Future<T> future) {
    return future;
}

// -- gather ---------------------------------------------------------------------------

/// The value gather() reports for a T: T itself, std::monostate for void.
template <class T>
using gather_value_t = outcome_value_t<T>;

// gather(return_exceptions, ...) gives one Outcome<T> (outcome.hpp) per
// child: a value or an exception (a cancelled child gives a CancelledError).

/// Tag of gather(return_exceptions=True).
struct return_exceptions_t {
    explicit constexpr return_exceptions_t() = default;
};
inline constexpr return_exceptions_t return_exceptions{};

namespace detail {

template <class T>
Future<T> as_future(Future<T> f) {
    return f;
}

/// A done child's value, moved out if gather holds the only reference.
template <class T>
gather_value_t<T> gathered_value(Future<T>& child) {
    if constexpr (std::is_void_v<T>) {
        return {};
    } else {
        return child.value(library_key, child.state()->readers());
    }
}

template <class T>
Outcome<T> gathered_outcome(Future<T>& child) {
    if (child.cancelled()) {
        return Outcome<T>(std::make_exception_ptr(CancelledError(child.state()->cancel_message())));
    }
    if (std::exception_ptr error = child.exception()) return Outcome<T>(std::move(error));
    return Outcome<T>(gathered_value(child));
}

template <class... T>
Coro<std::tuple<gather_value_t<T>...>> gather_futures(Future<T>... children) {
    if constexpr (sizeof...(T) == 0) {
        co_return std::tuple<>{};
    } else {
        Future<> outer = make_gather(get_running_loop(), {Future<>(children)...},
                                     GatherMode::raise_first_exception);
        co_await outer;
        co_return std::tuple<gather_value_t<T>...>{gathered_value(children)...};
    }
}

template <class... T>
Coro<std::tuple<Outcome<T>...>> gather_outcomes(Future<T>... children) {
    if constexpr (sizeof...(T) == 0) {
        co_return std::tuple<>{};
    } else {
        Future<> outer =
            make_gather(get_running_loop(), {Future<>(children)...}, GatherMode::return_exceptions);
        co_await outer;
        co_return std::tuple<Outcome<T>...>{gathered_outcome(children)...};
    }
}

template <class T, class Child>
std::vector<Future<>> erase_types(const std::vector<Child>& children) {
    std::vector<Future<>> erased;
    erased.reserve(children.size());
    for (const Child& child : children)
        erased.emplace_back(child);
    return erased;
}

}  // namespace detail

/// asyncio.gather(*aws): runs the awaitables concurrently (each Coro becomes a
/// task at once) and returns their results in argument order, void results
/// as std::monostate. The first exception propagates; the other children
/// keep running. Cancelling the awaiting task cancels every child.
template <class... A>
Coro<std::tuple<gather_value_t<awaitable_result_t<A>>...>> gather(A&&... aws) {
    // Braces: the children start left to right, as in Python (the order of
    // function arguments is unspecified, and GCC goes right to left).
    std::tuple<Future<awaitable_result_t<A>>...> children{
        detail::as_future(ensure_future(std::forward<A>(aws)))...};
    return std::apply([](auto&... f) { return detail::gather_futures(f...); }, children);
}

/// gather(*aws, return_exceptions=True): every outcome, value or exception.
template <class... A>
Coro<std::tuple<Outcome<awaitable_result_t<A>>...>> gather(return_exceptions_t, A&&... aws) {
    std::tuple<Future<awaitable_result_t<A>>...> children{
        detail::as_future(ensure_future(std::forward<A>(aws)))...};
    return std::apply([](auto&... f) { return detail::gather_outcomes(f...); }, children);
}

/// gather(*tasks) over a vector.
template <class T>
Coro<std::vector<gather_value_t<T>>> gather(std::vector<Task<T>> tasks) {
    std::vector<gather_value_t<T>> results;
    if (tasks.empty()) co_return results;
    Future<> outer =
        detail::make_gather(tasks.front().state()->loop(), detail::erase_types<T>(tasks),
                            detail::GatherMode::raise_first_exception);
    co_await outer;
    results.reserve(tasks.size());
    for (Task<T>& task : tasks)
        results.push_back(detail::gathered_value<T>(task));
    co_return results;
}

/// gather(*tasks, return_exceptions=True) over a vector.
template <class T>
Coro<std::vector<Outcome<T>>> gather(return_exceptions_t, std::vector<Task<T>> tasks) {
    std::vector<Outcome<T>> results;
    if (tasks.empty()) co_return results;
    Future<> outer =
        detail::make_gather(tasks.front().state()->loop(), detail::erase_types<T>(tasks),
                            detail::GatherMode::return_exceptions);
    co_await outer;
    results.reserve(tasks.size());
    for (Task<T>& task : tasks)
        results.push_back(detail::gathered_outcome<T>(task));
    co_return results;
}

// -- wait -------------------------------------------------------------------------------

enum ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

/// Keyword arguments of wait().
struct WaitOptions {
    std::optional<std::chrono::nanoseconds> timeout{};
    ReturnWhen return_when = ALL_COMPLETED;
};

/// What wait() returns: the tasks done and those still pending, each in the
/// order they were given.
template <class T>
struct WaitResult {
    std::vector<Task<T>> done, pending;
};

/// asyncio.wait: waits until `opts.return_when` holds or the timeout passes
/// (no TimeoutError: the pending tasks are returned). The tasks are not
/// cancelled. std::invalid_argument if `tasks` is empty.
template <class T>
Coro<WaitResult<T>> wait(std::vector<Task<T>> tasks, WaitOptions opts = {}) {
    if (tasks.empty()) throw std::invalid_argument("Set of Tasks/Futures is empty.");
    std::vector<Task<T>> unique;  // Python takes a set
    for (Task<T>& task : tasks) {
        if (std::find(unique.begin(), unique.end(), task) == unique.end()) unique.push_back(task);
    }
    const detail::WaitMode mode =
        opts.return_when == FIRST_COMPLETED   ? detail::WaitMode::first_completed
        : opts.return_when == FIRST_EXCEPTION ? detail::WaitMode::first_exception
                                              : detail::WaitMode::all_completed;
    std::optional<std::int64_t> timeout_ns;
    if (opts.timeout) timeout_ns = std::max<std::int64_t>(0, opts.timeout->count());
    Future<> waiter = detail::make_wait(unique.front().state()->loop(),
                                        detail::erase_types<T>(unique), mode, timeout_ns);
    Outcome<void> waited = co_await detail::try_await(waiter);
    detail::end_wait(waiter);
    std::move(waited).get();
    WaitResult<T> result;
    for (Task<T>& task : unique)
        (task.done() ? result.done : result.pending).push_back(task);
    co_return result;
}

// -- wait_for ---------------------------------------------------------------------------

namespace detail {

template <class T>
Coro<T> wait_for_ns(Future<T> inner, std::optional<std::int64_t> timeout_ns) {
    if (!timeout_ns) co_return co_await inner;
    if (*timeout_ns <= 0) {
        if (inner.done()) co_return inner.result();
        co_await cancel_and_wait(inner);
        if (inner.cancelled()) throw TimeoutError();
        co_return inner.result();
    }
    Timeout cm(get_running_loop().time() + static_cast<double>(*timeout_ns) * 1e-9);
    cm.enter(library_key);
    Outcome<T> outcome = co_await try_await(inner);
    std::exception_ptr error = outcome.exception();
    cm.exit(library_key, error);
    if (error) {
        // The inner result arrived together with the deadline: return it
        // (or its exception) instead of losing it behind TimeoutError.
        bool timed_out = false;
        try {
            std::rethrow_exception(error);
        } catch (const TimeoutError&) {
            timed_out = cm.expired();
        } catch (...) {
        }
        if (!timed_out || !inner.done() || inner.cancelled()) std::rethrow_exception(error);
        co_return inner.result();
    }
    co_return std::move(outcome).get();
}

template <class Rep, class Period>
std::int64_t duration_ns(std::chrono::duration<Rep, Period> d) {
    using namespace std::chrono;
    if constexpr (std::is_floating_point_v<Rep>) {
        if (std::isnan(d.count())) throw std::invalid_argument("timeout must not be NaN");
    }
    if (duration<double, std::nano>(d).count() >= static_cast<double>(EventLoop::kNeverNs)) {
        return EventLoop::kNeverNs;
    }
    return duration_cast<nanoseconds>(d).count();
}

}  // namespace detail

/// asyncio.wait_for (3.12 semantics): awaits `aw` with a deadline; on
/// timeout cancels it, waits for it to finish, and throws TimeoutError. If
/// `aw` swallows the cancellation and returns a value, that value is returned.
template <class A, class Rep, class Period>
Coro<awaitable_result_t<A>> wait_for(A&& aw, std::chrono::duration<Rep, Period> timeout) {
    return detail::wait_for_ns(detail::as_future(ensure_future(std::forward<A>(aw))),
                               std::optional<std::int64_t>(detail::duration_ns(timeout)));
}

/// wait_for(aw, seconds); nullopt waits without a deadline.
template <class A>
Coro<awaitable_result_t<A>> wait_for(A&& aw, std::optional<double> timeout_seconds) {
    std::optional<std::int64_t> ns;
    if (timeout_seconds) ns = detail::duration_ns(std::chrono::duration<double>(*timeout_seconds));
    return detail::wait_for_ns(detail::as_future(ensure_future(std::forward<A>(aw))), ns);
}

// -- shield -----------------------------------------------------------------------------

namespace detail {

template <class T>
Coro<T> shield_future(Future<T> inner) {
    if (inner.done()) co_return inner.result();
    Future<T> outer = inner.get_loop().template create_future<T>();
    const std::size_t inner_callback = inner.add_done_callback([outer](Future<T>& done) mutable {
        if (outer.cancelled()) {
            if (!done.cancelled()) done.exception();  // mark it retrieved
            return;
        }
        if (done.cancelled()) {
            outer.cancel();
        } else if (std::exception_ptr error = done.exception()) {
            outer.set_exception(std::move(error));
        } else if constexpr (std::is_void_v<T>) {
            outer.set_result();
        } else {
            outer.set_result(done.value(library_key, ValueReaders::shared));
        }
    });
    outer.add_done_callback([inner, inner_callback](Future<T>&) mutable {
        if (!inner.done()) inner.remove_done_callback(inner_callback);
    });
    co_return co_await outer;
}

}  // namespace detail

/// asyncio.shield: awaits `aw` but does not pass a cancellation of the
/// awaiting task on to it. If `aw` itself is cancelled (by someone else),
/// awaiting the shield throws CancelledError.
template <class A>
Coro<awaitable_result_t<A>> shield(A&& aw) {
    return detail::shield_future(detail::as_future(ensure_future(std::forward<A>(aw))));
}

// -- as_completed -----------------------------------------------------------------------

/// asyncio.as_completed: the results of `tasks` in completion order.
///
///     for (auto next : asyncio::as_completed(tasks)) {   // for f in as_completed(tasks):
///         int result = co_await next;                     //     result = await f
///     }
///     auto it = asyncio::as_completed(tasks);             // async for t in as_completed(tasks):
///     while (auto task = co_await it.next()) { ... }      //     (3.13: yields the tasks)
///
/// With a timeout, the awaitables still due when it passes throw TimeoutError.
template <class T>
class AsCompleted {
  public:
    AsCompleted(std::vector<Task<T>> tasks, std::optional<std::chrono::nanoseconds> timeout);

    /// Awaits the next task to complete and returns its result.
    Coro<T> next_result();
    /// Awaits the next task to complete and returns it; nullopt when all
    /// have been returned.
    Coro<std::optional<Task<T>>> next();

    class iterator {
      public:
        using value_type = Coro<T>;
        using difference_type = std::ptrdiff_t;
        Coro<T> operator*() const { return owner_->next_result(); }
        iterator& operator++() {
            ++index_;
            return *this;
        }
        iterator operator++(int) {
            iterator before = *this;
            ++index_;
            return before;
        }
        bool operator==(const iterator& other) const noexcept { return index_ == other.index_; }

      private:
        friend class AsCompleted;
        iterator(AsCompleted* owner, std::size_t index) : owner_(owner), index_(index) {}
        AsCompleted* owner_;
        std::size_t index_;
    };
    iterator begin() { return iterator(this, 0); }
    iterator end() { return iterator(this, state_->tasks.size()); }

  private:
    struct State;
    Coro<Task<T>> next_done();
    std::shared_ptr<State> state_;
    std::size_t left_;
};

template <class T>
AsCompleted<T> as_completed(std::vector<Task<T>> tasks,
                            std::optional<std::chrono::nanoseconds> timeout = {}) {
    return AsCompleted<T>(std::move(tasks), timeout);
}

template <class T>
struct AsCompleted<T>::State {
    std::vector<Task<T>> tasks;
    std::vector<std::size_t> done;  // indexes into tasks, kNone for "timed out"
    std::size_t delivered = 0;
    std::deque<Future<std::size_t>> getters;
    std::vector<std::size_t> callbacks;
    TimerHandle timer;
    bool timed_out = false;
    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

    ~State() { timer.cancel(); }

    void push(std::size_t index) {
        while (!getters.empty()) {
            Future<std::size_t> getter = std::move(getters.front());
            getters.pop_front();
            if (!getter.done()) {
                getter.set_result(index);
                return;
            }
        }
        done.push_back(index);
    }
};

template <class T>
AsCompleted<T>::AsCompleted(std::vector<Task<T>> tasks,
                            std::optional<std::chrono::nanoseconds> timeout)
    : state_(std::make_shared<State>()) {
    for (Task<T>& task : tasks) {
        auto& mine = state_->tasks;
        if (std::find(mine.begin(), mine.end(), task) == mine.end()) mine.push_back(task);
    }
    left_ = state_->tasks.size();
    std::weak_ptr<State> weak = state_;
    for (std::size_t i = 0; i < state_->tasks.size(); ++i) {
        state_->callbacks.push_back(state_->tasks[i].add_done_callback([weak, i](Future<T>&) {
            if (auto state = weak.lock(); state && !state->timed_out) state->push(i);
        }));
    }
    if (timeout && !state_->tasks.empty()) {
        state_->timer = state_->tasks.front().get_loop().call_later(*timeout, [weak] {
            auto state = weak.lock();
            if (!state) return;
            state->timed_out = true;
            for (std::size_t i = 0; i < state->tasks.size(); ++i) {
                if (!state->tasks[i].done()) state->push(State::kNone);
            }
        });
    }
}

template <class T>
Coro<Task<T>> AsCompleted<T>::next_done() {
    std::shared_ptr<State> state = state_;
    std::size_t index;
    if (state->delivered < state->done.size()) {
        index = state->done[state->delivered++];
    } else {
        Future<std::size_t> getter =
            state->tasks.front().get_loop().template create_future<std::size_t>();
        state->getters.push_back(getter);
        Outcome<std::size_t> got = co_await detail::try_await(getter);
        if (!got.has_value()) {
            // Woken and then cancelled: pass the completion on, lose nothing.
            if (getter.done() && !getter.cancelled()) state->push(getter.result());
        }
        index = std::move(got).get();
    }
    if (index == State::kNone) throw TimeoutError();
    co_return state->tasks[index];
}

template <class T>
Coro<T> AsCompleted<T>::next_result() {
    if (left_ == 0) throw std::out_of_range("as_completed: no tasks left");
    --left_;
    Task<T> task = co_await next_done();
    co_return task.result();
}

template <class T>
Coro<std::optional<Task<T>>> AsCompleted<T>::next() {
    if (left_ == 0) co_return std::nullopt;
    --left_;
    Task<T> task = co_await next_done();
    co_return task;
}

}  // namespace asyncio
