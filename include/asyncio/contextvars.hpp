// contextvars (PEP 567): ContextVar, Token, Context, copy_context.
//
//     request_id = ContextVar('request_id', default=0)
//     token = request_id.set(42)
//     request_id.get()  # 42
//     request_id.reset(token)
//
// is, in C++:
//
//     asyncio::ContextVar<int> request_id("request_id", 0);
//     auto token = request_id.set(42);
//     request_id.get();  // 42
//     request_id.reset(token);
//
// As in Python, every task runs in its own Context, a copy of its creator's
// taken when the task is created; callbacks run in a copy taken when they
// were scheduled; to_thread carries the context into the worker thread. A
// value set inside a task is therefore invisible to its creator and to
// sibling tasks. Contexts are copy-on-write: copying one costs a reference.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "asyncio/detail/allocator.hpp"
#include "asyncio/detail/library_key.hpp"
#include "asyncio/detail/per_thread.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

namespace detail {

/// An immutable mapping from variable ids to values, shared by contexts.
struct ASYNCIO_EXPORT ContextData {
    std::atomic<std::uint32_t> refs{1};
    std::vector<std::pair<std::uint64_t, std::shared_ptr<const void>>> entries;  // sorted by id

    const std::shared_ptr<const void>* find(std::uint64_t id) const noexcept;
};

/// A counted reference to ContextData; null is the empty mapping.
class ASYNCIO_EXPORT ContextDataRef {
  public:
    ContextDataRef() noexcept = default;
    explicit ContextDataRef(ContextData* adopted) noexcept : data_(adopted) {}
    ContextDataRef(const ContextDataRef& other) noexcept : data_(other.data_) {
        if (data_ != nullptr) data_->refs.fetch_add(1, std::memory_order_relaxed);
    }
    ContextDataRef(ContextDataRef&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}
    ContextDataRef& operator=(ContextDataRef other) noexcept {
        std::swap(data_, other.data_);
        return *this;
    }
    ~ContextDataRef() {
        if (data_ != nullptr && data_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
            delete data_;
    }
    const ContextData* get() const noexcept { return data_; }

    /// The mapping with `id` set to `value` (null `value`: removed).
    ContextDataRef with(std::uint64_t id, std::shared_ptr<const void> value) const;

  private:
    ContextData* data_ = nullptr;
};

/// The state of one Context object: its current mapping. Pooled, since
/// every task and done callback owns one.
struct ContextState : Recycled {
    ContextDataRef data;
    bool entered = false;
    std::atomic<std::uint32_t> refs{1};
    /// Identity for Token checks, given out on the first set(): addresses
    /// are reused (a callback's context lives on the stack), ids are not.
    std::uint64_t id = 0;
};

ASYNCIO_EXPORT std::uint64_t next_context_id() noexcept;
inline std::uint64_t context_id(ContextState& state) noexcept {
    if (state.id == 0) state.id = next_context_id();
    return state.id;
}

/// The context code on this thread runs in; nullptr means the thread's own
/// base context.
ASYNCIO_PER_THREAD(ContextState*, current_context_state);
ASYNCIO_EXPORT ContextState& current_context();

/// Makes `state` current for its lifetime (a task step, a callback).
class ContextScope {
  public:
    explicit ContextScope(ContextState& state) noexcept
        : previous_(std::exchange(current_context_state(), &state)) {}
    ContextScope(const ContextScope&) = delete;
    ContextScope& operator=(const ContextScope&) = delete;
    ~ContextScope() { current_context_state() = previous_; }

  private:
    ContextState* previous_;
};

ASYNCIO_EXPORT std::uint64_t next_context_var_id() noexcept;

/// A counted reference to the ContextState something runs in (a task, a
/// done callback): by default a new copy of the context current at its
/// creation, or a Context it was given and shares.
class ContextRef {
  public:
    /// contextvars.copy_context()
    ContextRef() : state_(new ContextState) { state_->data = current_context().data; }
    ContextRef(const ContextRef&) = delete;
    ContextRef& operator=(const ContextRef&) = delete;
    ~ContextRef() { drop(); }

    /// Shares `state` (adds a reference) instead of the current one.
    void share(ContextState& state) noexcept {
        state.refs.fetch_add(1, std::memory_order_relaxed);
        drop();
        state_ = &state;
    }
    ContextState& operator*() const noexcept { return *state_; }
    ContextState* operator->() const noexcept { return state_; }
    ContextState* get() const noexcept { return state_; }

  private:
    void drop() noexcept {
        if (state_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete state_;
    }
    ContextState* state_;
};

}  // namespace detail

template <class T>
class ContextVar;

/// contextvars.Context: a mapping from ContextVars to values. A cheap handle:
/// copies refer to the same context; copy() makes an independent one.
class ASYNCIO_EXPORT Context {
  public:
    /// An empty context.
    Context();
    Context(const Context& other) noexcept;
    Context& operator=(Context other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }
    ~Context();

    /// Context.copy(): a new context with the same values.
    Context copy() const;
    /// Number of variables set (len(ctx)).
    std::size_t size() const noexcept;
    /// `var in ctx`.
    template <class T>
    bool contains(const ContextVar<T>& var) const noexcept;
    /// ctx.get(var): the value `var` has in this context, nullopt if unset
    /// (the variable's default does not count, as in Python).
    template <class T>
    std::optional<T> get(const ContextVar<T>& var) const;

    /// Context.run: calls `fn` with this context current. RuntimeError if the
    /// context is already entered (on any thread).
    template <class F>
    decltype(auto) run(F&& fn) {
        if (state_->entered) throw RuntimeError("cannot enter context: it is already entered");
        state_->entered = true;
        struct Exit {
            detail::ContextState& state;
            ~Exit() { state.entered = false; }
        } exit{*state_};
        detail::ContextScope scope(*state_);
        return std::forward<F>(fn)();
    }

    /// Library use: adopts a reference to `adopted`.
    Context(detail::LibraryKey, detail::ContextState* adopted) noexcept : state_(adopted) {}
    detail::ContextState* state() const noexcept { return state_; }

  private:
    detail::ContextState* state_;
};

/// contextvars.copy_context(): a copy of the current context.
ASYNCIO_EXPORT Context copy_context();

/// contextvars.Token: what ContextVar::set returns, to undo the set.
template <class T>
class Token {
  public:
    /// The variable the token belongs to.
    const ContextVar<T>& var() const noexcept { return *var_; }
    /// The value before set(), nullopt if the variable was unset (Token.MISSING).
    std::optional<T> old_value() const {
        if (!old_) return std::nullopt;
        return *static_cast<const T*>(old_.get());
    }

  private:
    friend class ContextVar<T>;
    Token(const ContextVar<T>* var, std::uint64_t context, std::shared_ptr<const void> old)
        : var_(var),
          context_(context),
          old_(std::move(old)),
          used_(std::make_shared<bool>(false)) {}

    const ContextVar<T>* var_;
    std::uint64_t context_;  // ContextState::id
    std::shared_ptr<const void> old_;
    std::shared_ptr<bool> used_;  // shared by copies: a token is used once
};

/// contextvars.ContextVar.
template <class T>
class ContextVar {
  public:
    explicit ContextVar(std::string name) : name_(std::move(name)) {}
    ContextVar(std::string name, T default_value)
        : name_(std::move(name)), default_(std::make_shared<const T>(std::move(default_value))) {}
    ContextVar(const ContextVar&) = delete;
    ContextVar& operator=(const ContextVar&) = delete;

    const std::string& name() const noexcept { return name_; }

    /// The value in the current context, else the default; std::out_of_range
    /// (Python's LookupError) if there is neither.
    T get() const {
        if (const auto* value = lookup()) return *static_cast<const T*>(value->get());
        if (default_) return *default_;
        throw std::out_of_range("LookupError: <ContextVar name='" + name_ + "'>");
    }
    /// The value in the current context, else `fallback`.
    T get(T fallback) const {
        if (const auto* value = lookup()) return *static_cast<const T*>(value->get());
        return fallback;
    }

    /// Sets the value in the current context.
    Token<T> set(T value) {
        detail::ContextState& context = detail::current_context();
        std::shared_ptr<const void> old;
        if (const auto* previous = context.data.get() ? context.data.get()->find(id_) : nullptr) {
            old = *previous;
        }
        context.data = context.data.with(id_, std::make_shared<const T>(std::move(value)));
        return Token<T>(this, detail::context_id(context), std::move(old));
    }

    /// Restores the value from before `token`'s set(). RuntimeError if the
    /// token was used already; std::invalid_argument (ValueError) if it
    /// belongs to another variable or was created in another context.
    void reset(const Token<T>& token) {
        if (*token.used_) throw RuntimeError("Token has already been used once");
        if (token.var_->id_ != id_) {
            throw std::invalid_argument("Token was created by a different ContextVar");
        }
        detail::ContextState& context = detail::current_context();
        if (token.context_ != context.id) {
            throw std::invalid_argument("Token was created in a different Context");
        }
        context.data = context.data.with(id_, token.old_);
        *token.used_ = true;
    }

  private:
    friend class Context;
    template <class>
    friend class ContextVar;

    const std::shared_ptr<const void>* lookup() const noexcept {
        const detail::ContextData* data = detail::current_context().data.get();
        return data != nullptr ? data->find(id_) : nullptr;
    }

    std::string name_;
    std::shared_ptr<const T> default_;
    const std::uint64_t id_ = detail::next_context_var_id();
};

template <class T>
bool Context::contains(const ContextVar<T>& var) const noexcept {
    const detail::ContextData* data = state_->data.get();
    return data != nullptr && data->find(var.id_) != nullptr;
}

template <class T>
std::optional<T> Context::get(const ContextVar<T>& var) const {
    const detail::ContextData* data = state_->data.get();
    const auto* value = data != nullptr ? data->find(var.id_) : nullptr;
    if (value == nullptr) return std::nullopt;
    return *static_cast<const T*>(value->get());
}

}  // namespace asyncio
