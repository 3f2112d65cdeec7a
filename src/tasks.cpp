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

void eager_task_factory(EventLoop&, Task<>&, TaskOptions& opts) {
    opts.eager_start = true;
}

TaskFactory create_eager_task_factory(TaskFactory custom_task_constructor) {
    if (!custom_task_constructor) {
        throw std::invalid_argument("create_eager_task_factory() needs a task constructor");
    }
    return [custom = std::move(custom_task_constructor)](EventLoop& loop, Task<>& task,
                                                         TaskOptions& opts) {
        eager_task_factory(loop, task, opts);  // what CPython passes as eager_start=True
        custom(loop, task, opts);
    };
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

// -- watching several futures -------------------------------------------------------

namespace asyncio::detail {

MultiWatch::~MultiWatch() {
    unwatch();
}

void MultiWatch::watch(std::vector<Future<>> children) {
    children_ = std::move(children);
    link_count_ = children_.size();
    links_ = std::make_unique<Link[]>(link_count_);
    watching_ = true;
    for (std::size_t i = 0; i < link_count_; ++i) {
        Link& link = links_[i];
        link.owner = this;
        link.index = i;
        link.pin = this;
        children_[i].state()->add_waiter_or_schedule(link);
    }
}

void MultiWatch::unwatch() noexcept {
    watching_ = false;
    for (std::size_t i = 0; i < link_count_; ++i)
        links_[i].Hook<WaiterTag>::unlink();
}

void MultiWatch::Link::on_ready(ReadyNode& node, Action action) noexcept {
    auto& link = node_cast<Link>(node);
    MultiWatch* owner = link.owner;
    if (action == Action::run && owner->watching_) owner->child_done(link.index);
    owner->release();  // the pin
}

namespace {

CancelledError cancelled_error_of(FutureBase& future) {
    return CancelledError(future.cancel_message());
}

class GatherState final : public MultiWatch {
  public:
    GatherState(LoopCore& loop, bool return_exceptions) noexcept
        : MultiWatch(loop), return_exceptions_(return_exceptions) {}

    bool cancel(const std::string& message) noexcept override {
        if (done()) return false;
        bool any = false;
        for (Future<>& child : children_)
            any |= child.cancel(message);
        if (any) cancel_requested_ = true;
        return any;
    }

  private:
    void child_done(std::size_t index) noexcept override {
        ++finished_;
        FutureBase& child = *children_[index].state();
        if (done()) {
            if (!child.cancelled()) child.exception();  // mark it retrieved
            return;
        }
        if (!return_exceptions_) {
            if (child.cancelled()) {
                set_exception(std::make_exception_ptr(cancelled_error_of(child)));
                observe_pending_children();
                return;
            }
            if (std::exception_ptr error = child.exception()) {
                set_exception(std::move(error));
                observe_pending_children();
                return;
            }
        }
        if (finished_ < children_.size()) return;
        if (cancel_requested_) {
            set_exception(std::make_exception_ptr(cancelled_error_of(child)));
        } else {
            finish_with_result();
        }
        children_.clear();  // lets gather() move results its caller holds alone
    }

    // The outer future is done early: the children still running may die
    // with this state, so their exceptions count as seen now.
    void observe_pending_children() noexcept {
        for (Future<>& c : children_) {
            if (!c.done()) c.state()->mark_observed();
        }
    }

    std::size_t finished_ = 0;
    bool return_exceptions_;
    bool cancel_requested_ = false;
};

class WaitState final : public MultiWatch {
  public:
    WaitState(LoopCore& loop, WaitMode mode) noexcept : MultiWatch(loop), mode_(mode) {}
    // The timer captures `this`: it must never run once the state is gone.
    ~WaitState() override { timer_.cancel(); }

    void start(std::vector<Future<>> children, std::optional<std::int64_t> timeout_ns) {
        counter_ = children.size();
        if (timeout_ns) {
            timer_ = loop().owner().call_later(std::chrono::nanoseconds(*timeout_ns),
                                               [this] { release_waiter(); });
        }
        watch(std::move(children));
    }

    void end() noexcept {
        timer_.cancel();
        unwatch();
        children_.clear();  // the caller has its own handles; hold nothing longer
    }

  private:
    void child_done(std::size_t index) noexcept override {
        --counter_;
        FutureBase& child = *children_[index].state();
        if (counter_ == 0 || mode_ == WaitMode::first_completed ||
            (mode_ == WaitMode::first_exception && !child.cancelled() && child.exception())) {
            release_waiter();
        }
    }

    void release_waiter() noexcept {
        timer_.cancel();
        if (!done()) finish_with_result();
    }

    WaitMode mode_;
    std::size_t counter_ = 0;
    TimerHandle timer_;
};

}  // namespace

Future<> make_gather(LoopCore& loop, std::vector<Future<>> children, GatherMode mode) {
    auto* state = new GatherState(loop, mode == GatherMode::return_exceptions);
    Future<> outer(state, AdoptRef{});
    if (children.empty()) {
        state->finish_with_result();
    } else {
        state->watch(std::move(children));
    }
    return outer;
}

Future<> make_wait(LoopCore& loop, std::vector<Future<>> children, WaitMode mode,
                   std::optional<std::int64_t> timeout_ns) {
    auto* state = new WaitState(loop, mode);
    Future<> waiter(state, AdoptRef{});
    state->start(std::move(children), timeout_ns);
    return waiter;
}

void end_wait(const Future<>& waiter) noexcept {
    static_cast<WaitState*>(waiter.state())->end();
}

Coro<void> cancel_and_wait(Future<> future) {
    Future<> waiter = future.get_loop().create_future();
    const std::size_t id = future.add_done_callback([waiter](Future<>&) mutable {
        if (!waiter.done()) waiter.set_result();
    });
    future.cancel();  // noexcept: nothing for the outcome to catch
    Outcome<void> waited = co_await try_await(waiter);
    future.remove_done_callback(id);
    std::move(waited).get();
}

}  // namespace asyncio::detail
