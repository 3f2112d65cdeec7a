// Coro<T>: what an `async def` returns (Lib/asyncio/coroutines.py).
//
//     asyncio::Coro<int> compute(int x, int y) {
//         co_await asyncio::sleep(1s);
//         co_return x + y;
//     }
//
// A Coro is lazy: nothing runs until it is awaited or wrapped in a task. It is
// move-only and awaited once; awaiting it again throws RuntimeError, as
// Python's "cannot reuse already awaited coroutine". Destroying one that was
// never awaited is reported ("coroutine ... was never awaited").
#pragma once

#include <coroutine>
#include <exception>
#include <source_location>
#include <type_traits>
#include <utility>

#include "asyncio/detail/allocator.hpp"
#include "asyncio/detail/library_key.hpp"
#include "asyncio/detail/storage.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

namespace detail {
template <class T>
class CoroPromise;
template <class T>
class CoroAwaiter;
/// Reports a coroutine that was destroyed without ever being awaited.
ASYNCIO_EXPORT void report_never_awaited(std::source_location where) noexcept;
}  // namespace detail

template <class T = void>
class [[nodiscard]] Coro {
  public:
    using promise_type = detail::CoroPromise<T>;
    using handle_type = std::coroutine_handle<promise_type>;
    using value_type = T;

    Coro(Coro&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    Coro& operator=(Coro&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    ~Coro() { reset(); }

    /// Runs the coroutine to completion inside the awaiting one and returns
    /// its result (or rethrows its exception).
    detail::CoroAwaiter<T> operator co_await() && { return detail::CoroAwaiter<T>(take_frame()); }
    detail::CoroAwaiter<T> operator co_await() & { return detail::CoroAwaiter<T>(take_frame()); }

    /// False once awaited, handed to a task, closed or moved from.
    bool valid() const noexcept { return static_cast<bool>(handle_); }
    explicit operator bool() const noexcept { return valid(); }

    /// Python's coroutine.close() on a coroutine that never started: frees it
    /// without the "never awaited" report.
    void close() noexcept {
        if (handle_) std::exchange(handle_, {}).destroy();
    }

    /// Where the coroutine function is defined (function name and line).
    std::source_location source_location() const noexcept {
        return handle_ ? handle_.promise().where() : std::source_location{};
    }

    /// Library use: takes ownership of the frame; RuntimeError if already consumed.
    handle_type release(detail::LibraryKey) { return take_frame(); }

  private:
    handle_type take_frame() {
        if (!handle_) throw RuntimeError("cannot reuse already awaited coroutine");
        return std::exchange(handle_, {});
    }

    explicit Coro(handle_type handle) noexcept : handle_(handle) {}
    friend class detail::CoroPromise<T>;

    void reset() noexcept {
        if (!handle_) return;
        detail::report_never_awaited(handle_.promise().where());
        std::exchange(handle_, {}).destroy();
    }

    handle_type handle_;
};

namespace detail {

/// The part of a Coro's promise that does not depend on T.
class CoroPromiseBase {
  public:
    explicit CoroPromiseBase(std::source_location where) noexcept : where_(where) {}

    static void* operator new(std::size_t size) { return RecyclingAllocator::allocate(size); }
    static void operator delete(void* ptr, std::size_t size) noexcept {
        RecyclingAllocator::deallocate(ptr, size);
    }

    std::suspend_always initial_suspend() noexcept { return {}; }

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) noexcept {
            CoroPromiseBase& promise = self.promise();
            if (promise.resumed_inline_) {
                promise.finished_inline_ = true;  // the awaiter continues the parent itself
                return std::noop_coroutine();
            }
            if (promise.continuation_) return promise.continuation_;
            return std::noop_coroutine();  // a task's root: Task::step sees done()
        }
        void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }

    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    std::source_location where() const noexcept { return where_; }
    const std::exception_ptr& exception() const noexcept { return exception_; }

  private:
    template <class T>
    friend class CoroAwaiter;

    std::coroutine_handle<> continuation_;
    std::exception_ptr exception_;
    std::source_location where_;
    bool resumed_inline_ = false;
    bool finished_inline_ = false;
};

template <class T>
class CoroReturn : public CoroPromiseBase {
  public:
    using CoroPromiseBase::CoroPromiseBase;
    template <class U = T>
    void return_value(U&& value) {
        value_.emplace(std::forward<U>(value));
    }

  protected:
    Storage<T> value_;
};

template <>
class CoroReturn<void> : public CoroPromiseBase {
  public:
    using CoroPromiseBase::CoroPromiseBase;
    void return_void() noexcept {}
};

template <class T>
class CoroPromise final : public CoroReturn<T> {
  public:
    // The default argument is evaluated in the coroutine, so it names the
    // coroutine function: cheap creation-site information for reports. (It
    // must be declared here: an inherited constructor would name itself.)
    explicit CoroPromise(std::source_location where = std::source_location::current()) noexcept
        : CoroReturn<T>(where) {}

    Coro<T> get_return_object() noexcept {
        return Coro<T>(std::coroutine_handle<CoroPromise>::from_promise(*this));
    }

    /// The coroutine's outcome, once it finished: its value or its exception.
    T result() {
        if (this->exception()) std::rethrow_exception(this->exception());
        if constexpr (std::is_void_v<T>) {
            return;
        } else {
            return this->value_.take();
        }
    }
    /// Moves the value out without looking at the exception (tasks do that first).
    T take_value() {
        if constexpr (std::is_void_v<T>) {
            return;
        } else {
            return this->value_.take();
        }
    }
};

/// The awaiter of `co_await coro`. It runs the child inline from
/// await_suspend and returns false when the child finishes without
/// suspending, so a loop of synchronously completing awaits does not grow the
/// stack. GCC 12 does not make symmetric transfer a tail call at -O0/-O1 or
/// under ASan, so relying on it would overflow
/// (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100897).
template <class T>
class CoroAwaiter {
  public:
    explicit CoroAwaiter(std::coroutine_handle<CoroPromise<T>> child) noexcept : child_(child) {}
    CoroAwaiter(const CoroAwaiter&) = delete;
    CoroAwaiter& operator=(const CoroAwaiter&) = delete;
    ~CoroAwaiter() {
        if (child_) child_.destroy();
    }

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> parent) noexcept {
        CoroPromiseBase& promise = child_.promise();
        promise.continuation_ = parent;
        promise.resumed_inline_ = true;
        child_.resume();
        promise.resumed_inline_ = false;
        return !promise.finished_inline_;
    }

    T await_resume() { return child_.promise().result(); }

  private:
    std::coroutine_handle<CoroPromise<T>> child_;
};

}  // namespace detail
}  // namespace asyncio
