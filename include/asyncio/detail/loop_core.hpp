// The part of the event loop that the coroutine core needs: the ready queue,
// the running task, the registry of pending tasks, and the exception handler
// entry point. EventLoop (loop.hpp) derives from it and adds the public API;
// futures and tasks only ever see this, so the core does not depend on the
// loop layer above it (as CPython's futures.py sees only events.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>

#include "asyncio/detail/intrusive.hpp"
#include "asyncio/detail/per_thread.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

class EventLoop;
struct ExceptionContext;

namespace detail {

class TaskBase;
class HandleState;
class AsyncGenBase;
struct AllTasksTag;
struct AsyncGenTag;

struct ResourceTag;

/// Something the loop must tear down if it closes while it is still open (a
/// transport, a server): CPython lets the garbage collector find these.
class ASYNCIO_EXPORT LoopResource : public Hook<ResourceTag> {
  public:
    /// The loop is closing: release everything without calling back into
    /// user code (no connection_lost).
    virtual void loop_closing() noexcept = 0;
    void unregister_resource() noexcept { Hook<ResourceTag>::unlink(); }

  protected:
    ~LoopResource() = default;
};

class ASYNCIO_EXPORT LoopCore {
  public:
    LoopCore(const LoopCore&) = delete;
    LoopCore& operator=(const LoopCore&) = delete;

    /// The EventLoop this core belongs to.
    EventLoop& owner() noexcept;

    /// Appends `node` to the ready queue; it runs in a later iteration. Used
    /// for everything that Python schedules with call_soon internally.
    void schedule(ReadyNode& node) noexcept { ready_.push(node); }

    TaskBase* current_task() const noexcept { return current_task_; }
    bool debug() const noexcept { return debug_; }
    bool closed() const noexcept { return closed_; }

    /// Throws RuntimeError("Event loop is closed") when closed.
    void check_closed() const;
    /// In debug mode, throws RuntimeError when called from a thread other
    /// than the one running the loop (Python's _check_thread).
    void check_thread() const;

    /// call_exception_handler, reachable from below the loop layer.
    void report(const ExceptionContext& context) noexcept;
    /// Reports an exception that escaped a callback Handle.
    void report_callback_exception(HandleState& handle, std::exception_ptr error) noexcept;

    // Pending tasks, kept alive by the loop until they are done.
    void register_task(TaskBase& task) noexcept;
    void unregister_task(TaskBase& task) noexcept;
    template <class Fn>
    void for_each_task(Fn&& fn) {
        tasks_.for_each(fn);
    }

    void register_resource(LoopResource& resource) noexcept { resources_.push_back(resource); }

    // Async generators that started and have not finished (shutdown_asyncgens).
    void register_asyncgen(AsyncGenBase& generator) noexcept;
    bool asyncgens_shutdown_called() const noexcept { return asyncgens_shutdown_called_; }

    /// Called when a scheduled TimerHandle is cancelled (for heap compaction).
    void timer_cancelled() noexcept { ++cancelled_timers_; }

    /// Whether `core` is a loop that has not been destroyed; used only on the
    /// rare path where a future outlives its loop and must report something.
    static bool alive(const LoopCore* core) noexcept;

  protected:
    LoopCore();
    ~LoopCore();

    friend class TaskBase;

    ReadyQueue ready_;
    TaskBase* current_task_ = nullptr;
    IntrusiveList<TaskBase, AllTasksTag> tasks_;
    IntrusiveList<AsyncGenBase, AsyncGenTag> asyncgens_;
    IntrusiveList<LoopResource, ResourceTag> resources_;
    bool asyncgens_shutdown_called_ = false;
    std::size_t cancelled_timers_ = 0;
    bool debug_ = false;
    bool closed_ = false;
};

/// The loop running on this thread, or nullptr.
ASYNCIO_PER_THREAD(LoopCore*, running_loop);

/// The loop a Future() without a loop binds to: the running loop, else the
/// policy's current loop (get_event_loop()).
ASYNCIO_EXPORT LoopCore& current_loop_core();

}  // namespace detail
}  // namespace asyncio
