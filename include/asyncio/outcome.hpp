// Outcome<T>: a value or an exception, and try_await, which awaits something
// and hands back its Outcome instead of throwing.
//
// C++ forbids co_await in a catch block, so cleanup that must await (Python's
// `finally: await ...`, or `except: await ...; raise`) cannot sit in the
// handler. try_await, modelled on folly's co_awaitTry, moves the exception
// out of the way instead:
//
//     Outcome<int> got = co_await detail::try_await(std::move(body));
//     co_await cleanup();             // runs whatever the body did
//     co_return std::move(got).get(); // its value, or its exception rethrown
//
// gather(return_exceptions, ...) reports each child as an Outcome too.
#pragma once

#include <concepts>
#include <coroutine>
#include <exception>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>
#include <variant>

namespace asyncio {

/// The value an Outcome<T> holds: T itself, std::monostate for void.
template <class T>
using outcome_value_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// A value or an exception: what awaiting something produced. Outcome<void>
/// holds a std::monostate; Outcome<T&> refers to the T.
template <class T>
class Outcome {
    using Stored =
        std::conditional_t<std::is_reference_v<T>,
                           std::reference_wrapper<std::remove_reference_t<T>>, outcome_value_t<T>>;

  public:
    explicit Outcome(std::exception_ptr error)
        : outcome_(std::in_place_index<1>, std::move(error)) {}
    template <class U = outcome_value_t<T>>
        requires std::is_constructible_v<Stored, U&&>
    explicit Outcome(U&& value) : outcome_(std::in_place_index<0>, std::forward<U>(value)) {}

    bool has_value() const noexcept { return outcome_.index() == 0; }
    /// The value; rethrows the exception if there is one.
    outcome_value_t<T>& value() {
        if (!has_value()) std::rethrow_exception(std::get<1>(outcome_));
        return std::get<0>(outcome_);
    }
    /// The exception, nullptr if there is a value.
    std::exception_ptr exception() const noexcept {
        return has_value() ? nullptr : std::get<1>(outcome_);
    }
    /// What the awaited expression would have given: the value (moved out;
    /// nothing for void), or the exception rethrown.
    T get() && {
        if (!has_value()) std::rethrow_exception(std::get<1>(outcome_));
        if constexpr (std::is_void_v<T>) {
            return;
        } else if constexpr (std::is_reference_v<T>) {
            return std::get<0>(outcome_).get();
        } else {
            return std::move(std::get<0>(outcome_));
        }
    }

  private:
    std::variant<Stored, std::exception_ptr> outcome_;
};

namespace detail {

/// Whether `error` is (or derives from) an E.
template <class E>
bool holds_exception(const std::exception_ptr& error) noexcept {
    if (!error) return false;
    try {
        std::rethrow_exception(error);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

template <class A>
concept HasMemberCoAwait = requires(A&& aw) { std::forward<A>(aw).operator co_await(); };

/// The awaiter `co_await aw` uses: the result of aw's operator co_await
/// (a prvalue), or `aw` itself (an lvalue awaiter is used in place).
template <class A>
decltype(auto) awaiter_of(A&& aw) {
    if constexpr (HasMemberCoAwait<A>) {
        return std::forward<A>(aw).operator co_await();
    } else {
        return std::forward<A>(aw);
    }
}

template <class A>
using awaiter_of_t = decltype(awaiter_of(std::declval<A>()));

/// The awaiter of try_await: forwards each step to the wrapped awaiter and
/// turns an exception from any of them into the Outcome that await_resume
/// returns, so that the whole `co_await aw` throws nothing, exactly as if
/// it sat in a `try { ... } catch (...) { error = std::current_exception(); }`.
template <class A>
class TryAwaiter {
    // An awaiter `aw` named by an lvalue is used in place; one made by
    // operator co_await, or given as an rvalue, lives here.
    using Awaiter = std::conditional_t<std::is_lvalue_reference_v<awaiter_of_t<A>>, awaiter_of_t<A>,
                                       std::remove_cvref_t<awaiter_of_t<A>>>;
    using Inner = std::remove_reference_t<Awaiter>;
    using Result = decltype(std::declval<Inner&>().await_resume());
    using Suspend = decltype(std::declval<Inner&>().await_suspend(std::coroutine_handle<>()));

  public:
    using result_type = Result;

    explicit TryAwaiter(A&& aw) noexcept {
        try {
            if constexpr (std::is_lvalue_reference_v<Awaiter>) {
                awaiter_ = &awaiter_of(std::forward<A>(aw));
            } else {
                // A prvalue initializes the slot directly: awaiters need
                // not be movable.
                ::new (static_cast<void*>(&storage_)) Inner(awaiter_of(std::forward<A>(aw)));
                awaiter_ = std::launder(reinterpret_cast<Inner*>(&storage_));
            }
        } catch (...) {
            error_ = std::current_exception();  // Coro's "cannot reuse already awaited"
        }
    }
    TryAwaiter(const TryAwaiter&) = delete;
    TryAwaiter& operator=(const TryAwaiter&) = delete;
    ~TryAwaiter() {
        if constexpr (!std::is_lvalue_reference_v<Awaiter>) {
            if (awaiter_ != nullptr) awaiter_->~Inner();
        }
    }

    bool await_ready() noexcept {
        if (error_) return true;
        try {
            return awaiter_->await_ready();
        } catch (...) {
            error_ = std::current_exception();
            return true;
        }
    }

    // The wrapped await_suspend's own return type, except that void becomes
    // bool: a throwing await_suspend resumes the coroutine at once.
    auto await_suspend(std::coroutine_handle<> at) noexcept {
        if constexpr (std::is_void_v<Suspend>) {
            try {
                awaiter_->await_suspend(at);
                return true;
            } catch (...) {
                error_ = std::current_exception();
                return false;
            }
        } else if constexpr (std::is_same_v<Suspend, bool>) {
            try {
                return awaiter_->await_suspend(at);
            } catch (...) {
                error_ = std::current_exception();
                return false;
            }
        } else {
            try {
                return std::coroutine_handle<>(awaiter_->await_suspend(at));
            } catch (...) {
                error_ = std::current_exception();
                return at;
            }
        }
    }

    Outcome<Result> await_resume() {
        if (error_) return Outcome<Result>(std::move(error_));
        try {
            if constexpr (std::is_void_v<Result>) {
                awaiter_->await_resume();
                return Outcome<Result>(std::monostate{});
            } else {
                return Outcome<Result>(awaiter_->await_resume());
            }
        } catch (...) {
            return Outcome<Result>(std::current_exception());
        }
    }

  private:
    Inner* awaiter_ = nullptr;
    std::exception_ptr error_;
    alignas(Inner) unsigned char storage_[std::is_lvalue_reference_v<Awaiter> ? 1 : sizeof(Inner)];
};

/// Awaits `aw` (a Coro, Future, Task or awaiter) and returns its Outcome: its
/// value, or whatever the co_await threw, from any step of it. folly's
/// co_awaitTry. Bind the result to a named local, not a temporary that the
/// same full-expression uses (GCC 12 mishandles those in co_await
/// expressions: https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100611):
///
///     Outcome<void> waited = co_await detail::try_await(waiter);
///
/// An lvalue awaiter is used in place, so it must outlive the co_await.
template <class A>
TryAwaiter<A> try_await(A&& aw) noexcept {
    return TryAwaiter<A>(std::forward<A>(aw));
}

}  // namespace detail
}  // namespace asyncio
