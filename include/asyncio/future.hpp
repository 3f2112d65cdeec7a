// asyncio.Future (Lib/asyncio/futures.py): a loop-bound result that may not
// be there yet.
//
// Future<T> is a cheap, copyable handle to shared state (intrusive,
// single-threaded reference count), awaited by any number of coroutines:
//
//     asyncio::Future<std::string> fut = loop.create_future<std::string>();
//     loop.call_later(1s, [fut]() mutable { fut.set_result("done"); });
//     std::string s = co_await fut;
//
// Done callbacks run from the ready queue, never inline, exactly as in
// Python. Awaiting a future that is already done does not suspend.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "asyncio/detail/future_state.hpp"
#include "asyncio/detail/library_key.hpp"
#include "asyncio/exceptions.hpp"

namespace asyncio {

class EventLoop;

namespace detail {
template <class T>
class FutureAwaiter;
struct AdoptRef {};
}  // namespace detail

/// Keyword arguments of Future.add_done_callback.
struct DoneCallbackOptions {
    /// The Context the callback runs in; by default a copy of the current
    /// one, taken by add_done_callback.
    std::optional<Context> context{};
};

template <class T = void>
class Future {
  public:
    using value_type = T;

    /// A new pending future bound to the running loop (else to get_event_loop()).
    Future() : state_(new detail::FutureState<T>(detail::current_loop_core())) {}
    Future(const Future& other) noexcept : state_(other.state_) { acquire(); }
    Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    Future& operator=(Future other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }
    ~Future() {
        if (state_ != nullptr) state_->release();
    }

    /// Type erasure: any `Future<U>` is usable as a `Future<>` (result() then
    /// only reports success, failure or cancellation).
    template <class U>
        requires(std::is_void_v<T> && !std::is_void_v<U>)
    Future(const Future<U>& typed) noexcept : state_(typed.state()) {
        acquire();
    }

    bool done() const noexcept { return state_->done(); }
    bool cancelled() const noexcept { return state_->cancelled(); }

    /// The result; throws InvalidStateError if not done, CancelledError if
    /// cancelled, or the exception the future was given. A move-only T is
    /// moved out, so only the first call returns it.
    T result() {
        state_->check_result();
        return value(detail::library_key, detail::ValueReaders::shared);
    }

    /// The exception, nullptr if the future succeeded; throws like result()
    /// when pending or cancelled.
    std::exception_ptr exception() { return state_->exception(); }

    void set_result()
        requires std::is_void_v<T>
    {
        state_->check_settable("set_result");
        if (state_->value_slot() != nullptr) {
            throw InvalidStateError("set_result() without a value on a Future that holds one");
        }
        state_->finish_with_result();
    }

    template <class U = T>
        requires(!std::is_void_v<T>)
    void set_result(U&& value) {
        state_->check_settable("set_result");
        slot().emplace(std::forward<U>(value));
        state_->finish_with_result();
    }

    void set_exception(std::exception_ptr error) { state_->set_exception(std::move(error)); }
    template <class E>
        requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
    void set_exception(E&& error) {
        set_exception(std::make_exception_ptr(std::forward<E>(error)));
    }

    /// Cancels the future if pending; returns false if it was already done.
    bool cancel(std::string msg = {}) noexcept { return state_->cancel(msg); }

    /// Calls `fn(future)` from the ready queue once the future is done (at
    /// once, i.e. soon, if it already is), in `opts.context` or else in a
    /// copy of the context current now. Returns an id for remove_done_callback.
    std::size_t add_done_callback(std::function<void(Future&)> fn, DoneCallbackOptions opts = {}) {
        return state_->add_done_callback(
            [fn = std::move(fn)](detail::FutureBase& base) {
                Future self(&base);
                fn(self);
            },
            opts.context ? &*opts.context : nullptr);
    }
    /// Removes the callback registered under `id`; returns how many were removed.
    std::size_t remove_done_callback(std::size_t id) noexcept {
        return state_->remove_done_callback(id);
    }

    EventLoop& get_loop() const noexcept { return state_->loop().owner(); }

    detail::FutureAwaiter<T> operator co_await() const& noexcept;
    detail::FutureAwaiter<T> operator co_await() && noexcept;

    friend bool operator==(const Future& a, const Future& b) noexcept {
        return a.state_ == b.state_;
    }

    /// Library use: a new reference to `state`, or adopting one.
    explicit Future(detail::FutureBase* state) noexcept : state_(state) { acquire(); }
    Future(detail::FutureBase* state, detail::AdoptRef) noexcept : state_(state) {}
    detail::FutureBase* state() const noexcept { return state_; }

    /// Library use: the value of a finished future, moved out for the sole reader.
    T value(detail::LibraryKey, detail::ValueReaders readers) {
        if constexpr (std::is_void_v<T>) {
            return;
        } else if constexpr (std::is_reference_v<T>) {
            return slot().get();
        } else {
            auto& storage = slot();
            if (!storage.has_value()) {
                throw InvalidStateError("the result of this Future was moved out already");
            }
            if constexpr (std::is_copy_constructible_v<T>) {
                if (readers == detail::ValueReaders::shared) return storage.get();
            }
            return storage.take();
        }
    }

  protected:
    void acquire() noexcept {
        if (state_ != nullptr) state_->add_ref();
    }
    detail::Storage<T>& slot() const noexcept {
        return *static_cast<detail::Storage<T>*>(state_->value_slot());
    }

    detail::FutureBase* state_ = nullptr;
};

namespace detail {

/// The awaiter of `co_await future`: registers with the future and resumes
/// the task once it is done. Cancelling the task cancels the future.
template <class T>
class FutureAwaiter : public Waiter {
  public:
    explicit FutureAwaiter(Future<T> future) noexcept : future_(std::move(future)) {}
    FutureAwaiter(const FutureAwaiter&) = delete;
    FutureAwaiter& operator=(const FutureAwaiter&) = delete;
    ~FutureAwaiter() { Hook<WaiterTag>::unlink(); }

    bool await_ready() const noexcept { return future_.done(); }

    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = TaskBase::running();
        FutureBase& state = *future_.state();
        if (&state.loop() != &current.loop()) {
            throw RuntimeError("Task got Future attached to a different loop");
        }
        if (&state == &current) throw RuntimeError("Task cannot await on itself");
        state.add_waiter(*this);
        current.suspend_on(*this, at, &cancel_future);
    }

    T await_resume() {
        if (task != nullptr) task->resume_point();
        future_.state()->check_result();
        return future_.value(library_key, future_.state()->readers());
    }

  private:
    static bool cancel_future(Waiter& waiter, const std::string& msg) noexcept {
        return node_cast<FutureAwaiter>(waiter).future_.state()->cancel(msg);
    }

    Future<T> future_;
};

}  // namespace detail

template <class T>
detail::FutureAwaiter<T> Future<T>::operator co_await() const& noexcept {
    return detail::FutureAwaiter<T>(*this);
}

template <class T>
detail::FutureAwaiter<T> Future<T>::operator co_await() && noexcept {
    return detail::FutureAwaiter<T>(std::move(*this));
}

}  // namespace asyncio
