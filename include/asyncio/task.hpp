// asyncio.Task (Lib/asyncio/tasks.py): a Future that drives a coroutine.
//
//     asyncio::Task<int> task = asyncio::create_task(compute(1, 2), {.name = "compute"});
//     int sum = co_await task;
//
// The loop keeps a task alive until it is done, so dropping every handle to
// a running task does not lose it (Python's "keep a reference" trap does not
// exist here). Cancellation follows Python 3.13: cancel(msg) throws
// CancelledError into the coroutine at its suspension point; cancelling()
// and uncancel() count the requests.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/contextvars.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/future.hpp"

namespace asyncio {

/// Keyword arguments of create_task.
struct TaskOptions {
    std::optional<std::string> name{};
    /// The Context the task runs in; by default a copy of the creator's.
    std::optional<Context> context{};
    /// Run the first step inside create_task, before it returns (3.12's
    /// eager tasks), when the loop is running on this thread.
    bool eager_start = false;
};

template <class T = void>
class Task : public Future<T> {
  public:
    Task(const Task&) noexcept = default;
    Task(Task&&) noexcept = default;
    Task& operator=(const Task&) noexcept = default;
    Task& operator=(Task&&) noexcept = default;

    /// Type erasure: any `Task<U>` is usable as a `Task<>`.
    template <class U>
        requires(std::is_void_v<T> && !std::is_void_v<U>)
    Task(const Task<U>& typed) noexcept : Future<T>(typed.state()) {}

    /// A task's outcome comes from its coroutine: Python's Task raises
    /// RuntimeError on these, and here they do not compile. (Through a
    /// Future<> handle they throw that RuntimeError.)
    template <class... A>
    void set_result(A&&...) = delete;
    template <class... A>
    void set_exception(A&&...) = delete;

    std::string get_name() const { return base().name(); }
    void set_name(std::string name) { base().set_name(std::move(name)); }

    /// How many cancellation requests are pending (Task.cancelling()).
    int cancelling() const noexcept { return base().cancelling(); }
    /// Withdraws one cancellation request; returns how many remain.
    int uncancel() noexcept { return base().uncancel(); }

    /// Where create_task was called.
    std::source_location created_at() const noexcept { return base().created_at(); }

    /// Task.get_context(): the Context the task runs in (the one it was
    /// given, else its own copy of its creator's); sets made through it are
    /// seen by the task.
    Context get_context() const noexcept { return base().context(); }

    /// Task.get_stack(), as far as C++ can see: no frames, but where this
    /// task and the tasks awaiting it were created, oldest (the outermost
    /// awaiting task) first and this task last. Empty once the task is done.
    /// `limit` keeps the newest entries.
    std::vector<std::source_location> get_stack(std::optional<std::size_t> limit = {}) const {
        return base().stack(limit);
    }
    /// Task.print_stack(): get_stack() printed in traceback style to `file`.
    void print_stack(std::optional<std::size_t> limit = {}, std::FILE* file = stderr) const {
        base().print_stack(limit, file);
    }

    /// Library use: adopts a reference to `state`.
    Task(detail::TaskBase* state, detail::AdoptRef) noexcept
        : Future<T>(state, detail::AdoptRef{}) {}
    detail::TaskBase& base() const noexcept {
        return static_cast<detail::TaskBase&>(*this->state_);
    }
};

namespace detail {

/// A Task<T>'s state: the coroutine's root frame and, once done, its value.
template <class T>
class TaskState final : public TaskBase {
  public:
    using Handle = std::coroutine_handle<CoroPromise<T>>;

    // Not noexcept: the task's context is allocated (make_task frees the
    // coroutine if that fails).
    TaskState(LoopCore& loop, Handle root, std::source_location created_at)
        : TaskBase(loop, root, created_at) {}

    [[no_unique_address]] Storage<T> value;  // nothing for void

    void* value_slot() const noexcept override {
        if constexpr (std::is_void_v<T>) {
            return nullptr;
        } else {
            return const_cast<Storage<T>*>(&value);
        }
    }

  private:
    void finish() noexcept override {
        Handle root = Handle::from_address(root_.address());
        CoroPromise<T>& promise = root.promise();
        if (promise.exception()) {
            finish_with_exception(promise.exception());
        } else if (must_cancel_) {  // cancelled right before the coroutine returned
            must_cancel_ = false;
            mark_cancelled(cancel_message_.get());
        } else {
            if constexpr (std::is_void_v<T>) {
                finish_with_result();
            } else {
                value.emplace(promise.take_value());
                finish_with_result();
            }
        }
        root_ = {};
        root.destroy();
    }
};

/// Builds a task for `coro` on `loop` without starting it; the caller
/// applies the options (after the task factory had its say).
template <class T>
Task<T> make_task(LoopCore& loop, Coro<T> coro, std::source_location where) {
    auto root = coro.release(library_key);
    TaskState<T>* state = nullptr;
    try {
        state = new TaskState<T>(loop, root, where);
    } catch (...) {
        root.destroy();
        throw;
    }
    return Task<T>(state, AdoptRef{});
}

}  // namespace detail
namespace detail {
template <class A>
struct AwaitableResult;
template <class T>
struct AwaitableResult<Coro<T>> {
    using type = T;
};
template <class T>
struct AwaitableResult<Future<T>> {
    using type = T;
};
template <class T>
struct AwaitableResult<Task<T>> {
    using type = T;
};
}  // namespace detail

/// The result type of awaiting a Coro<T>, Future<T> or Task<T>: T.
template <class A>
using awaitable_result_t = typename detail::AwaitableResult<std::remove_cvref_t<A>>::type;

}  // namespace asyncio
