// Shared states behind Future<T> and Task<T>, and the Waiter protocol that
// every leaf awaitable (future, timer, lock, queue, I/O operation) follows.
//
// The protocol mirrors Task.__step in Lib/asyncio/tasks.py:
//   * a leaf's await_suspend registers a Waiter with the thing it waits for
//     and calls TaskBase::suspend_on, which records it as the task's
//     `fut_waiter` together with a cancel function;
//   * when the wait is over, the Waiter goes to the loop's ready queue and,
//     when run, steps the task at the suspended coroutine;
//   * Task::cancel() calls the waiter's cancel function; if the wait can no
//     longer be cancelled, the task remembers `must_cancel` and the next step
//     throws CancelledError at the suspension point (a leaf's await_resume
//     calls TaskBase::resume_point()).
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/contextvars.hpp"
#include "asyncio/detail/allocator.hpp"
#include "asyncio/detail/intrusive.hpp"
#include "asyncio/detail/loop_core.hpp"
#include "asyncio/detail/per_thread.hpp"
#include "asyncio/detail/storage.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"

namespace asyncio::detail {

class TaskBase;
struct WaiterTag;
struct AllTasksTag;

/// The task whose coroutine frames this thread is freeing while suspended
/// (TaskBase::abandon), else nullptr: a frame's destructors can tell a
/// teardown from a normal exit by it.
ASYNCIO_PER_THREAD(TaskBase*, freeing_task);

/// A suspended coroutine waiting for something; see the protocol above.
struct Waiter : ReadyNode, Hook<WaiterTag> {
    /// Ends the wait early because the task is cancelled; returns true if the
    /// waiter will therefore be resumed (Python's `fut_waiter.cancel(msg)`).
    using CancelFn = bool (*)(Waiter&, const std::string& msg) noexcept;

    Waiter() noexcept : ReadyNode(&resume_task) {}
    explicit Waiter(Fn fn) noexcept : ReadyNode(fn) {}

    TaskBase* task = nullptr;
    std::coroutine_handle<> resume_at;
    CancelFn cancel = nullptr;
    /// Kept alive while this waiter sits in the ready queue after a future
    /// scheduled it: FutureBase::schedule_callbacks adds a reference, and
    /// the waiter's fn must release it (on run and on drop).
    class FutureBase* pin = nullptr;

    /// ReadyNode::Fn of a waiter: steps `task` at `resume_at`.
    static ASYNCIO_EXPORT void resume_task(ReadyNode& node,
                                           Action action) noexcept;  // see from_queue
};

/// A string that costs one pointer while empty: most futures are never
/// cancelled with a message, and most tasks keep their default name.
class CompactString {
  public:
    const std::string& get() const noexcept { return text_ ? *text_ : empty_string(); }
    bool empty() const noexcept { return text_ == nullptr; }
    void set(std::string text) {
        if (text.empty()) {
            text_.reset();
        } else if (text_) {
            *text_ = std::move(text);
        } else {
            text_ = std::make_unique<std::string>(std::move(text));
        }
    }

  private:
    static const std::string& empty_string() noexcept {
        static const std::string empty;
        return empty;
    }
    std::unique_ptr<std::string> text_;
};

/// Who may still read a finished future's value: Future::value copies it for
/// `shared` readers (when it can) and moves it out for the `sole` one.
enum class ValueReaders : bool { shared, sole };

/// State shared by the handles of one Future (Lib/asyncio/futures.py).
/// Single-threaded and intrusively reference counted.
class ASYNCIO_EXPORT FutureBase : public Recycled {
  public:
    enum class Status : std::uint8_t { pending, cancelled, finished };
    /// Whether the state is a Task's (reports then name a task, not a future).
    enum class Kind : bool { future, task };

    FutureBase(const FutureBase&) = delete;
    FutureBase& operator=(const FutureBase&) = delete;

    void add_ref() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ != 0) return;
        if (log_traceback_) report_unretrieved();
        delete this;
    }
    std::uint32_t use_count() const noexcept { return refs_; }
    /// `sole` when the caller's handle is the only one left.
    ValueReaders readers() const noexcept {
        return refs_ == 1 ? ValueReaders::sole : ValueReaders::shared;
    }

    bool done() const noexcept { return status_ != Status::pending; }
    bool cancelled() const noexcept { return status_ == Status::cancelled; }
    bool is_task() const noexcept { return kind_ == Kind::task; }
    LoopCore& loop() const noexcept { return *loop_; }

    /// Future.cancel(msg); Task overrides it.
    virtual bool cancel(const std::string& message) noexcept;

    /// Throws what result() throws when there is no value to return:
    /// InvalidStateError if pending, CancelledError, or the stored exception.
    void check_result() {
        if (status_ == Status::finished) {
            log_traceback_ = false;
            if (exception_) std::rethrow_exception(exception_);
            return;
        }
        throw_not_finished("Result");
    }
    std::exception_ptr exception();

    void set_exception(std::exception_ptr error);
    /// Marks the future finished (its value, if any, must already be stored)
    /// and schedules its callbacks.
    void finish_with_result() noexcept {
        status_ = Status::finished;
        schedule_callbacks();
    }
    /// Throws InvalidStateError if the future is done.
    void check_pending(const char* operation) const {
        if (status_ != Status::pending) throw_done(operation);
    }
    /// set_result/set_exception's check: a task's outcome comes from its
    /// coroutine alone (setting it would leave the coroutine suspended
    /// forever), so a task refuses them as CPython's Task does.
    void check_settable(const char* operation) const {
        if (kind_ == Kind::task) throw_task_refuses(operation);
        check_pending(operation);
    }

    void add_waiter(Waiter& waiter) noexcept { callbacks_.push_back(waiter); }
    /// add_waiter, or schedule `waiter` at once (pinning as schedule_callbacks
    /// would) if the future is already done: add_done_callback's rule.
    void add_waiter_or_schedule(Waiter& waiter) noexcept {
        if (!done()) {
            callbacks_.push_back(waiter);
            return;
        }
        if (waiter.pin != nullptr) waiter.pin->add_ref();
        loop_->schedule(waiter);
    }
    /// Future.add_done_callback: `fn` runs from the ready queue once the
    /// future is done. Returns an id for remove_done_callback.
    /// It runs in `context` when given, else in a copy of the current context.
    std::size_t add_done_callback(std::function<void(FutureBase&)> fn,
                                  const Context* context = nullptr);
    std::size_t remove_done_callback(std::size_t id) noexcept;

    /// The Storage<T> of a typed state, nullptr for Future<void>.
    virtual void* value_slot() const noexcept = 0;
    const std::string& cancel_message() const noexcept { return cancel_message_.get(); }
    /// An exception this future gets later counts as retrieved (gather marks
    /// the children it stopped watching, as CPython's callback does).
    void mark_observed() noexcept { observed_ = true; }

  protected:
    FutureBase(LoopCore& loop, Kind kind) noexcept : kind_(kind), loop_(&loop) {}
    virtual ~FutureBase();

    void schedule_callbacks() noexcept {
        while (Waiter* waiter = callbacks_.pop_front()) {
            if (waiter->pin != nullptr) waiter->pin->add_ref();
            loop_->schedule(*waiter);
        }
    }
    void mark_cancelled(std::string message) noexcept;
    /// Reports "exception was never retrieved" (Python's __del__).
    virtual void report_unretrieved() noexcept;

    [[noreturn]] void throw_not_finished(const char* what) const;
    [[noreturn]] void throw_done(const char* operation) const;
    [[noreturn]] static void throw_task_refuses(const char* operation);

    std::uint32_t refs_ = 1;
    Status status_ = Status::pending;
    bool log_traceback_ = false;
    bool observed_ = false;  // someone (gather) takes charge of a later exception
    Kind kind_;
    LoopCore* loop_;
    std::exception_ptr exception_;
    CompactString cancel_message_;
    IntrusiveList<Waiter, WaiterTag> callbacks_;

    static const ReadyNode::Fn callback_fn_;
    friend struct CallbackNode;
};

/// A Future<T>'s state: the base plus the value.
template <class T>
class FutureState final : public FutureBase {
  public:
    explicit FutureState(LoopCore& loop) noexcept : FutureBase(loop, Kind::future) {}
    [[no_unique_address]] Storage<T> value;  // nothing for void

    void* value_slot() const noexcept override {
        if constexpr (std::is_void_v<T>) {
            return nullptr;
        } else {
            return const_cast<Storage<T>*>(&value);
        }
    }
};

/// The non-template part of a task (Lib/asyncio/tasks.py Task): stepping the
/// coroutine, cancellation bookkeeping, name and creation site.
class ASYNCIO_EXPORT TaskBase : public FutureBase, public Hook<AllTasksTag> {
  public:
    bool cancel(const std::string& message) noexcept override;
    int cancelling() const noexcept { return num_cancels_requested_; }
    int uncancel() noexcept {
        if (num_cancels_requested_ > 0 && --num_cancels_requested_ == 0) must_cancel_ = false;
        return num_cancels_requested_;
    }

    std::string name() const;
    void set_name(std::string name) { name_.set(std::move(name)); }
    std::uint64_t id() const noexcept { return id_; }
    std::source_location created_at() const noexcept { return created_at_; }
    /// Python's repr(task): "<Task pending name='Task-1' created at f.cpp:12>".
    std::string repr() const;
    /// Task.get_stack(): the creation sites of the tasks awaiting this one
    /// (outermost first), then this task's; empty once done.
    std::vector<std::source_location> stack(std::optional<std::size_t> limit) const;
    void print_stack(std::optional<std::size_t> limit, std::FILE* file) const;

    /// The task running on this thread's loop; RuntimeError if there is none.
    static TaskBase& running();

    /// Schedules the first step (create_task).
    void start() noexcept {
        step_node_.resume_at = root_;
        loop_->schedule(step_node_);
    }
    /// Runs the first step now, inside create_task (eager start).
    void start_eagerly() noexcept { step(root_); }

    /// Runs the task in `context` (shared) instead of its own copy.
    void use_context(const Context& context) noexcept { context_.share(*context.state()); }
    /// Task.get_context(): the context the task runs in.
    Context context() const noexcept {
        context_->refs.fetch_add(1, std::memory_order_relaxed);
        return Context(library_key, context_.get());
    }

    /// Runs the coroutine from `at` until it suspends or finishes (Task.__step).
    void step(std::coroutine_handle<> at) noexcept {
        if (done()) return;
        inject_cancel_ = must_cancel_;
        must_cancel_ = false;
        fut_waiter_ = nullptr;
        if (!started_) {
            started_ = true;
            if (inject_cancel_) {  // cancelled before its first step: the body never runs
                inject_cancel_ = false;
                root_.destroy();
                root_ = {};
                mark_cancelled(cancel_message_.get());
                loop_->unregister_task(*this);
                return;
            }
        }
        LoopCore& loop = *loop_;
        TaskBase* outer = loop.current_task_;
        loop.current_task_ = this;
        {
            ContextScope scope(*context_);
            at.resume();
        }
        loop.current_task_ = outer;
        inject_cancel_ = false;
        if (root_.done()) {
            finish();
            loop.unregister_task(*this);  // may release the last reference
        }
    }

    /// Leaf awaitables call this in await_suspend once `waiter` is registered.
    void suspend_on(Waiter& waiter, std::coroutine_handle<> at, Waiter::CancelFn cancel) noexcept {
        waiter.task = this;
        waiter.resume_at = at;
        waiter.cancel = cancel;
        fut_waiter_ = &waiter;
        if (must_cancel_ && cancel(waiter, cancel_message_.get())) must_cancel_ = false;
    }

    /// Suspends at `at` for one loop iteration without waiting for anything
    /// (Python's bare `yield`, used by sleep(0)).
    void yield_at(std::coroutine_handle<> at) noexcept {
        step_node_.resume_at = at;
        loop_->schedule(step_node_);
    }

    /// Leaf awaitables call this first thing in await_resume after a
    /// suspension: throws CancelledError if the step must cancel.
    void resume_point() {
        if (inject_cancel_) {
            inject_cancel_ = false;
            throw CancelledError(cancel_message_.get());
        }
    }

    /// For a leaf whose wait did work that must not be thrown away: whether
    /// this step must cancel, as resume_point() would throw. The leaf then
    /// keeps its result and calls defer_cancel().
    bool take_pending_cancel() noexcept { return std::exchange(inject_cancel_, false); }
    /// A cancellation that reached a waiter too late to end it (the waiter
    /// completed anyway) is thrown at the task's next suspension instead.
    void defer_cancel() noexcept { must_cancel_ = true; }

    /// Whether the loop should report this task as destroyed while pending.
    bool log_destroy_pending() const noexcept { return log_destroy_pending_; }
    void set_log_destroy_pending(bool log) noexcept { log_destroy_pending_ = log; }

    /// Called by the loop when it closes with this task still pending: frees
    /// the coroutine (running its destructors) and marks the task cancelled.
    void abandon() noexcept;

  protected:
    TaskBase(LoopCore& loop, std::coroutine_handle<> root, std::source_location created_at);
    ~TaskBase() override;

    /// Frees the coroutine's frames where they are suspended, with
    /// freeing_task() set to this task while their destructors run.
    void destroy_root() noexcept;

    /// Moves the outcome of the finished coroutine into the future part.
    virtual void finish() noexcept = 0;
    /// Outcome of a finished root coroutine that is an exception.
    void finish_with_exception(std::exception_ptr error) noexcept;

    void report_unretrieved() noexcept override;

    std::coroutine_handle<> root_;
    Waiter* fut_waiter_ = nullptr;
    /// Schedules a step that waits for nothing: the first, and sleep(0)'s.
    struct StepNode : ReadyNode {
        StepNode() noexcept : ReadyNode(&run_step) {}
        static ASYNCIO_EXPORT void run_step(ReadyNode& node,
                                            Action action) noexcept;  // see from_queue
        TaskBase* task = nullptr;
        std::coroutine_handle<> resume_at;
    };

    StepNode step_node_;
    int num_cancels_requested_ = 0;
    bool must_cancel_ = false;
    bool inject_cancel_ = false;
    bool started_ = false;
    bool log_destroy_pending_ = true;
    std::uint64_t id_;
    CompactString name_;  // empty: the default, "Task-<id>"
    std::source_location created_at_;
    ContextRef context_;  // a copy of the creator's, unless given one

    friend class asyncio::EventLoop;
    friend class LoopCore;
};

}  // namespace asyncio::detail
