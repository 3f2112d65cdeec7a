// Per-thread recycling allocator for coroutine frames, future and task
// states and callback handles: the loop's steady state allocates nothing from
// the global heap.
//
// Blocks are rounded up to a size class and kept on a per-thread free list
// when released. A block may be released on another thread than the one that
// allocated it (a coroutine created on one thread and run by a loop on
// another): every block comes from ::operator new of its class size, so any
// thread's list can take it. Each thread caches at most kMaxCachedBytes.
#pragma once

#include <cstddef>
#include <new>

namespace asyncio::detail {

class RecyclingAllocator {
  public:
    static constexpr std::size_t kGranule = 32;
    static constexpr std::size_t kClasses = 64;  // blocks up to 2 KiB are recycled
    static constexpr std::size_t kMaxCachedBytes = 8u << 20;

    static void* allocate(std::size_t size) {
        const std::size_t cls = size_class(size);
        Pool& pool = pool_;
        if (cls < kClasses && pool.state == Pool::active) {
            if (FreeBlock* block = pool.heads[cls]) {
                pool.heads[cls] = block->next;
                pool.cached_bytes -= class_bytes(cls);
                return block;
            }
        } else if (cls < kClasses && pool.state == Pool::uninitialized) {
            activate();
        }
        return ::operator new(cls < kClasses ? class_bytes(cls) : size);
    }

    static void deallocate(void* ptr, std::size_t size) noexcept {
        const std::size_t cls = size_class(size);
        Pool& pool = pool_;
        if (cls < kClasses && pool.state == Pool::active &&
            pool.cached_bytes + class_bytes(cls) <= kMaxCachedBytes) {
            auto* block = static_cast<FreeBlock*>(ptr);
            block->next = pool.heads[cls];
            pool.heads[cls] = block;
            pool.cached_bytes += class_bytes(cls);
            return;
        }
        ::operator delete(ptr);
    }

  private:
    struct FreeBlock {
        FreeBlock* next;
    };

    // Trivially destructible, so reaching it costs no TLS guard; activate()
    // registers the cleanup that empties it when the thread exits.
    struct Pool {
        enum State : unsigned char { uninitialized, active, dead };
        FreeBlock* heads[kClasses];
        std::size_t cached_bytes;
        State state;
    };

    static constexpr std::size_t size_class(std::size_t size) noexcept {
        return (size + kGranule - 1) / kGranule;
    }
    static constexpr std::size_t class_bytes(std::size_t cls) noexcept { return cls * kGranule; }

    static void activate();  // src/allocator.cpp
    friend struct PoolReaper;

    static constinit inline thread_local Pool pool_{};
};

/// Base for objects that should come from the recycling allocator.
struct Recycled {
    static void* operator new(std::size_t size) { return RecyclingAllocator::allocate(size); }
    static void operator delete(void* ptr, std::size_t size) noexcept {
        RecyclingAllocator::deallocate(ptr, size);
    }
};

}  // namespace asyncio::detail
