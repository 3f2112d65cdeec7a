// asyncio.TaskGroup (Lib/asyncio/taskgroups.py, 3.13).
#include "asyncio/taskgroups.hpp"

#include <optional>
#include <vector>

#include "asyncio/tasks.hpp"

namespace asyncio {

struct GroupTag;

/// Shared by the group and the done nodes of its children; single-threaded
/// and counted by hand, so that a child costs no atomic operation.
struct TaskGroup::State {
    EventLoop* loop = nullptr;
    std::optional<Task<>> parent;
    std::size_t refs = 1;
    bool exiting = false;
    bool aborting = false;
    bool parent_cancel_requested = false;
    bool waited = false;
    bool created_any = false;
    detail::IntrusiveList<Child, GroupTag> tasks;  // the children not done yet
    std::vector<std::exception_ptr> errors;
    std::optional<Future<>> on_completed;

    void add_ref() noexcept { ++refs; }
    void release() noexcept {
        if (--refs == 0) delete this;
    }

    void abort() noexcept;
    void on_task_done(const Future<>& done) noexcept;
};

/// One child: waits in the child's callback list, and sits in the group's
/// list of running tasks (Python's _on_task_done callback and _tasks entry).
struct TaskGroup::Child final : detail::Waiter, detail::Hook<GroupTag>, detail::Recycled {
    Child(State& group, Task<> task) noexcept
        : Waiter(&on_done), group(&group), task(std::move(task)) {
        group.add_ref();
    }
    ~Child() { group->release(); }

    static void on_done(detail::ReadyNode& node, Action action) noexcept {
        Child* self = &detail::node_cast<Child>(node);
        self->detail::Hook<GroupTag>::unlink();
        if (action == Action::run) self->group->on_task_done(self->task);
        delete self;
    }

    State* group;
    Task<> task;
};

void TaskGroup::State::abort() noexcept {
    aborting = true;
    tasks.for_each([](Child& child) {
        if (!child.task.done()) child.task.cancel();
    });
}

void TaskGroup::State::on_task_done(const Future<>& done) noexcept {
    if (on_completed && tasks.empty() && !on_completed->done()) on_completed->set_result();
    if (done.cancelled()) return;
    std::exception_ptr error = done.state()->exception();
    if (!error) return;
    errors.push_back(error);
    if (parent->done()) {
        ExceptionContext context;
        context.message =
            "A task of a TaskGroup has errored out but its parent task is already completed";
        context.exception = error;
        done.state()->add_ref();  // the reference the Task<> adopts
        context.task = Task<>(static_cast<detail::TaskBase*>(done.state()), detail::AdoptRef{});
        loop->call_exception_handler(context);
        return;
    }
    if (!aborting && !parent_cancel_requested) {
        // The parent is not being cancelled: cancel it ourselves, to interrupt
        // whatever it is awaiting in the block, and remember to uncancel it
        // in wait().
        abort();
        parent_cancel_requested = true;
        parent->cancel();
    }
}

TaskGroup::TaskGroup() : state_(new State) {
    try {
        state_->loop = &get_running_loop();
        state_->parent = current_task(*state_->loop);
    } catch (...) {
        state_->release();
        throw;
    }
    if (!state_->parent) {
        state_->release();
        throw RuntimeError("TaskGroup cannot determine the parent task");
    }
}

TaskGroup::~TaskGroup() {
    State& s = *state_;
    if (!s.waited && s.created_any) {
        ExceptionContext context;
        context.message = "TaskGroup was destroyed without wait(); its tasks are being cancelled";
        if (!s.errors.empty()) context.exception = s.errors.front();
        context.task = s.parent;
        s.abort();
        if (!s.loop->is_closed()) s.loop->call_exception_handler(context);
    }
    s.release();
}

EventLoop& TaskGroup::loop() const noexcept {
    return *state_->loop;
}

const char* TaskGroup::refuse_task() const noexcept {
    const State& s = *state_;
    if (s.exiting && s.tasks.empty()) return "TaskGroup is finished";
    if (s.aborting) return "TaskGroup is shutting down";
    return nullptr;
}

void TaskGroup::adopt(const Task<>& task) {
    State& s = *state_;
    s.created_any = true;
    if (task.done()) {  // finished eagerly: no callback needed
        s.on_task_done(task);
        return;
    }
    auto* child = new Child(s, task);
    s.tasks.push_back(*child);
    task.state()->add_waiter(*child);
}

Coro<void> TaskGroup::wait() {
    return wait(nullptr);
}

Coro<void> TaskGroup::wait(std::exception_ptr block_error) {
    State* s = state_;
    if (s->waited) throw RuntimeError("TaskGroup has already been waited for");
    s->add_ref();
    struct Release {
        State* s;
        ~Release() { s->release(); }
    } keep{s};
    s->waited = true;
    s->exiting = true;
    const bool block_cancelled = detail::is_cancellation(block_error);
    std::exception_ptr propagate_cancellation = block_cancelled ? block_error : nullptr;
    // The parent is being cancelled, or the block failed: stop the children.
    if (block_error && !s->aborting) s->abort();

    // A loop: the parent may be cancelled again (or once more while our own
    // cancellation is in progress) while the children finish.
    while (!s->tasks.empty()) {
        if (!s->on_completed) s->on_completed = s->loop->create_future();
        Outcome<void> completed = co_await detail::try_await(*s->on_completed);
        std::exception_ptr cancelled = completed.exception();
        if (cancelled && !detail::is_cancellation(cancelled)) std::rethrow_exception(cancelled);
        if (cancelled && !s->aborting) {
            // The parent is cancelled from outside while children still run.
            propagate_cancellation = cancelled;
            s->abort();
        }
        s->on_completed.reset();
    }

    // We cancelled the parent ourselves: withdraw that request; if it was the
    // only one, the CancelledError is ours and must not propagate.
    if (s->parent_cancel_requested && s->parent->uncancel() == 0) propagate_cancellation = nullptr;
    if (propagate_cancellation && s->errors.empty()) std::rethrow_exception(propagate_cancellation);
    if (block_error && !block_cancelled) s->errors.push_back(block_error);
    if (!s->errors.empty()) {
        // Keep a pending outside cancellation of the parent in force.
        if (s->parent->cancelling() > 0) {
            s->parent->uncancel();
            s->parent->cancel();
        }
        throw ExceptionGroup("unhandled errors in a TaskGroup", std::exchange(s->errors, {}));
    }
}

}  // namespace asyncio
