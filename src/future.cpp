// Futures and tasks: the parts of futures.py and tasks.py that do not depend
// on the value type.
#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <system_error>
#include <typeinfo>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "internal.hpp"

namespace asyncio::detail {

namespace {

std::atomic<std::size_t> next_callback_id{1};
std::atomic<std::uint64_t> next_task_id{1};

std::string demangle(const char* name) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                               std::free);
    return status == 0 && out ? std::string(out.get()) : std::string(name);
}

const char* status_name(FutureBase::Status status) noexcept {
    switch (status) {
        case FutureBase::Status::pending:
            return "PENDING";
        case FutureBase::Status::cancelled:
            return "CANCELLED";
        case FutureBase::Status::finished:
            return "FINISHED";
    }
    return "?";
}

std::string location(std::source_location where) {
    return fmt::format("{}:{} in {}", where.file_name(), where.line(), where.function_name());
}

// Reports through `loop` when it still exists, else straight to the log.
void report_to(const LoopCore* loop, const ExceptionContext& context) noexcept {
    if (LoopCore::alive(loop)) {
        const_cast<LoopCore*>(loop)->report(context);
        return;
    }
    try {
        std::string text = context.message;
        if (!context.repr.empty()) text += "\nobject: " + context.repr;
        if (context.exception) text += "\nexception: " + describe_exception(context.exception);
        log_message(LogLevel::error, text);
    } catch (...) {
        log_message(LogLevel::error, context.message);
    }
}

}  // namespace

std::string describe_exception(const std::exception_ptr& error) {
    if (!error) return "None";
    try {
        std::rethrow_exception(error);
    } catch (const CancelledError& e) {
        return e.message().empty() ? "CancelledError" : "CancelledError: " + e.message();
    } catch (const std::system_error& e) {
        return fmt::format("{} [{}:{}]: {}", demangle(typeid(e).name()), e.code().category().name(),
                           e.code().value(), e.what());
    } catch (const std::exception& e) {
        return demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
        if (const std::type_info* type = abi::__cxa_current_exception_type()) {
            return demangle(type->name());
        }
        return "unknown exception";
    }
}

void report_never_awaited(std::source_location where) noexcept {
    try {
        ExceptionContext context;
        context.message = fmt::format("coroutine '{}' was never awaited", where.function_name());
        context.source = where;
        if (LoopCore* loop = running_loop()) {
            loop->report(context);
        } else {
            log(LogLevel::warning, "{}\ncoroutine defined at {}:{}", context.message,
                where.file_name(), where.line());
        }
    } catch (...) {
        log_message(LogLevel::warning, "a coroutine was never awaited");
    }
}

// -- done callbacks -----------------------------------------------------------

/// A callback given to Future.add_done_callback, waiting in the future's list.
/// It runs in its own context, as CPython's does (call_soon(..., context=)):
/// what it sets stays there, out of the loop thread's base context.
struct CallbackNode final : Waiter, Recycled {
    CallbackNode(FutureBase& future, std::function<void(FutureBase&)> fn, std::size_t id,
                 const Context* given)
        : Waiter(&run), future(&future), fn(std::move(fn)), id(id) {
        pin = &future;
        if (given != nullptr) context.share(*given->state());
    }

    static void run(ReadyNode& node, Action action) noexcept {
        CallbackNode* self = &node_cast<CallbackNode>(node);
        FutureBase* future = self->future;
        if (action == Action::run) {
            try {
                ContextScope scope(*self->context);
                self->fn(*future);
            } catch (...) {
                ExceptionContext context;
                context.message = "Exception in callback of a future";
                context.exception = std::current_exception();
                context.future = Future<>(future);
                future->loop_->report(context);
            }
        }
        delete self;
        future->release();  // the pin, taken when the callback was scheduled
    }

    FutureBase* future;
    std::function<void(FutureBase&)> fn;
    std::size_t id;
    ContextRef context;
};

const ReadyNode::Fn FutureBase::callback_fn_ = &CallbackNode::run;

FutureBase::~FutureBase() {
    callbacks_.for_each([](Waiter& waiter) {
        waiter.Hook<WaiterTag>::unlink();
        if (waiter.fn == callback_fn_) delete static_cast<CallbackNode*>(&waiter);
    });
}

bool FutureBase::cancel(const std::string& message) noexcept {
    log_traceback_ = false;
    if (status_ != Status::pending) return false;
    mark_cancelled(message);
    return true;
}

std::exception_ptr FutureBase::exception() {
    if (status_ != Status::finished) throw_not_finished("Exception");
    log_traceback_ = false;
    return exception_;
}

void FutureBase::set_exception(std::exception_ptr error) {
    check_settable("set_exception");
    if (!error) throw std::invalid_argument("set_exception() needs an exception, got nullptr");
    exception_ = std::move(error);
    status_ = Status::finished;
    log_traceback_ = !observed_;
    schedule_callbacks();
}

void FutureBase::mark_cancelled(std::string message) noexcept {
    status_ = Status::cancelled;
    cancel_message_.set(std::move(message));
    schedule_callbacks();
}

std::size_t FutureBase::add_done_callback(std::function<void(FutureBase&)> fn,
                                          const Context* context) {
    const std::size_t id = next_callback_id.fetch_add(1, std::memory_order_relaxed);
    auto* node = new CallbackNode(*this, std::move(fn), id, context);
    if (done()) {
        add_ref();
        loop_->schedule(*node);
    } else {
        callbacks_.push_back(*node);
    }
    return id;
}

std::size_t FutureBase::remove_done_callback(std::size_t id) noexcept {
    std::size_t removed = 0;
    callbacks_.for_each([&](Waiter& waiter) {
        if (waiter.fn != callback_fn_) return;
        auto* node = static_cast<CallbackNode*>(&waiter);
        if (node->id != id) return;
        waiter.Hook<WaiterTag>::unlink();
        delete node;
        ++removed;
    });
    return removed;
}

void FutureBase::throw_not_finished(const char* what) const {
    if (status_ == Status::cancelled) throw CancelledError(cancel_message_.get());
    throw InvalidStateError(fmt::format("{} is not {}.", what, what[0] == 'R' ? "ready" : "set"));
}

void FutureBase::throw_done(const char* operation) const {
    throw InvalidStateError(
        fmt::format("{}(): the future is already done ({})", operation, status_name(status_)));
}

void FutureBase::throw_task_refuses(const char* operation) {
    throw RuntimeError(fmt::format("Task does not support {}() operation", operation));
}

void FutureBase::report_unretrieved() noexcept {
    try {
        ExceptionContext context;
        context.message = "Future exception was never retrieved";
        context.exception = exception_;
        context.repr = "<Future finished exception=" + describe_exception(exception_) + ">";
        report_to(loop_, context);
    } catch (...) {
        log_message(LogLevel::error, "Future exception was never retrieved");
    }
}

// -- tasks ---------------------------------------------------------------------

TaskBase::TaskBase(LoopCore& loop, std::coroutine_handle<> root, std::source_location created_at)
    : FutureBase(loop, Kind::task),
      root_(root),
      id_(next_task_id.fetch_add(1, std::memory_order_relaxed)),
      created_at_(created_at) {
    step_node_.task = this;
    loop.register_task(*this);
}

TaskBase::~TaskBase() {
    destroy_root();
}

ASYNCIO_DEFINE_PER_THREAD(TaskBase*, freeing_task);

// The ready queue's two ways into a task step. Out of line so that their
// address is one (HandleState::from_queue says why); flatten inlines the
// step into them, as when they were inline in the header.
[[gnu::flatten]] void TaskBase::StepNode::run_step(ReadyNode& node, Action action) noexcept {
    if (action != Action::run) return;
    auto& step = node_cast<StepNode>(node);
    step.task->step(step.resume_at);
}

[[gnu::flatten]] void Waiter::resume_task(ReadyNode& node, Action action) noexcept {
    if (action != Action::run) return;
    auto& waiter = node_cast<Waiter>(node);
    waiter.task->step(waiter.resume_at);
}

void TaskBase::destroy_root() noexcept {
    if (!root_) return;
    TaskBase* outer = std::exchange(freeing_task(), this);
    std::exchange(root_, {}).destroy();
    freeing_task() = outer;
}

bool TaskBase::cancel(const std::string& message) noexcept {
    log_traceback_ = false;
    if (done()) return false;
    ++num_cancels_requested_;
    cancel_message_.set(message);
    if (fut_waiter_ != nullptr && fut_waiter_->cancel(*fut_waiter_, message)) {
        // Leave fut_waiter_ set: a task we wait for may catch the cancellation,
        // and a later cancel() must reach it again.
        return true;
    }
    must_cancel_ = true;
    return true;
}

std::string TaskBase::name() const {
    return name_.empty() ? fmt::format("Task-{}", id_) : name_.get();
}

std::string TaskBase::repr() const {
    std::string out = fmt::format("<Task {} name='{}'",
                                  status_ == Status::pending     ? "pending"
                                  : status_ == Status::cancelled ? "cancelled"
                                                                 : "finished",
                                  name());
    if (status_ == Status::finished && exception_) {
        out += " exception=" + describe_exception(exception_);
    }
    if (created_at_.line() != 0) out += " created at " + location(created_at_);
    return out + ">";
}

namespace {

/// The first task suspended awaiting `task` (a FutureAwaiter's waiter names
/// its task; done callbacks and gather's watchers name none).
const TaskBase* first_awaiting(const TaskBase& task, IntrusiveList<Waiter, WaiterTag>& waiters) {
    const TaskBase* found = nullptr;
    waiters.for_each([&](Waiter& waiter) {
        if (found == nullptr && waiter.task != nullptr && waiter.task != &task) found = waiter.task;
    });
    return found;
}

}  // namespace

std::vector<std::source_location> TaskBase::stack(std::optional<std::size_t> limit) const {
    std::vector<std::source_location> out;
    if (done()) return out;
    std::vector<const TaskBase*> chain;  // this task, then who awaits it, ...
    for (const TaskBase* t = this; t != nullptr;
         t = first_awaiting(*t, const_cast<TaskBase*>(t)->callbacks_)) {
        // Tasks awaiting each other in a cycle deadlock, but must not loop here.
        if (std::find(chain.begin(), chain.end(), t) != chain.end()) break;
        chain.push_back(t);
    }
    const std::size_t n = limit ? std::min(*limit, chain.size()) : chain.size();
    for (std::size_t i = n; i-- > 0;)
        out.push_back(chain[i]->created_at_);
    return out;
}

void TaskBase::print_stack(std::optional<std::size_t> limit, std::FILE* file) const {
    const std::vector<std::source_location> entries = stack(limit);
    if (entries.empty()) {
        fmt::print(file, "No stack for {}\n", repr());
        return;
    }
    fmt::print(file, "Stack for {} (most recent call last):\n", repr());
    for (const std::source_location& where : entries) {
        fmt::print(file, "  File \"{}\", line {}, in {}\n", where.file_name(), where.line(),
                   where.function_name());
    }
}

TaskBase& TaskBase::running() {
    LoopCore* loop = running_loop();
    if (loop == nullptr) throw RuntimeError("no running event loop");
    if (loop->current_task() == nullptr) {
        throw RuntimeError("a leaf awaitable was awaited outside of a task");
    }
    return *loop->current_task();
}

void TaskBase::finish_with_exception(std::exception_ptr error) noexcept {
    try {
        std::rethrow_exception(error);
    } catch (const CancelledError& cancelled) {
        must_cancel_ = false;
        mark_cancelled(cancelled.message());
        return;
    } catch (...) {
    }
    exception_ = std::move(error);
    status_ = Status::finished;
    log_traceback_ = !observed_;
    schedule_callbacks();
}

void TaskBase::report_unretrieved() noexcept {
    try {
        ExceptionContext context;
        context.message = "Task exception was never retrieved";
        context.exception = exception_;
        context.repr = repr();
        context.source = created_at_;
        report_to(loop_, context);
    } catch (...) {
        log_message(LogLevel::error, "Task exception was never retrieved");
    }
}

void TaskBase::abandon() noexcept {
    fut_waiter_ = nullptr;
    destroy_root();
    // It will never run again: end it cancelled, so that whatever waits for
    // it (done callbacks, gather, TaskGroup) is released rather than kept
    // pending forever.
    if (!done()) mark_cancelled("the event loop was closed while the task was pending");
    loop_->unregister_task(*this);
}

}  // namespace asyncio::detail
