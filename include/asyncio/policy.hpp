// Event loop policy and the functions that find "the" loop
// (Lib/asyncio/events.py: get_running_loop, get_event_loop, set_event_loop,
// new_event_loop and the policy object behind them).
#pragma once

#include <memory>

#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"

namespace asyncio {

/// asyncio's default event loop policy: one current loop per thread. In the
/// main thread get_event_loop() creates one when none is set (Python 3.13
/// still does, with a DeprecationWarning); in other threads it throws.
/// Subclass it to change which loops new_event_loop() makes.
class ASYNCIO_EXPORT EventLoopPolicy {
  public:
    EventLoopPolicy();
    virtual ~EventLoopPolicy();

    /// The current thread's loop; see the class comment.
    virtual EventLoop& get_event_loop();
    /// Sets the current thread's loop (not owned; nullptr unsets it).
    virtual void set_event_loop(EventLoop* loop);
    /// A new loop on default_backend().
    virtual std::unique_ptr<EventLoop> new_event_loop();

  private:
    struct ThreadState;
    ThreadState& local();
    const unsigned long long id_;  // tells this policy's per-thread state from an earlier one's
};

using DefaultEventLoopPolicy = EventLoopPolicy;

ASYNCIO_EXPORT EventLoopPolicy& get_event_loop_policy();
/// Installs `policy`; nullptr restores the default policy.
ASYNCIO_EXPORT void set_event_loop_policy(std::unique_ptr<EventLoopPolicy> policy);

/// The loop running in this thread; RuntimeError("no running event loop") if none.
ASYNCIO_EXPORT EventLoop& get_running_loop();
/// The running loop if there is one, else the policy's current loop.
ASYNCIO_EXPORT EventLoop& get_event_loop();
ASYNCIO_EXPORT void set_event_loop(EventLoop* loop);
ASYNCIO_EXPORT std::unique_ptr<EventLoop> new_event_loop();

}  // namespace asyncio
