// asyncio.Handle and asyncio.TimerHandle (Lib/asyncio/events.py): what
// call_soon, call_later and call_at return, able to cancel the call.
//
// A handle is a reference-counted pointer to a pooled HandleState that stores
// the callable inline when it is small, so scheduling a lambda with a few
// captures costs no heap allocation.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <source_location>
#include <type_traits>
#include <utility>

#include "asyncio/contextvars.hpp"
#include "asyncio/detail/allocator.hpp"
#include "asyncio/detail/intrusive.hpp"
#include "asyncio/detail/loop_core.hpp"

namespace asyncio {

namespace detail {
class HandleState;
}

/// asyncio.Handle: a callback scheduled with call_soon (or call_soon_threadsafe).
class Handle {
  public:
    Handle() noexcept = default;
    Handle(const Handle& other) noexcept;
    Handle(Handle&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
    Handle& operator=(Handle other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }
    ~Handle();

    /// Prevents the callback from running if it has not run yet. A handle from
    /// call_soon_threadsafe may be cancelled from any thread.
    void cancel() noexcept;
    bool cancelled() const noexcept;

    /// Where call_soon/call_later was called; Python's debug-mode source_traceback.
    std::source_location source_location() const noexcept;

    /// Handle.get_context(): a Context holding the values the callback runs
    /// with (it runs in a fresh copy of them each time, so sets made through
    /// this Context do not reach it).
    Context get_context() const;

    /// Adopts a reference to `state` (library use).
    explicit Handle(detail::HandleState* state) noexcept : state_(state) {}
    detail::HandleState* state() const noexcept { return state_; }

  protected:
    detail::HandleState* state_ = nullptr;
};

/// asyncio.TimerHandle: a callback scheduled with call_later or call_at.
class TimerHandle : public Handle {
  public:
    TimerHandle() noexcept = default;
    explicit TimerHandle(detail::HandleState* state) noexcept : Handle(state) {}

    /// The absolute time, in loop.time() seconds, at which the callback is due.
    double when() const noexcept;
};

namespace detail {

/// How a type-erased callable stored in a HandleState is called and destroyed.
struct CallableOps {
    void (*invoke)(void* storage);
    void (*destroy)(void* storage) noexcept;
};

/// Which scheduling call made a handle: it decides how the reference count
/// is kept (atomically for call_soon_threadsafe) and whether cancelling it
/// is a timer's (counted for the loop's heap compaction).
enum class HandleKind { call_soon, threadsafe, timer };

/// Shared state of a Handle / TimerHandle: a ReadyNode that runs a callable.
class HandleState final : public ReadyNode, public Recycled {
  public:
    static constexpr std::size_t kInlineSize = 48;

    template <class F>
    static HandleState* create(LoopCore& loop, F&& fn, HandleKind kind,
                               std::source_location where) {
        using C = std::decay_t<F>;  // not "Fn": that names ReadyNode::Fn in here
        auto* state =
            new HandleState(loop, kind == HandleKind::threadsafe, kind == HandleKind::timer, where);
        if constexpr (fits_inline<C>) {
            ::new (static_cast<void*>(state->storage_)) C(std::forward<F>(fn));
            state->ops_ = &inline_ops<C>;
        } else {
            C* heap = nullptr;
            try {
                heap = new C(std::forward<F>(fn));
            } catch (...) {
                delete state;
                throw;
            }
            ::new (static_cast<void*>(state->storage_)) C*(heap);
            state->ops_ = &heap_ops<C>;
        }
        return state;
    }
    void add_ref() noexcept {
        if (threadsafe_) {
            refs_.fetch_add(1, std::memory_order_relaxed);
        } else {
            refs_.store(refs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
    }

    void release() noexcept {
        if (threadsafe_) {
            if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
        } else {
            const std::uint32_t left = refs_.load(std::memory_order_relaxed) - 1;
            refs_.store(left, std::memory_order_relaxed);
            if (left != 0) return;
        }
        destroy_callable();
        delete this;
    }

    void cancel() noexcept {
        if (cancelled_.exchange(true, std::memory_order_relaxed)) return;
        if (timer_ && scheduled_) loop_->timer_cancelled();
    }
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

    /// Calls the callable in a copy of the context it was scheduled from
    /// (PEP 567); an exception it throws goes to the loop's exception handler.
    void run() noexcept {
        ContextState context;
        context.data = context_;  // a copy: add_reader runs its handle many times
        ContextScope scope(context);
        try {
            ops_->invoke(storage_);
        } catch (...) {
            loop_->report_callback_exception(*this, std::current_exception());
        }
    }

    /// Frees what the callable captured; it will not be called again.
    void destroy_callable() noexcept {
        if (ops_ == nullptr) return;
        ops_->destroy(storage_);
        ops_ = nullptr;
    }

    /// ReadyNode::Fn of a handle: run unless cancelled, then drop the queue's
    /// reference. Out of line in src/loop.cpp, and exported, as are
    /// Waiter::resume_task and TaskBase::StepNode::run_step: debug mode tells
    /// ready nodes apart by these addresses, and an inline copy in the program
    /// and one in a shared libasyncio would not share one.
    static ASYNCIO_EXPORT void from_queue(ReadyNode& node, Action action) noexcept;

    LoopCore& loop() const noexcept { return *loop_; }
    bool is_timer() const noexcept { return timer_; }
    bool threadsafe() const noexcept { return threadsafe_; }
    std::source_location where() const noexcept { return where_; }
    const ContextDataRef& context_data() const noexcept { return context_; }

    // Timer bookkeeping, owned by the loop's timer heap.
    std::int64_t when_ns = 0;
    bool scheduled_ = false;

  private:
    HandleState(LoopCore& loop, bool threadsafe, bool timer, std::source_location where) noexcept
        : ReadyNode(&from_queue),
          threadsafe_(threadsafe),
          timer_(timer),
          loop_(&loop),
          where_(where),
          context_(current_context().data) {}
    ~HandleState() = default;

    template <class C>
    static constexpr bool fits_inline =
        sizeof(C) <= kInlineSize && alignof(C) <= alignof(std::max_align_t) &&
        std::is_nothrow_move_constructible_v<C>;

    template <class C>
    static constexpr CallableOps inline_ops{
        [](void* storage) { (*std::launder(static_cast<C*>(storage)))(); },
        [](void* storage) noexcept { std::launder(static_cast<C*>(storage))->~C(); }};

    template <class C>
    static constexpr CallableOps heap_ops{
        [](void* storage) { (**std::launder(static_cast<C**>(storage)))(); },
        [](void* storage) noexcept { delete *std::launder(static_cast<C**>(storage)); }};

    std::atomic<std::uint32_t> refs_{1};
    std::atomic<bool> cancelled_{false};
    bool threadsafe_;
    bool timer_;
    LoopCore* loop_;
    std::source_location where_;
    const CallableOps* ops_ = nullptr;
    ContextDataRef context_;  // contextvars.copy_context() when scheduled
    alignas(std::max_align_t) unsigned char storage_[kInlineSize];
};

}  // namespace detail

inline Handle::Handle(const Handle& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
}

inline Handle::~Handle() {
    if (state_ != nullptr) state_->release();
}

inline void Handle::cancel() noexcept {
    if (state_ != nullptr) state_->cancel();
}

inline bool Handle::cancelled() const noexcept {
    return state_ != nullptr && state_->cancelled();
}

inline std::source_location Handle::source_location() const noexcept {
    return state_ != nullptr ? state_->where() : std::source_location{};
}

inline Context Handle::get_context() const {
    Context out;
    if (state_ != nullptr) out.state()->data = state_->context_data();
    return out;
}

inline double TimerHandle::when() const noexcept {
    return state_ != nullptr ? static_cast<double>(state_->when_ns) * 1e-9 : 0.0;
}

}  // namespace asyncio
