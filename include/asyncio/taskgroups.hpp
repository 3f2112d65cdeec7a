// asyncio.TaskGroup (Lib/asyncio/taskgroups.py): structured concurrency.
//
//     async with asyncio.TaskGroup() as tg:        asyncio::TaskGroup tg;
//         t1 = tg.create_task(a())                 auto t1 = tg.create_task(a());
//         t2 = tg.create_task(b())                 auto t2 = tg.create_task(b());
//                                                  co_await tg.wait();
//
// wait() is `__aexit__`: it waits for every task; the first failure cancels
// the others and the parent, and wait() then throws an ExceptionGroup of
// every failure. A cancellation of the parent from outside cancels the
// children and comes back out as CancelledError. If the block itself can
// throw, use task_group(body), which passes the exception to wait() as
// `async with` does. A group destroyed without wait() cancels its tasks and
// reports it through the loop's exception handler.
#pragma once

#include <exception>
#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

#include "asyncio/coro.hpp"
#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

class ASYNCIO_EXPORT TaskGroup {
  public:
    /// Enters the group (`__aenter__`); RuntimeError outside a task.
    TaskGroup();
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;
    ~TaskGroup();

    /// Creates a task in the group. RuntimeError once the group is shutting
    /// down (a task failed) or finished.
    template <class T>
    Task<T> create_task(Coro<T> coro, TaskOptions opts = {},
                        std::source_location where = std::source_location::current()) {
        if (const char* refusal = refuse_task()) {
            coro.close();
            throw RuntimeError(refusal);
        }
        Task<T> task = loop().create_task(std::move(coro), std::move(opts), where);
        adopt(task);
        return task;
    }

    /// `__aexit__` after a block that ended normally.
    Coro<void> wait();
    /// `__aexit__` after a block that threw `block_error`.
    Coro<void> wait(std::exception_ptr block_error);

  private:
    struct State;
    struct Child;
    EventLoop& loop() const noexcept;
    const char* refuse_task() const noexcept;
    void adopt(const Task<>& task);

    State* state_;  // shared with the children's done nodes (counted)
};

namespace detail {
template <class F>
using task_group_result_t = awaitable_result_t<std::invoke_result_t<F&, TaskGroup&>>;

/// Awaits `block(group)` from inside a coroutine, so that a block that
/// throws before it returns its awaitable fails like one that throws later.
template <class F>
Coro<task_group_result_t<F>> run_block(F& block, TaskGroup& group) {
    co_return co_await block(group);
}
}  // namespace detail

/// The whole `async with asyncio.TaskGroup() as tg:` statement: runs
/// `block(tg)`, then waits for the group even if the block threw, exactly as
/// `__aexit__` would. `block` is kept alive until it finishes.
template <class F>
    requires std::invocable<F&, TaskGroup&>
Coro<detail::task_group_result_t<F>> task_group(F block) {
    using R = detail::task_group_result_t<F>;
    TaskGroup group;
    // Through run_block, so that `block` throwing before it returns its
    // awaitable also ends up in the outcome.
    Outcome<R> outcome = co_await detail::try_await(detail::run_block(block, group));
    std::exception_ptr error = outcome.exception();
    co_await group.wait(error);
    if (error) std::rethrow_exception(error);
    co_return std::move(outcome).get();
}

}  // namespace asyncio
