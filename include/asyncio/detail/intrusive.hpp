// Intrusive containers for the loop's hot paths: the ready queue and the
// waiter lists that futures, locks and I/O operations keep. A node lives in
// the object that waits (usually an awaiter in a coroutine frame), so queueing
// it allocates nothing.
#pragma once

#include <cassert>
#include <cstddef>
#include <type_traits>

namespace asyncio::detail {

/// Something the loop can run once from its ready queue: a callback Handle, a
/// waiter that resumes a task, a completed I/O operation.
struct ReadyNode {
    enum class Action { run, drop };
    /// `run`: do the work. `drop`: the loop is closing and discards the node
    /// unrun; release what the queue held, touch nothing else.
    using Fn = void (*)(ReadyNode&, Action) noexcept;

    explicit ReadyNode(Fn fn = nullptr) noexcept : fn(fn) {}

    ReadyNode* next_ready = nullptr;
    Fn fn;
};

/// The object `node` is embedded in. A queue hands back the node it holds
/// (a ReadyNode's Fn gets a ReadyNode&, a cancel function a Waiter&); this
/// gets from there to the owner in one step, whatever the bases in between.
/// It is a static_cast: `node` must be the `Node` base of a live `T`.
template <class T, class Node>
T& node_cast(Node& node) noexcept {
    static_assert(std::is_base_of_v<Node, T> && !std::is_same_v<Node, T>,
                  "node_cast goes from a node base to the object that embeds it");
    return static_cast<T&>(node);
}

/// FIFO of ReadyNodes, singly linked through the nodes themselves.
class ReadyQueue {
  public:
    ReadyQueue() = default;
    ReadyQueue(const ReadyQueue&) = delete;
    ReadyQueue& operator=(const ReadyQueue&) = delete;

    bool empty() const noexcept { return head_ == nullptr; }
    std::size_t size() const noexcept { return size_; }

    void push(ReadyNode& node) noexcept {
        node.next_ready = nullptr;
        *tail_ = &node;
        tail_ = &node.next_ready;
        ++size_;
    }

    ReadyNode& pop() noexcept {
        assert(head_ != nullptr);
        ReadyNode* node = head_;
        head_ = node->next_ready;
        if (head_ == nullptr) tail_ = &head_;
        --size_;
        return *node;
    }

    /// Moves every node of `other` to the back of this queue.
    void splice(ReadyQueue& other) noexcept {
        if (other.empty()) return;
        *tail_ = other.head_;
        tail_ = other.tail_;
        size_ += other.size_;
        other.head_ = nullptr;
        other.tail_ = &other.head_;
        other.size_ = 0;
    }

  private:
    ReadyNode* head_ = nullptr;
    ReadyNode** tail_ = &head_;
    std::size_t size_ = 0;
};

/// Links for one IntrusiveList; `Tag` lets a type sit in several lists.
template <class Tag>
struct Hook {
    Hook() = default;
    Hook(const Hook&) = delete;
    Hook& operator=(const Hook&) = delete;

    bool linked() const noexcept { return next_ != nullptr; }

    void unlink() noexcept {
        if (next_ == nullptr) return;
        prev_->next_ = next_;
        next_->prev_ = prev_;
        prev_ = next_ = nullptr;
    }

    Hook* prev_ = nullptr;
    Hook* next_ = nullptr;
};

/// Circular doubly linked list of `T`s that derive from `Hook<Tag>`:
/// O(1) push, pop and removal of any element, no allocation.
template <class T, class Tag>
class IntrusiveList {
    using H = Hook<Tag>;

  public:
    IntrusiveList() noexcept { sentinel_.prev_ = sentinel_.next_ = &sentinel_; }
    IntrusiveList(const IntrusiveList&) = delete;
    IntrusiveList& operator=(const IntrusiveList&) = delete;
    ~IntrusiveList() { assert(empty()); }

    bool empty() const noexcept { return sentinel_.next_ == &sentinel_; }

    std::size_t size() const noexcept {
        std::size_t n = 0;
        for (const H* h = sentinel_.next_; h != &sentinel_; h = h->next_)
            ++n;
        return n;
    }

    void push_back(T& item) noexcept {
        H& h = item;
        assert(!h.linked());
        h.prev_ = sentinel_.prev_;
        h.next_ = &sentinel_;
        sentinel_.prev_->next_ = &h;
        sentinel_.prev_ = &h;
    }

    T& front() noexcept {
        assert(!empty());
        return static_cast<T&>(*sentinel_.next_);
    }

    T* pop_front() noexcept {
        if (empty()) return nullptr;
        T& item = front();
        static_cast<H&>(item).unlink();
        return &item;
    }

    /// Calls `fn(T&)` for each element; `fn` may unlink the element it is given.
    template <class Fn>
    void for_each(Fn&& fn) {
        for (H* h = sentinel_.next_; h != &sentinel_;) {
            H* next = h->next_;
            fn(static_cast<T&>(*h));
            h = next;
        }
    }

  private:
    H sentinel_;
};

}  // namespace asyncio::detail
