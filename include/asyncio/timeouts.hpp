// asyncio.timeout, asyncio.timeout_at and asyncio.Timeout
// (Lib/asyncio/timeouts.py).
//
//     // async with asyncio.timeout(10): await work()
//     co_await asyncio::timeout(10s, work());
//
//     // async with asyncio.timeout(None) as cm: cm.reschedule(...); await work()
//     co_await asyncio::timeout_at(std::nullopt, [&](asyncio::Timeout cm) -> asyncio::Coro<> {
//         cm.reschedule(asyncio::get_running_loop().time() + 5);
//         co_await work();
//     });
//
// When the deadline passes, the task running the body is cancelled; if the
// cancellation comes back out of the body, timeout() turns it into
// TimeoutError. A cancellation from anyone else still propagates as
// CancelledError (cancelling()/uncancel() tell the two apart).
#pragma once

#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "asyncio/coro.hpp"
#include "asyncio/export.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

/// asyncio.Timeout: the deadline of one timeout() scope. A cheap handle:
/// copies refer to the same timeout.
class ASYNCIO_EXPORT Timeout {
  public:
    /// A timeout with deadline `when` (loop.time() seconds; nullopt: none),
    /// not entered yet.
    explicit Timeout(std::optional<double> when);

    /// The deadline, nullopt if there is none.
    std::optional<double> when() const noexcept;
    /// Moves the deadline (nullopt removes it). RuntimeError unless the
    /// timeout is in force: "Timeout has not been entered", or "Cannot
    /// change state of expiring/expired/finished Timeout".
    void reschedule(std::optional<double> when);
    /// Whether the deadline passed and the body was cancelled for it.
    bool expired() const noexcept;

    /// Library use: `async with` entry. RuntimeError outside a task or if
    /// already entered.
    void enter(detail::LibraryKey);
    /// Library use: `async with` exit; `error` is what the body threw (or
    /// null) and becomes what the scope throws (TimeoutError if the body was
    /// cancelled by this timeout).
    void exit(detail::LibraryKey, std::exception_ptr& error) noexcept;

  private:
    struct State;
    std::shared_ptr<State> state_;
};

namespace detail {

template <class T>
Coro<T> run_with_timeout(Timeout cm, Coro<T> body) {
    try {
        cm.enter(library_key);
    } catch (...) {
        body.close();  // refused before it started: not "never awaited"
        throw;
    }
    Outcome<T> outcome = co_await try_await(std::move(body));
    std::exception_ptr error = outcome.exception();
    cm.exit(library_key, error);  // may turn the body's CancelledError into TimeoutError
    if (error) std::rethrow_exception(error);
    co_return std::move(outcome).get();
}

template <class F>
using timeout_body_result_t = awaitable_result_t<std::invoke_result_t<F&, Timeout>>;

template <class F>
concept TimeoutBody =
    std::invocable<F&, Timeout> && requires { typename timeout_body_result_t<F>; };

// Keeps `body` (often a lambda) alive in this frame until its coroutine ends.
template <class F>
Coro<timeout_body_result_t<F>> run_body_with_timeout(Timeout cm, F body) {
    co_return co_await run_with_timeout(cm, body(cm));
}

ASYNCIO_EXPORT double deadline_after(double delay_seconds);

}  // namespace detail

/// `async with asyncio.timeout_at(when)`: runs `body` with a deadline in
/// loop.time() seconds (nullopt: none).
template <class T>
Coro<T> timeout_at(std::optional<double> when, Coro<T> body) {
    return detail::run_with_timeout(Timeout(when), std::move(body));
}

/// `async with asyncio.timeout(delay)`: runs `body` with a deadline `delay`
/// from now. TimeoutError if it expires.
template <class Rep, class Period, class T>
Coro<T> timeout(std::chrono::duration<Rep, Period> delay, Coro<T> body) {
    return timeout_at(detail::deadline_after(std::chrono::duration<double>(delay).count()),
                      std::move(body));
}

/// timeout(seconds); nullopt means no deadline.
template <class T>
Coro<T> timeout(std::optional<double> delay_seconds, Coro<T> body) {
    return timeout_at(delay_seconds ? std::optional<double>(detail::deadline_after(*delay_seconds))
                                    : std::nullopt,
                      std::move(body));
}

/// The forms that give the body the Timeout (`async with ... as cm`):
/// `body` is called with it and must return a Coro; it is kept alive until
/// that coroutine finishes.
template <detail::TimeoutBody F>
Coro<detail::timeout_body_result_t<F>> timeout_at(std::optional<double> when, F body) {
    return detail::run_body_with_timeout(Timeout(when), std::move(body));
}
template <class Rep, class Period, detail::TimeoutBody F>
Coro<detail::timeout_body_result_t<F>> timeout(std::chrono::duration<Rep, Period> delay, F body) {
    return timeout_at(detail::deadline_after(std::chrono::duration<double>(delay).count()),
                      std::move(body));
}
template <detail::TimeoutBody F>
Coro<detail::timeout_body_result_t<F>> timeout(std::optional<double> delay_seconds, F body) {
    return timeout_at(delay_seconds ? std::optional<double>(detail::deadline_after(*delay_seconds))
                                    : std::nullopt,
                      std::move(body));
}

}  // namespace asyncio
