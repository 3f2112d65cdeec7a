// asyncio.Timeout's state machine (Lib/asyncio/timeouts.py).
#include "asyncio/timeouts.hpp"

#include "asyncio/tasks.hpp"

namespace asyncio {

struct Timeout::State {
    enum class Phase { created, entered, expiring, expired, exited };

    Phase phase = Phase::created;
    std::optional<double> when;
    std::optional<Handle> handler;  // a TimerHandle, or a Handle when already due
    std::optional<Task<>> task;
    int cancelling = 0;

    void on_timeout() noexcept {
        task->cancel();
        phase = Phase::expiring;
        handler.reset();
    }
};

Timeout::Timeout(std::optional<double> when) : state_(std::make_shared<State>()) {
    state_->when = when;
}

std::optional<double> Timeout::when() const noexcept {
    return state_->when;
}

bool Timeout::expired() const noexcept {
    return state_->phase == State::Phase::expiring || state_->phase == State::Phase::expired;
}

void Timeout::reschedule(std::optional<double> when) {
    State& s = *state_;
    if (s.phase != State::Phase::entered) {
        // CPython's state names: created, active, expiring, expired, finished.
        switch (s.phase) {
            case State::Phase::created:
                throw RuntimeError("Timeout has not been entered");
            case State::Phase::expiring:
                throw RuntimeError("Cannot change state of expiring Timeout");
            case State::Phase::expired:
                throw RuntimeError("Cannot change state of expired Timeout");
            default:
                throw RuntimeError("Cannot change state of finished Timeout");
        }
    }
    s.when = when;
    if (s.handler) s.handler->cancel();
    s.handler.reset();
    if (!when) return;
    EventLoop& loop = get_running_loop();
    // The handler holds the state alive until it runs or is cancelled.
    auto fire = [state = state_]() noexcept { state->on_timeout(); };
    if (*when <= loop.time()) {
        s.handler = loop.call_soon(fire);
    } else {
        s.handler = loop.call_at(*when, fire);
    }
}

void Timeout::enter(detail::LibraryKey) {
    State& s = *state_;
    if (s.phase != State::Phase::created) throw RuntimeError("Timeout has already been entered");
    std::optional<Task<>> task = current_task();
    if (!task) throw RuntimeError("Timeout should be used inside a task");
    s.phase = State::Phase::entered;
    s.cancelling = task->cancelling();
    s.task = std::move(task);
    reschedule(s.when);
}

void Timeout::exit(detail::LibraryKey, std::exception_ptr& error) noexcept {
    State& s = *state_;
    if (s.handler) {
        s.handler->cancel();
        s.handler.reset();
    }
    if (s.phase == State::Phase::expiring) {
        s.phase = State::Phase::expired;
        // No newer cancel request than ours: the CancelledError is ours to
        // turn into TimeoutError.
        if (s.task->uncancel() <= s.cancelling && error) {
            try {
                std::rethrow_exception(error);
            } catch (const CancelledError&) {
                error = std::make_exception_ptr(TimeoutError());
            } catch (...) {
            }
        }
    } else if (s.phase == State::Phase::entered) {
        s.phase = State::Phase::exited;
    }
    s.task.reset();
}

namespace detail {

double deadline_after(double delay_seconds) {
    return get_running_loop().time() + delay_seconds;
}

}  // namespace detail
}  // namespace asyncio
