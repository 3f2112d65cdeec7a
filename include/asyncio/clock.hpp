// A virtual clock for event loops under test: CPython's test_utils.TestLoop
// time (advance_time) with tokio's paused time (auto-advance).
//
//     asyncio::TestClock clock;                 // at 0 s, auto-advancing
//     asyncio::run(main(), {.clock = &clock});  // sleep(1h) returns at once
//
// A loop on a TestClock reads loop.time() and schedules its timers on it
// instead of the monotonic clock. The clock moves only when advance_time()
// is called or, with auto-advance, when the loop is idle: then it jumps to
// the next timer instead of sleeping until it. Idle means that no callback
// is ready and that polling the backend without blocking delivered nothing
// (no I/O completion, no call_soon_threadsafe). Executor work holds the
// clock, as tokio's spawn_blocking does: the loop waits for it in wall time,
// up to the next timer. I/O still in flight does not: a timeout around a
// read from a real peer fires as soon as the loop has nothing else to do.
#pragma once

#include <chrono>
#include <cstdint>

#include "asyncio/export.hpp"

namespace asyncio {

class EventLoop;

/// A clock that moves only when told to, for deterministic tests of timers
/// and timeouts; see RunOptions::clock and EventLoop::set_clock.
///
/// A clock serves one loop at a time. advance_time() may be called from the
/// loop's thread (in a callback or a task) or while no loop runs on it;
/// other threads go through call_soon_threadsafe.
class ASYNCIO_EXPORT TestClock {
  public:
    /// A clock at 0 seconds. With `auto_advance`, an idle loop jumps to its
    /// next timer; without, time moves only through advance_time() and an
    /// idle loop waits for I/O or a call_soon_threadsafe.
    explicit TestClock(bool auto_advance = true) noexcept : auto_advance_(auto_advance) {}
    TestClock(const TestClock&) = delete;
    TestClock& operator=(const TestClock&) = delete;

    /// The current time in seconds: what loop.time() returns.
    double time() const noexcept { return static_cast<double>(now_ns_) / 1e9; }

    /// TestLoop.advance_time: moves the clock forward. Timers that become
    /// due run in the loop's next iteration. std::invalid_argument if
    /// `seconds` is negative or NaN.
    void advance_time(double seconds);
    template <class Rep, class Period>
    void advance_time(std::chrono::duration<Rep, Period> delay) {
        advance_time(std::chrono::duration<double>(delay).count());
    }

    bool auto_advance() const noexcept { return auto_advance_; }
    void set_auto_advance(bool enabled) noexcept { auto_advance_ = enabled; }

  private:
    friend class EventLoop;

    std::int64_t now_ns_ = 0;
    bool auto_advance_;
};

}  // namespace asyncio
