// Asynchronous generators (PEP 525): a coroutine that both awaits and yields.
//
//     async def ticker(n):
//         for i in range(n):
//             await asyncio.sleep(0)
//             yield i
//
//     async for v in ticker(3):
//         print(v)
//
// is, in C++:
//
//     asyncio::AsyncGenerator<int> ticker(int n) {
//         for (int i = 0; i < n; ++i) {
//             co_await asyncio::sleep(0);
//             co_yield i;
//         }
//     }
//
//     auto gen = ticker(3);
//     while (auto v = co_await gen.next())
//         fmt::print("{}\n", *v);
//
// next() is __anext__ (nullopt instead of StopAsyncIteration; an
// AsyncGenerator<T&> gives a T* that is null at the end); aclose()
// throws GeneratorExit into the generator at its co_yield so that its
// cleanup runs. A generator dropped while suspended at a co_yield is closed
// by a task on its loop (Python's finalizer hook), and
// loop.shutdown_asyncgens() closes those still open (asyncio.run does it).
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>

#include "asyncio/coro.hpp"
#include "asyncio/detail/allocator.hpp"
#include "asyncio/detail/intrusive.hpp"
#include "asyncio/detail/loop_core.hpp"
#include "asyncio/detail/storage.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

namespace detail {
template <class T>
class AsyncGenPromise;
template <class T>
class NextAwaiter;
}  // namespace detail

/// What `co_await gen.next()` gives: std::optional<T>, nullopt once the
/// generator returned; for a reference T, a pointer that is null then.
template <class T>
using next_result_t =
    std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, std::optional<T>>;

template <class T>
class [[nodiscard]] AsyncGenerator {
  public:
    using promise_type = detail::AsyncGenPromise<T>;
    using handle_type = std::coroutine_handle<promise_type>;

    AsyncGenerator(AsyncGenerator&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    AsyncGenerator& operator=(AsyncGenerator&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    ~AsyncGenerator() { reset(); }

    /// __anext__: runs the generator to its next co_yield and returns the
    /// value; nullopt (nullptr for a reference T) once it returned, and on
    /// every later call. Rethrows what the generator throws, which ends it.
    /// RuntimeError if it is already running (another next() in progress).
    detail::NextAwaiter<T> next();
    /// aclose(): throws GeneratorExit at the co_yield where the generator is
    /// suspended and waits for it to finish. RuntimeError if it yields again.
    Coro<void> aclose();

  private:
    explicit AsyncGenerator(handle_type handle) noexcept : handle_(handle) {}
    friend class detail::AsyncGenPromise<T>;
    void reset() noexcept;

    handle_type handle_;
};

namespace detail {

/// The part of an async generator that does not depend on T: its state,
/// the consumer to return to, and its place in the loop's registry.
class ASYNCIO_EXPORT AsyncGenBase : public Hook<AsyncGenTag> {
  public:
    enum class State : std::uint8_t { created, suspended, running, finished };

    static void* operator new(std::size_t size) { return RecyclingAllocator::allocate(size); }
    static void operator delete(void* ptr, std::size_t size) noexcept {
        RecyclingAllocator::deallocate(ptr, size);
    }

    std::suspend_always initial_suspend() noexcept { return {}; }

    /// Suspends at a co_yield or at the end, returning to the consumer.
    struct StopAwaiter {
        AsyncGenBase& generator;
        State stopped;  ///< suspended at a co_yield, or finished
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<>) noexcept {
            generator.state = stopped;
            if (stopped == State::finished) generator.Hook<AsyncGenTag>::unlink();
            if (generator.resumed_inline) {
                generator.stopped_inline = true;  // the driver continues the consumer itself
                return std::noop_coroutine();
            }
            return generator.consumer;
        }
    };
    /// co_yield: resumed by next(), or by aclose() with GeneratorExit.
    struct YieldAwaiter : StopAwaiter {
        explicit YieldAwaiter(AsyncGenBase& generator) noexcept
            : StopAwaiter{generator, State::suspended} {}
        void await_resume() const {
            if (generator.closing) throw GeneratorExit{};
        }
    };
    /// The end (final_suspend's awaiter must not throw).
    struct FinalAwaiter : StopAwaiter {
        explicit FinalAwaiter(AsyncGenBase& generator) noexcept
            : StopAwaiter{generator, State::finished} {}
        void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return FinalAwaiter(*this); }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
    void return_void() noexcept {}

    // The frame is shared by the AsyncGenerator handle and whoever is
    // driving or closing it at the moment; the last one out frees it, or,
    // if it is suspended at a co_yield, hands it to a closing task first.
    void add_ref() noexcept { ++refs; }
    void release() noexcept {
        if (--refs == 0) finalize();
    }

    std::uint32_t refs = 1;
    std::coroutine_handle<> self;
    std::coroutine_handle<> consumer;
    std::exception_ptr exception;
    State state = State::created;
    bool resumed_inline = false;
    bool stopped_inline = false;
    bool closing = false;
    bool finalizing = false;  // handed to a closing task once already
    LoopCore* loop = nullptr;
    std::source_location where;

  private:
    void finalize() noexcept;  // src/asyncgen.cpp
};

/// A counted reference to a generator frame, for the length of a scope.
class AsyncGenRef {
  public:
    explicit AsyncGenRef(AsyncGenBase& generator) noexcept : generator_(&generator) {
        generator.add_ref();
    }
    AsyncGenRef(const AsyncGenRef&) = delete;
    AsyncGenRef& operator=(const AsyncGenRef&) = delete;
    ~AsyncGenRef() { generator_->release(); }

  private:
    AsyncGenBase* generator_;
};

/// Resumes the generator from inside the consumer until it yields or ends,
/// with the same inline scheme as Coro's awaiter (no stack growth on GCC 12).
class ASYNCIO_EXPORT DriveAwaiter {
  public:
    explicit DriveAwaiter(AsyncGenBase& generator) noexcept : generator_(&generator) {}
    DriveAwaiter(const DriveAwaiter&) = delete;
    DriveAwaiter& operator=(const DriveAwaiter&) = delete;
    ~DriveAwaiter() {
        if (driving_) generator_->release();
    }

    bool await_ready() {
        AsyncGenBase& g = *generator_;
        if (g.state == AsyncGenBase::State::running) {
            throw RuntimeError("anext(): asynchronous generator is already running");
        }
        if (g.state == AsyncGenBase::State::finished) return true;
        if (g.state == AsyncGenBase::State::created) first_iteration(g);
        return false;
    }
    bool await_suspend(std::coroutine_handle<> consumer) noexcept {
        AsyncGenBase& g = *generator_;
        driving_ = true;
        g.add_ref();  // the handle may be dropped while the generator runs
        g.consumer = consumer;
        g.state = AsyncGenBase::State::running;
        g.resumed_inline = true;
        g.self.resume();
        g.resumed_inline = false;
        if (!g.stopped_inline) return true;
        g.stopped_inline = false;
        return false;
    }
    /// Rethrows what the generator threw; true if it yielded a value.
    bool await_resume() {
        AsyncGenBase& g = *generator_;
        if (g.exception) std::rethrow_exception(std::exchange(g.exception, nullptr));
        return g.state == AsyncGenBase::State::suspended;
    }

  private:
    static void first_iteration(AsyncGenBase& g) noexcept;
    AsyncGenBase* generator_;
    bool driving_ = false;
};

template <class T>
class AsyncGenPromise final : public AsyncGenBase {
  public:
    explicit AsyncGenPromise(
        std::source_location where = std::source_location::current()) noexcept {
        this->where = where;
        self = std::coroutine_handle<AsyncGenPromise>::from_promise(*this);
    }

    AsyncGenerator<T> get_return_object() noexcept {
        return AsyncGenerator<T>(std::coroutine_handle<AsyncGenPromise>::from_promise(*this));
    }

    template <class U = T>
    YieldAwaiter yield_value(U&& value) {
        // A value nobody took (the generator yielded while being closed)
        // must not be overwritten in place.
        if (this->value.has_value()) static_cast<void>(this->value.take());
        this->value.emplace(std::forward<U>(value));
        return YieldAwaiter(*this);
    }

    Storage<T> value;
};

template <class T>
class NextAwaiter : public DriveAwaiter {
  public:
    explicit NextAwaiter(AsyncGenPromise<T>& promise) noexcept
        : DriveAwaiter(promise), promise_(&promise) {}
    next_result_t<T> await_resume() {
        if constexpr (std::is_reference_v<T>) {
            if (!DriveAwaiter::await_resume()) return nullptr;
            return std::addressof(promise_->value.take());
        } else {
            if (!DriveAwaiter::await_resume()) return std::nullopt;
            return std::optional<T>(promise_->value.take());
        }
    }

  private:
    AsyncGenPromise<T>* promise_;
};

/// aclose() without the value type.
ASYNCIO_EXPORT Coro<void> close_asyncgen(AsyncGenBase& generator);

}  // namespace detail

template <class T>
detail::NextAwaiter<T> AsyncGenerator<T>::next() {
    if (!handle_) throw RuntimeError("next() on an empty AsyncGenerator");
    return detail::NextAwaiter<T>(handle_.promise());
}

template <class T>
Coro<void> AsyncGenerator<T>::aclose() {
    if (!handle_) throw RuntimeError("aclose() on an empty AsyncGenerator");
    return detail::close_asyncgen(handle_.promise());
}

template <class T>
void AsyncGenerator<T>::reset() noexcept {
    if (handle_) std::exchange(handle_, {}).promise().release();
}

}  // namespace asyncio
