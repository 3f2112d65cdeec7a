// Synchronization primitives (Lib/asyncio/locks.py): Lock, Event, Condition,
// Semaphore, BoundedSemaphore and Barrier.
//
//     asyncio::Lock lock;
//     {
//         auto held = co_await lock;   // async with lock:
//         ...
//     }                                // released here, also by an exception
//
// As in Python they are single-threaded and not bound to a loop until a task
// first has to wait on one; waiting on it from another loop then throws
// RuntimeError. Waiters are woken in FIFO order through the ready queue,
// never inline, and a waiter that is cancelled after it was chosen passes
// its turn on, so a cancellation never loses a wake-up (CPython 3.13).
// Waiting allocates nothing: the waiter node lives in the awaiter, inside
// the waiting coroutine's frame.
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/detail/intrusive.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"
#include "asyncio/log.hpp"
#include "asyncio/outcome.hpp"

namespace asyncio {

class Lock;
class Condition;
class Semaphore;

namespace detail {
class SyncWaiter;
class LockAwaiter;
class EventAwaiter;
class ConditionAwaiter;
class SemaphoreAwaiter;
template <class Awaiter, class Primitive>
class GuardedAwaiter;
/// The waiters of one primitive, in arrival order.
using WaiterList = IntrusiveList<SyncWaiter, WaiterTag>;
}  // namespace detail

/// What `co_await lock` (or a Semaphore, Condition) returns: the body of
/// Python's `async with lock:` is the guard's scope. Move-only; releases
/// the primitive when destroyed.
template <class L>
class [[nodiscard]] LockGuard {
  public:
    /// Adopts `primitive`, which the caller has acquired.
    explicit LockGuard(L& primitive) noexcept : held_(&primitive) {}
    LockGuard(LockGuard&& other) noexcept : held_(std::exchange(other.held_, nullptr)) {}
    LockGuard& operator=(LockGuard&& other) noexcept {
        if (this != &other) {
            reset();
            held_ = std::exchange(other.held_, nullptr);
        }
        return *this;
    }
    LockGuard(const LockGuard&) = delete;
    LockGuard& operator=(const LockGuard&) = delete;
    ~LockGuard() { reset(); }

    /// Releases now instead of at scope end (Python's `release()`, not
    /// std::unique_lock's); throws what the primitive's release() throws.
    void release() {
        if (held_ != nullptr) std::exchange(held_, nullptr)->release();
    }
    /// False once released or moved from.
    bool owns() const noexcept { return held_ != nullptr; }
    explicit operator bool() const noexcept { return owns(); }

  private:
    void reset() noexcept;

    L* held_;
};

/// asyncio.Lock: mutual exclusion between tasks. Not owned by a task: any
/// task may release it. Fair: once a release has chosen the next waiter, a
/// newcomer cannot take the lock before it.
class Lock {
  public:
    Lock() noexcept = default;
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

    /// `auto held = co_await lock;`: acquires, waiting if needed, and returns
    /// a guard that releases at scope end (async with lock).
    detail::GuardedAwaiter<detail::LockAwaiter, Lock> operator co_await() noexcept;
    /// Acquires, waiting if needed; pair it with release().
    Coro<void> acquire();
    /// Releases and lets the first waiter in; RuntimeError if not locked.
    void release();
    bool locked() const noexcept { return locked_; }
    /// Python's repr: "<asyncio.Lock object at 0x... [locked, waiters:1]>".
    std::string repr() const;

  private:
    friend class detail::LockAwaiter;

    bool try_acquire() noexcept {
        // A waiter already chosen (woken_) or still queued goes first.
        if (locked_ || woken_ != 0 || !waiters_.empty()) return false;
        locked_ = true;
        return true;
    }
    void wake_up_first() noexcept;
    void bind(detail::LoopCore& loop);

    friend class Condition;

    detail::WaiterList waiters_;  // not yet chosen
    std::size_t woken_ = 0;       // chosen, not yet resumed: at most one
    detail::LoopCore* loop_ = nullptr;
    /// A task freed inside Condition.wait() (lock released, not re-acquired):
    /// its guard's release, in the same teardown, must not free the lock
    /// under whoever holds it now.
    detail::TaskBase* unheld_by_ = nullptr;
    bool locked_ = false;
};

/// asyncio.Event: a flag that tasks can wait for. set() wakes every waiter;
/// a wait() on a set event returns at once.
class Event {
  public:
    Event() noexcept = default;
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;

    /// Waits until the flag is set.
    Coro<void> wait();
    /// Sets the flag and wakes every waiter.
    void set() noexcept;
    void clear() noexcept { value_ = false; }
    bool is_set() const noexcept { return value_; }
    /// Python's repr: "<asyncio.Event object at 0x... [unset, waiters:2]>".
    std::string repr() const;

  private:
    friend class detail::EventAwaiter;

    void bind(detail::LoopCore& loop);

    detail::WaiterList waiters_;
    detail::LoopCore* loop_ = nullptr;
    bool value_ = false;
};

/// asyncio.Condition: a condition variable over a Lock, its own or one
/// shared with other conditions (`Condition(&lock)`).
class Condition {
  public:
    /// Uses `lock` (which must outlive the condition), or a lock of its own.
    explicit Condition(Lock* lock = nullptr) noexcept
        : lock_(lock != nullptr ? lock : &own_lock_) {}
    Condition(const Condition&) = delete;
    Condition& operator=(const Condition&) = delete;

    /// `auto held = co_await cond;`: acquires the lock (async with cond).
    detail::GuardedAwaiter<detail::LockAwaiter, Condition> operator co_await() noexcept;
    Coro<void> acquire() { return lock_->acquire(); }
    void release() { lock_->release(); }
    bool locked() const noexcept { return lock_->locked(); }

    /// Releases the lock, waits to be notified, and re-acquires the lock
    /// before returning or throwing, even when cancelled. RuntimeError if
    /// the lock is not held. May wake spuriously: re-check the state.
    Coro<void> wait();
    /// Waits until `predicate()` is true (checked first, and after each wake-up).
    template <class P>
    Coro<void> wait_for(P predicate);
    /// Wakes up to `n` waiters; RuntimeError if the lock is not held.
    void notify(std::size_t n = 1);
    void notify_all();
    /// Python's repr: "<asyncio.Condition object at 0x... [locked, waiters:1]>".
    std::string repr() const;

  private:
    friend class detail::ConditionAwaiter;

    void wake(std::size_t n) noexcept;
    void bind(detail::LoopCore& loop);

    Lock own_lock_;
    Lock* lock_;
    detail::WaiterList waiters_;
    detail::LoopCore* loop_ = nullptr;
};

/// asyncio.Semaphore: a counter of free slots; acquire() takes one, waiting
/// while there is none, release() gives one back. FIFO: a newcomer waits
/// while earlier waiters have not run yet, even if a slot is free.
class Semaphore {
  public:
    explicit Semaphore(std::size_t value = 1) noexcept : value_(value) {}
    /// std::invalid_argument (Python's ValueError) if `value` is negative.
    template <std::signed_integral I>
    explicit Semaphore(I value)
        : Semaphore(checked(value, "Semaphore initial value must be >= 0")) {}
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    virtual ~Semaphore() = default;

    /// `auto held = co_await sem;`: acquires and returns a guard (async with sem).
    detail::GuardedAwaiter<detail::SemaphoreAwaiter, Semaphore> operator co_await() noexcept;
    Coro<void> acquire();
    /// Gives a slot back and wakes the first waiter. Virtual so that a
    /// BoundedSemaphore used as a Semaphore still checks its bound.
    virtual void release();
    /// Whether acquire() would wait.
    bool locked() const noexcept { return value_ == 0 || woken_ != 0 || !waiters_.empty(); }
    /// Python's repr: "<asyncio.Semaphore object at 0x... [unlocked, value:2]>".
    std::string repr() const;

  protected:
    template <class I>
    static std::size_t checked(I value, const char* message) {
        if (value < 0) throw std::invalid_argument(message);
        return static_cast<std::size_t>(value);
    }
    std::size_t value() const noexcept { return value_; }
    const char* kind_ = "Semaphore";

  private:
    friend class detail::SemaphoreAwaiter;

    bool wake_up_next() noexcept;
    /// After a wake-up: let in as many FIFO-blocked waiters as slots allow.
    void wake_up_all_allowed() noexcept {
        while (value_ > 0 && wake_up_next()) {
        }
    }
    void bind(detail::LoopCore& loop);

    // A woken waiter's slot is already taken off value_ on its behalf.
    std::size_t value_;
    detail::WaiterList waiters_;
    std::size_t woken_ = 0;
    detail::LoopCore* loop_ = nullptr;
};

/// asyncio.BoundedSemaphore: a Semaphore whose release() refuses to go above
/// the initial value (std::invalid_argument, Python's ValueError).
class BoundedSemaphore : public Semaphore {
  public:
    explicit BoundedSemaphore(std::size_t value = 1) noexcept : Semaphore(value), bound_(value) {
        kind_ = "BoundedSemaphore";
    }
    template <std::signed_integral I>
    explicit BoundedSemaphore(I value)
        : BoundedSemaphore(checked(value, "Semaphore initial value must be >= 0")) {}

    void release() override {
        if (value() >= bound_) {
            throw std::invalid_argument("BoundedSemaphore released too many times");
        }
        Semaphore::release();
    }

  private:
    std::size_t bound_;
};

/// asyncio.Barrier: `parties` tasks wait() until all of them have arrived,
/// then all proceed; each gets its arrival index. Reusable; reset() and
/// abort() make the current waiters throw BrokenBarrierError.
class Barrier {
  public:
    /// std::invalid_argument (Python's ValueError) if `parties` is 0.
    explicit Barrier(std::size_t parties) : parties_(checked(parties)) {}
    template <std::signed_integral I>
    explicit Barrier(I parties) : Barrier(checked(parties)) {}
    Barrier(const Barrier&) = delete;
    Barrier& operator=(const Barrier&) = delete;

    /// Waits until `parties()` tasks wait; returns this task's arrival index
    /// (0 to parties() - 1). BrokenBarrierError if the barrier is broken,
    /// or is reset or aborted while waiting.
    Coro<std::size_t> wait();
    /// Back to the initial state; current waiters get BrokenBarrierError.
    Coro<void> reset();
    /// Breaks the barrier: current and future waiters get BrokenBarrierError.
    Coro<void> abort();

    std::size_t parties() const noexcept { return parties_; }
    /// Tasks waiting for the barrier to fill.
    std::size_t n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
    bool broken() const noexcept { return state_ == State::broken; }
    /// Python's repr: "<asyncio.Barrier object at 0x... [filling, waiters:2/5]>".
    std::string repr() const;

  private:
    enum class State { filling, draining, resetting, broken };

    template <class I>
    static std::size_t checked(I parties) {
        if (parties < 1) throw std::invalid_argument("parties must be >= 1");
        return static_cast<std::size_t>(parties);
    }
    /// The part of wait() between arriving (as the `index`th task) and
    /// leaving: release the others if this is the last arrival, else wait
    /// to be released.
    Coro<void> pass(std::size_t index);
    /// The last task to leave a draining or resetting barrier refills it.
    void leave();

    Condition cond_;
    std::size_t parties_;
    std::size_t count_ = 0;  // tasks inside wait()
    State state_ = State::filling;
};

// -- implementation ---------------------------------------------------------------------

namespace detail {

enum class WaitState : std::uint8_t {
    idle,       // not suspended (never, or no longer)
    waiting,    // linked in the primitive's list
    woken,      // chosen and scheduled; unlinked unless the primitive keeps it
    cancelled,  // cancelled while waiting; unlinked and scheduled
};

/// A leaf awaiter that waits in a primitive's WaiterList (the Waiter
/// protocol of future_state.hpp). Both ways out of the list, a wake-up and a
/// cancellation, go through the ready queue, so each suspension is
/// scheduled exactly once.
class SyncWaiter : public Waiter {
  public:
    SyncWaiter() noexcept = default;
    SyncWaiter(const SyncWaiter&) = delete;
    SyncWaiter& operator=(const SyncWaiter&) = delete;

    /// Ends the wait: the task resumes from the ready queue, never inline.
    void wake() noexcept {
        state_ = WaitState::woken;
        task->loop().schedule(*this);
    }

  protected:
    /// Links this waiter at the back of `list` and suspends the running task on it.
    void suspend_in(WaiterList& list, TaskBase& current, std::coroutine_handle<> at) noexcept {
        list.push_back(*this);
        state_ = WaitState::waiting;
        current.suspend_on(*this, at, &cancel_wait);
    }

    /// The state on resumption; the awaiter is idle afterwards.
    WaitState finish() noexcept { return std::exchange(state_, WaitState::idle); }

    /// Throws CancelledError when the task must be cancelled at this
    /// resumption: injected by the task (cancelled after it was woken) or
    /// because the wait itself was cancelled.
    void resume_or_throw(WaitState was) {
        task->resume_point();
        if (was == WaitState::cancelled) throw CancelledError(task->cancel_message());
    }

    WaitState state_ = WaitState::idle;

  private:
    // Only a waiter still in its list can be cancelled: once chosen, the
    // task's step throws CancelledError instead (must_cancel), and the
    // awaiter passes its turn on.
    static bool cancel_wait(Waiter& waiter, const std::string&) noexcept {
        auto& self = node_cast<SyncWaiter>(waiter);
        if (self.state_ != WaitState::waiting) return false;
        self.Hook<WaiterTag>::unlink();
        self.state_ = WaitState::cancelled;
        self.task->loop().schedule(self);
        return true;
    }
};

/// TaskBase::running() with its common case inline: a wait is on the hot path.
inline TaskBase& running_task() {
    if (LoopCore* loop = running_loop(); loop != nullptr) {
        if (TaskBase* task = loop->current_task()) return *task;
    }
    return TaskBase::running();  // throws the RuntimeError that fits
}

/// Binds a primitive to `loop` on first use (Python's _LoopBoundMixin).
template <class Primitive>
void bind_or_throw(LoopCore*& bound, LoopCore& loop, const Primitive& self) {
    if (bound == nullptr) {
        bound = &loop;
    } else if (bound != &loop) {
        throw RuntimeError(self.repr() + " is bound to a different event loop");
    }
}

/// Reports an exception thrown by a release at scope end: a destructor
/// must not throw, and Python would have raised it from __aexit__.
ASYNCIO_EXPORT void report_release_error(std::exception_ptr error) noexcept;

/// `co_await primitive`: the acquiring awaiter, returning a guard.
template <class Awaiter, class Primitive>
class GuardedAwaiter : public Awaiter {
  public:
    template <class Target>
    GuardedAwaiter(Primitive& guarded, Target& target) noexcept
        : Awaiter(target), guarded_(guarded) {}

    LockGuard<Primitive> await_resume() {
        Awaiter::await_resume();
        return LockGuard<Primitive>(guarded_);
    }

  private:
    Primitive& guarded_;
};

class LockAwaiter : public SyncWaiter {
  public:
    explicit LockAwaiter(Lock& lock) noexcept : lock_(lock) {}
    ~LockAwaiter() {
        if (state_ == WaitState::waiting) Hook<WaiterTag>::unlink();
        if (state_ == WaitState::woken) give_turn_away();
    }

    bool await_ready() noexcept { return lock_.try_acquire(); }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = running_task();
        lock_.bind(current.loop());
        suspend_in(lock_.waiters_, current, at);
    }
    void await_resume() {
        if (state_ == WaitState::idle) return;  // acquired without waiting
        if (state_ == WaitState::woken) --lock_.woken_;
        const WaitState was = finish();
        try {
            resume_or_throw(was);
        } catch (...) {
            // Chosen, then cancelled: the lock must not stay free with
            // waiters queued behind a turn nobody takes.
            if (was == WaitState::woken && !lock_.locked_) lock_.wake_up_first();
            throw;
        }
        lock_.locked_ = true;
    }

  private:
    void give_turn_away() noexcept {
        --lock_.woken_;
        state_ = WaitState::idle;
        if (!lock_.locked_) lock_.wake_up_first();
    }

    Lock& lock_;
};

class EventAwaiter : public SyncWaiter {
  public:
    explicit EventAwaiter(Event& event) noexcept : event_(event) {}
    ~EventAwaiter() {
        if (state_ == WaitState::waiting) Hook<WaiterTag>::unlink();
    }

    bool await_ready() const noexcept { return event_.value_; }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = running_task();
        event_.bind(current.loop());
        suspend_in(event_.waiters_, current, at);
    }
    // set() wakes every waiter, so a cancelled one has no turn to pass on.
    void await_resume() {
        if (state_ == WaitState::idle) return;
        resume_or_throw(finish());
    }

  private:
    Event& event_;
};

class ConditionAwaiter : public SyncWaiter {
  public:
    explicit ConditionAwaiter(Condition& cond) noexcept : cond_(cond) {}
    ~ConditionAwaiter() {
        if (state_ == WaitState::waiting) Hook<WaiterTag>::unlink();
    }

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = running_task();
        suspend_in(cond_.waiters_, current, at);  // Condition::wait bound the loop
    }
    // Condition::wait passes a lost notification on, once it holds the lock.
    void await_resume() { resume_or_throw(finish()); }

  private:
    Condition& cond_;
};

class SemaphoreAwaiter : public SyncWaiter {
  public:
    explicit SemaphoreAwaiter(Semaphore& sem) noexcept : sem_(sem) {}
    ~SemaphoreAwaiter() {
        if (state_ == WaitState::waiting) Hook<WaiterTag>::unlink();
        if (state_ == WaitState::woken) {
            --sem_.woken_;
            ++sem_.value_;  // the slot taken on our behalf
            sem_.wake_up_all_allowed();
        }
    }

    bool await_ready() noexcept {
        if (sem_.locked()) return false;
        --sem_.value_;
        return true;
    }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = running_task();
        sem_.bind(current.loop());
        suspend_in(sem_.waiters_, current, at);
    }
    void await_resume() {
        if (state_ == WaitState::idle) return;  // acquired without waiting
        if (state_ == WaitState::woken) --sem_.woken_;
        const WaitState was = finish();
        try {
            resume_or_throw(was);
        } catch (...) {
            if (was == WaitState::woken) ++sem_.value_;  // give back the slot we were given
            sem_.wake_up_all_allowed();
            throw;
        }
        sem_.wake_up_all_allowed();
    }

  private:
    Semaphore& sem_;
};

}  // namespace detail

template <class L>
void LockGuard<L>::reset() noexcept {
    if (held_ == nullptr) return;
    L* held = std::exchange(held_, nullptr);
    try {
        held->release();
    } catch (...) {
        detail::report_release_error(std::current_exception());
    }
}

// -- Lock --------------------------------------------------------------------------------

inline detail::GuardedAwaiter<detail::LockAwaiter, Lock> Lock::operator co_await() noexcept {
    return {*this, *this};
}

inline Coro<void> Lock::acquire() {
    detail::LockAwaiter awaiter(*this);
    co_await awaiter;
}

inline void Lock::release() {
    if (unheld_by_ != nullptr) {
        const bool teardown_of_that_wait = unheld_by_ == detail::freeing_task();
        unheld_by_ = nullptr;
        if (teardown_of_that_wait) return;
    }
    if (!locked_) throw RuntimeError("Lock is not acquired.");
    locked_ = false;
    wake_up_first();
}

inline void Lock::wake_up_first() noexcept {
    if (woken_ != 0) return;  // the chosen waiter has not run yet
    if (detail::SyncWaiter* first = waiters_.pop_front()) {
        ++woken_;
        first->wake();
    }
}

inline void Lock::bind(detail::LoopCore& loop) {
    detail::bind_or_throw(loop_, loop, *this);
}

inline std::string Lock::repr() const {
    std::string extra = locked_ ? "locked" : "unlocked";
    if (const std::size_t n = waiters_.size() + woken_; n != 0)
        extra += fmt::format(", waiters:{}", n);
    return fmt::format("<asyncio.Lock object at {} [{}]>", fmt::ptr(this), extra);
}

// -- Event -------------------------------------------------------------------------------

inline Coro<void> Event::wait() {
    detail::EventAwaiter awaiter(*this);
    co_await awaiter;
}

inline void Event::set() noexcept {
    if (value_) return;
    value_ = true;
    while (detail::SyncWaiter* waiter = waiters_.pop_front())
        waiter->wake();
}

inline void Event::bind(detail::LoopCore& loop) {
    detail::bind_or_throw(loop_, loop, *this);
}

inline std::string Event::repr() const {
    std::string extra = value_ ? "set" : "unset";
    if (const std::size_t n = waiters_.size(); n != 0) extra += fmt::format(", waiters:{}", n);
    return fmt::format("<asyncio.Event object at {} [{}]>", fmt::ptr(this), extra);
}

// -- Condition ---------------------------------------------------------------------------

inline detail::GuardedAwaiter<detail::LockAwaiter, Condition>
    Condition::operator co_await() noexcept {
    return {*this, *lock_};
}

inline Coro<void> Condition::wait() {
    if (!locked()) throw RuntimeError("cannot wait on un-acquired lock");
    bind(detail::running_task().loop());  // before releasing, as Python creates its future
    release();
    // Freed here, at loop close, the task does not hold the lock: the guard
    // that releases it next in the same teardown must leave it alone.
    struct Unheld {
        Lock& lock;
        bool held = false;
        ~Unheld() {
            if (!held && detail::freeing_task() != nullptr)
                lock.unheld_by_ = detail::freeing_task();
        }
    } unheld{*lock_};
    std::exception_ptr error;
    {
        detail::ConditionAwaiter awaiter(*this);
        Outcome<void> notified = co_await detail::try_await(awaiter);
        error = notified.exception();
    }
    // Re-acquire even when cancelled, or the caller's guard would release a
    // lock it does not hold. Further cancellations wait again; the most
    // recent one is what propagates.
    for (;;) {
        detail::LockAwaiter reacquire(*lock_);
        Outcome<void> reacquired = co_await detail::try_await(reacquire);
        if (reacquired.has_value()) break;
        error = reacquired.exception();
        if (!detail::is_cancellation(error)) break;
    }
    unheld.held = true;
    if (error) {
        // The error may have come after a notify chose this task: pass the
        // notification on (at worst a spurious wake-up, which is allowed).
        wake(1);
        std::rethrow_exception(error);
    }
}

template <class P>
Coro<void> Condition::wait_for(P predicate) {
    while (!static_cast<bool>(predicate()))
        co_await wait();
}

inline void Condition::notify(std::size_t n) {
    if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
    wake(n);
}

inline void Condition::notify_all() {
    notify(static_cast<std::size_t>(-1));
}

inline void Condition::wake(std::size_t n) noexcept {
    for (; n != 0; --n) {
        detail::SyncWaiter* waiter = waiters_.pop_front();
        if (waiter == nullptr) return;
        waiter->wake();
    }
}

inline void Condition::bind(detail::LoopCore& loop) {
    detail::bind_or_throw(loop_, loop, *this);
}

inline std::string Condition::repr() const {
    std::string extra = locked() ? "locked" : "unlocked";
    if (const std::size_t n = waiters_.size(); n != 0) extra += fmt::format(", waiters:{}", n);
    return fmt::format("<asyncio.Condition object at {} [{}]>", fmt::ptr(this), extra);
}

// -- Semaphore ---------------------------------------------------------------------------

inline detail::GuardedAwaiter<detail::SemaphoreAwaiter, Semaphore>
    Semaphore::operator co_await() noexcept {
    return {*this, *this};
}

inline Coro<void> Semaphore::acquire() {
    detail::SemaphoreAwaiter awaiter(*this);
    co_await awaiter;
}

inline void Semaphore::release() {
    ++value_;
    wake_up_next();
}

inline bool Semaphore::wake_up_next() noexcept {
    detail::SyncWaiter* first = waiters_.pop_front();
    if (first == nullptr) return false;
    --value_;
    ++woken_;
    first->wake();
    return true;
}

inline void Semaphore::bind(detail::LoopCore& loop) {
    detail::bind_or_throw(loop_, loop, *this);
}

inline std::string Semaphore::repr() const {
    std::string extra = locked() ? "locked" : fmt::format("unlocked, value:{}", value_);
    if (const std::size_t n = waiters_.size() + woken_; n != 0) {
        extra += fmt::format(", waiters:{}", n);
    }
    return fmt::format("<asyncio.{} object at {} [{}]>", kind_, fmt::ptr(this), extra);
}

// -- Barrier -----------------------------------------------------------------------------

inline Coro<std::size_t> Barrier::wait() {
    auto held = co_await cond_;
    // Wait while the previous cycle drains or resets.
    auto admitted = [this] { return state_ != State::draining && state_ != State::resetting; };
    co_await cond_.wait_for(admitted);
    if (state_ == State::broken) throw BrokenBarrierError("Barrier aborted");

    // pass() is made before this task counts itself in, so that only what
    // it does once awaited happens between arriving and leaving.
    Coro<void> passing = pass(count_);
    const std::size_t index = count_++;
    Outcome<void> passed = co_await detail::try_await(std::move(passing));
    --count_;
    leave();
    std::move(passed).get();
    co_return index;
}

inline Coro<void> Barrier::pass(std::size_t index) {
    if (index + 1 == parties_) {
        state_ = State::draining;
        cond_.notify_all();
    } else {
        auto released = [this] { return state_ != State::filling; };
        co_await cond_.wait_for(released);
        if (state_ == State::broken || state_ == State::resetting) {
            throw BrokenBarrierError("Abort or reset of barrier");
        }
    }
}

inline void Barrier::leave() {
    if (count_ != 0) return;
    if (state_ == State::resetting || state_ == State::draining) state_ = State::filling;
    cond_.notify_all();
}

inline Coro<void> Barrier::reset() {
    auto held = co_await cond_;
    if (count_ > 0) {
        if (state_ != State::resetting) state_ = State::resetting;
    } else {
        state_ = State::filling;
    }
    cond_.notify_all();
}

inline Coro<void> Barrier::abort() {
    auto held = co_await cond_;
    state_ = State::broken;
    cond_.notify_all();
}

inline std::string Barrier::repr() const {
    static constexpr const char* names[] = {"filling", "draining", "resetting", "broken"};
    std::string extra = names[static_cast<int>(state_)];
    if (!broken()) extra += fmt::format(", waiters:{}/{}", n_waiting(), parties_);
    return fmt::format("<asyncio.Barrier object at {} [{}]>", fmt::ptr(this), extra);
}

}  // namespace asyncio
