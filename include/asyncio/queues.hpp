// Queues (Lib/asyncio/queues.py): Queue, LifoQueue and PriorityQueue, with
// 3.13's shutdown().
//
//     asyncio::Queue<Job> queue(100);           // maxsize 100; 0 is unbounded
//     co_await queue.put(std::move(job));       // waits while full
//     Job next = co_await queue.get();          // waits while empty
//     queue.task_done();                        // join() returns once every item is done
//
// Items may be move-only; they are moved, never copied. A woken getter (or
// putter) is not handed an item (or a slot): it takes it itself when it
// runs, as in CPython, so a getter cancelled after its wake-up leaves the
// item in the queue and passes the wake-up to the next getter. Waiters are
// woken in FIFO order; waiting allocates nothing, and neither does the
// FIFO queue's storage once it has grown to its working size.
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "asyncio/coro.hpp"
#include "asyncio/detail/future_state.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/locks.hpp"

namespace asyncio {

namespace detail {
template <class T>
class FifoItems;
template <class T>
class LifoItems;
template <class T, class Compare>
class HeapItems;
template <class Q>
class QueueWaiter;
/// Which end of a queue a task waits at: put() for a free slot, get() for an item.
enum class QueueEnd { put, get };
}  // namespace detail

/// asyncio.Queue: a FIFO queue between producer and consumer tasks. With a
/// maxsize, put() waits while the queue is full. `Items` is the storage,
/// Python's overridable _init/_put/_get: LifoQueue and PriorityQueue are
/// Queues with other storage, and a user may supply one (empty, size, push,
/// pop, clear).
template <class T, class Items = detail::FifoItems<T>>
class Queue {
  public:
    using value_type = T;

    /// `maxsize` 0: unbounded.
    explicit Queue(std::size_t maxsize = 0) : maxsize_(maxsize) { finished_.set(); }
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;

    std::size_t maxsize() const noexcept { return maxsize_; }
    /// Number of items in the queue.
    std::size_t qsize() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    /// Whether there are maxsize items (never, when unbounded).
    bool full() const noexcept { return maxsize_ != 0 && items_.size() >= maxsize_; }

    /// Puts `item`, waiting while the queue is full; QueueShutDown after shutdown().
    Coro<void> put(T item);
    /// Puts `item` or throws QueueFull; QueueShutDown after shutdown().
    void put_nowait(T item);
    /// Removes and returns an item, waiting while the queue is empty;
    /// QueueShutDown once the queue is shut down and empty.
    Coro<T> get();
    /// Removes and returns an item or throws QueueEmpty (QueueShutDown once
    /// shut down and empty).
    T get_nowait();
    /// Marks one item taken by get() as processed; std::invalid_argument
    /// (Python's ValueError) if called more often than items were put.
    void task_done();
    /// Waits until every item put has been marked done by task_done().
    Coro<void> join();
    /// Makes put() throw QueueShutDown from now on, and get() once the queue
    /// is empty, waking every blocked put() and get(). `immediate` also
    /// drops the items (each counts as done, which may release join()), so
    /// that get() throws at once.
    void shutdown(bool immediate = false);
    /// Python's repr: "<Queue at 0x... maxsize=0 _getters[1] tasks=2>".
    std::string repr() const;

  protected:
    Queue(std::size_t maxsize, Items items) : items_(std::move(items)), maxsize_(maxsize) {
        finished_.set();
    }

  private:
    friend class detail::QueueWaiter<Queue>;

    static void wake_up_next(detail::WaiterList& waiters) noexcept {
        if (detail::SyncWaiter* first = waiters.pop_front()) first->wake();
    }
    /// A waiter woken and then cancelled hands its wake-up to the next one
    /// if what woke it is still there (CPython's `_wakeup_next` in put/get).
    void pass_on(detail::QueueEnd end) noexcept {
        if (end == detail::QueueEnd::put) {
            if (!full()) wake_up_next(putters_);
        } else if (!empty()) {
            wake_up_next(getters_);
        }
    }
    void bind(detail::LoopCore& loop) { detail::bind_or_throw(loop_, loop, *this); }

    Items items_;
    std::size_t maxsize_;
    detail::WaiterList getters_;
    detail::WaiterList putters_;
    std::size_t unfinished_ = 0;
    Event finished_;
    detail::LoopCore* loop_ = nullptr;
    bool shutdown_ = false;
};

/// asyncio.LifoQueue: a Queue that returns the most recently added item first.
template <class T>
class LifoQueue : public Queue<T, detail::LifoItems<T>> {
  public:
    using Queue<T, detail::LifoItems<T>>::Queue;
};

/// asyncio.PriorityQueue: a Queue that returns the smallest item first
/// (by `Compare`; entries are typically (priority, data) pairs).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public Queue<T, detail::HeapItems<T, Compare>> {
  public:
    explicit PriorityQueue(std::size_t maxsize = 0, Compare compare = Compare())
        : Queue<T, detail::HeapItems<T, Compare>>(
              maxsize, detail::HeapItems<T, Compare>(std::move(compare))) {}
};

// -- implementation ---------------------------------------------------------------------

namespace detail {

/// A getter or putter waiting for an item or a free slot.
template <class Q>
class QueueWaiter : public SyncWaiter {
  public:
    QueueWaiter(Q& queue, QueueEnd end) noexcept : queue_(queue), end_(end) {}
    ~QueueWaiter() {
        if (state_ == WaitState::waiting) Hook<WaiterTag>::unlink();
        if (state_ == WaitState::woken) queue_.pass_on(end_);
    }

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase& current = running_task();
        queue_.bind(current.loop());
        suspend_in(end_ == QueueEnd::put ? queue_.putters_ : queue_.getters_, current, at);
    }
    void await_resume() {
        const WaitState was = finish();
        try {
            resume_or_throw(was);
        } catch (...) {
            if (was == WaitState::woken) queue_.pass_on(end_);
            throw;
        }
    }

  private:
    Q& queue_;
    QueueEnd end_;
};

/// Queue's storage: a ring buffer, which (unlike std::deque) stops
/// allocating once it has grown to the largest size the queue reaches.
template <class T>
class FifoItems {
  public:
    static constexpr const char* kName = "Queue";

    FifoItems() noexcept = default;
    FifoItems(const FifoItems&) = delete;
    FifoItems& operator=(const FifoItems&) = delete;
    ~FifoItems() {
        clear();
        if (slots_ != nullptr) std::allocator<T>().deallocate(slots_, capacity_);
    }

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }

    void push(T&& item) {
        if (size_ == capacity_) grow();
        std::construct_at(slots_ + ((head_ + size_) & (capacity_ - 1)), std::move(item));
        ++size_;
    }
    T pop() {
        T* slot = slots_ + head_;
        T item(std::move(*slot));
        std::destroy_at(slot);
        head_ = (head_ + 1) & (capacity_ - 1);
        --size_;
        return item;
    }
    void clear() noexcept {
        for (; size_ != 0; --size_) {
            std::destroy_at(slots_ + head_);
            head_ = (head_ + 1) & (capacity_ - 1);
        }
        head_ = 0;
    }

  private:
    void grow() {
        const std::size_t capacity = capacity_ == 0 ? 16 : capacity_ * 2;  // a power of two
        T* slots = std::allocator<T>().allocate(capacity);
        std::size_t moved = 0;
        try {
            for (; moved < size_; ++moved) {
                std::construct_at(slots + moved,
                                  std::move_if_noexcept(slots_[(head_ + moved) & (capacity_ - 1)]));
            }
        } catch (...) {
            std::destroy(slots, slots + moved);
            std::allocator<T>().deallocate(slots, capacity);
            throw;
        }
        const std::size_t size = size_;
        clear();
        if (slots_ != nullptr) std::allocator<T>().deallocate(slots_, capacity_);
        slots_ = slots;
        capacity_ = capacity;
        size_ = size;
    }

    T* slots_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
};

/// LifoQueue's storage: a stack.
template <class T>
class LifoItems {
  public:
    static constexpr const char* kName = "LifoQueue";

    bool empty() const noexcept { return items_.empty(); }
    std::size_t size() const noexcept { return items_.size(); }
    void push(T&& item) { items_.push_back(std::move(item)); }
    T pop() {
        T item(std::move(items_.back()));
        items_.pop_back();
        return item;
    }
    void clear() noexcept { items_.clear(); }

  private:
    std::vector<T> items_;
};

/// PriorityQueue's storage: a binary heap whose top is the smallest item
/// under `Compare` (Python's heapq).
template <class T, class Compare>
class HeapItems {
  public:
    static constexpr const char* kName = "PriorityQueue";

    explicit HeapItems(Compare compare) : later_{std::move(compare)} {}

    bool empty() const noexcept { return items_.empty(); }
    std::size_t size() const noexcept { return items_.size(); }
    void push(T&& item) {
        items_.push_back(std::move(item));
        std::push_heap(items_.begin(), items_.end(), later_);
    }
    T pop() {
        std::pop_heap(items_.begin(), items_.end(), later_);
        T item(std::move(items_.back()));
        items_.pop_back();
        return item;
    }
    void clear() noexcept { items_.clear(); }

  private:
    // The std heap algorithms keep the largest on top: invert the order.
    struct Later {
        Compare compare;
        bool operator()(const T& a, const T& b) const { return compare(b, a); }
    };

    std::vector<T> items_;
    Later later_;
};

}  // namespace detail

template <class T, class Items>
Coro<void> Queue<T, Items>::put(T item) {
    while (full()) {
        if (shutdown_) throw QueueShutDown();
        detail::QueueWaiter<Queue> putter(*this, detail::QueueEnd::put);
        co_await putter;
    }
    put_nowait(std::move(item));
}

template <class T, class Items>
void Queue<T, Items>::put_nowait(T item) {
    if (shutdown_) throw QueueShutDown();
    if (full()) throw QueueFull();
    items_.push(std::move(item));
    ++unfinished_;
    finished_.clear();
    wake_up_next(getters_);
}

template <class T, class Items>
Coro<T> Queue<T, Items>::get() {
    while (empty()) {
        if (shutdown_) throw QueueShutDown();
        detail::QueueWaiter<Queue> getter(*this, detail::QueueEnd::get);
        co_await getter;
    }
    T item = items_.pop();
    wake_up_next(putters_);
    co_return item;
}

template <class T, class Items>
T Queue<T, Items>::get_nowait() {
    if (empty()) {
        if (shutdown_) throw QueueShutDown();
        throw QueueEmpty();
    }
    T item = items_.pop();
    wake_up_next(putters_);
    return item;
}

template <class T, class Items>
void Queue<T, Items>::task_done() {
    if (unfinished_ == 0) throw std::invalid_argument("task_done() called too many times");
    if (--unfinished_ == 0) finished_.set();
}

template <class T, class Items>
Coro<void> Queue<T, Items>::join() {
    if (unfinished_ > 0) co_await finished_.wait();
}

template <class T, class Items>
void Queue<T, Items>::shutdown(bool immediate) {
    shutdown_ = true;
    if (immediate) {
        const std::size_t dropped = std::min(items_.size(), unfinished_);
        items_.clear();
        unfinished_ -= dropped;
        if (unfinished_ == 0) finished_.set();
    }
    // Every blocked getter and putter re-checks the state and throws.
    while (detail::SyncWaiter* getter = getters_.pop_front())
        getter->wake();
    while (detail::SyncWaiter* putter = putters_.pop_front())
        putter->wake();
}

template <class T, class Items>
std::string Queue<T, Items>::repr() const {
    std::string out = fmt::format("<{} at {} maxsize={}", Items::kName, fmt::ptr(this), maxsize_);
    if (const std::size_t n = getters_.size(); n != 0) out += fmt::format(" _getters[{}]", n);
    if (const std::size_t n = putters_.size(); n != 0) out += fmt::format(" _putters[{}]", n);
    if (unfinished_ != 0) out += fmt::format(" tasks={}", unfinished_);
    if (shutdown_) out += " shutdown";
    return out + ">";
}

}  // namespace asyncio
