// Storage for the value of a finished coroutine or future.
#pragma once

#include <memory>
#include <new>
#include <utility>

namespace asyncio::detail {

/// Holds the value of a finished Future<T> or Coro<T>: T, a pointer for T&, nothing for void.
template <class T>
class Storage {
  public:
    Storage() noexcept {}
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
    ~Storage() {
        if (has_) value_.~T();
    }

    template <class U>
    void emplace(U&& value) {
        ::new (static_cast<void*>(std::addressof(value_))) T(std::forward<U>(value));
        has_ = true;
    }
    bool has_value() const noexcept { return has_; }
    T& get() noexcept { return value_; }
    T take() {
        T out(std::move(value_));
        value_.~T();
        has_ = false;
        return out;
    }

  private:
    union {
        T value_;
    };
    bool has_ = false;
};

template <class T>
class Storage<T&> {
  public:
    void emplace(T& value) noexcept { ptr_ = std::addressof(value); }
    bool has_value() const noexcept { return ptr_ != nullptr; }
    T& get() noexcept { return *ptr_; }
    T& take() noexcept { return *ptr_; }

  private:
    T* ptr_ = nullptr;
};

template <>
class Storage<void> {};

}  // namespace asyncio::detail
