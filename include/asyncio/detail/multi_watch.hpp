// Watching several futures at once, for gather, wait, as_completed and
// TaskGroup: one intrusive link per child in the child's callback list, so
// registering costs one allocation for all children, not one per child.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/export.hpp"
#include "asyncio/future.hpp"
#include "asyncio/handle.hpp"

namespace asyncio::detail {

/// A future that completes according to what its children do.
/// child_done(i) runs from the ready queue once children()[i] is done, as a
/// Python done callback would.
class ASYNCIO_EXPORT MultiWatch : public FutureBase {
  public:
    /// Starts watching `children` (each done child is reported once).
    void watch(std::vector<Future<>> children);
    /// Stops watching; children finishing later are ignored.
    void unwatch() noexcept;
    const std::vector<Future<>>& children() const noexcept { return children_; }
    void* value_slot() const noexcept override { return nullptr; }

  protected:
    explicit MultiWatch(LoopCore& loop) noexcept : FutureBase(loop, Kind::future) {}
    ~MultiWatch() override;

    virtual void child_done(std::size_t index) noexcept = 0;

    std::vector<Future<>> children_;

  private:
    struct Link : Waiter {
        Link() noexcept : Waiter(&on_ready) {}
        static void on_ready(ReadyNode& node, Action action) noexcept;
        MultiWatch* owner = nullptr;
        std::size_t index = 0;
    };
    std::unique_ptr<Link[]> links_;
    std::size_t link_count_ = 0;
    bool watching_ = false;
};

/// gather()'s return_exceptions=False and True.
enum class GatherMode { raise_first_exception, return_exceptions };

/// gather()'s outer future (Python's _GatheringFuture): fails with the first
/// child exception (or CancelledError for a cancelled child) unless
/// return_exceptions; cancelling it cancels the children.
ASYNCIO_EXPORT Future<> make_gather(LoopCore& loop, std::vector<Future<>> children,
                                    GatherMode mode);

enum class WaitMode { first_completed, first_exception, all_completed };

/// wait()'s waiter: done when `mode` is satisfied or after `timeout_ns`.
ASYNCIO_EXPORT Future<> make_wait(LoopCore& loop, std::vector<Future<>> children, WaitMode mode,
                                  std::optional<std::int64_t> timeout_ns);
/// Stops a wait's timer and watching (Python's `finally` in _wait).
ASYNCIO_EXPORT void end_wait(const Future<>& waiter) noexcept;

/// Cancels `future` and waits until it is done, itself cancellable without
/// waiting on `future` directly (Python's _cancel_and_wait).
ASYNCIO_EXPORT Coro<void> cancel_and_wait(Future<> future);

}  // namespace asyncio::detail
