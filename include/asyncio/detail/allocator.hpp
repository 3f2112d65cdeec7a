// Per-thread recycling allocator for coroutine frames, future and task
// states and callback handles: the loop's steady state allocates nothing from
// the global heap, and spawning a task with a million alive costs about
// twice what it does with a thousand (docs/performance.md).
//
// Blocks are rounded up to a size class of 16-byte steps and kept on a
// per-thread free list when released. New blocks are carved one after the
// other from 64 KiB arenas: no malloc header per block, and tasks spawned
// together sit together. Blocks are not given back to the system: a thread
// keeps what it freed for its next tasks, and hands it to the next thread
// that allocates when it exits; the footprint is the peak. A block may be
// released on another thread than the one that allocated it (a coroutine
// created on one thread and run by a loop on another): blocks of one class
// are interchangeable, so any thread's list can take it.
//
// Under AddressSanitizer every new block comes from ::operator new of its
// class size instead, so that overflows past a block still hit a redzone;
// building the library with ASYNCIO_ALLOCATOR_PER_BLOCK defined does the
// same for heap profilers and valgrind.
#pragma once

#include <cstddef>
#include <new>

#include "asyncio/export.hpp"

namespace asyncio::detail {

class ASYNCIO_EXPORT RecyclingAllocator {
  public:
    static constexpr std::size_t kGranule = 16;
    static constexpr std::size_t kClasses = 129;  // blocks up to 2 KiB are recycled
    static constexpr std::size_t kArenaBytes = 64u << 10;

    static void* allocate(std::size_t size) {
        const std::size_t cls = size_class(size);
        if (cls >= kClasses) return ::operator new(size);
        Pool& pool = this_thread_pool();
        if (pool.state == Pool::active) [[likely]] {
            if (FreeBlock* block = pool.heads[cls]) {
                // The next allocation of this class reads the new head: start
                // loading it now, as a free list is a chain of cache misses
                // once it outgrows the cache.
                __builtin_prefetch(block->next, 1);
                pool.heads[cls] = block->next;
                return block;
            }
        }
        return allocate_slow(cls);
    }

    static void deallocate(void* ptr, std::size_t size) noexcept {
        const std::size_t cls = size_class(size);
        if (cls >= kClasses) {
            ::operator delete(ptr);
            return;
        }
        Pool& pool = this_thread_pool();
        if (pool.state == Pool::active) [[likely]] {
            push(pool, ptr, cls);
            return;
        }
        deallocate_slow(ptr, cls);
    }

  private:
    struct FreeBlock {
        FreeBlock* next;
    };

    // Trivially destructible, so reaching it costs no TLS guard; activate()
    // registers the cleanup that hands it on when the thread exits.
    struct Pool {
        enum State : unsigned char { uninitialized, active, dead };
        FreeBlock* heads[kClasses];
        char* arena_next;  // the current arena's uncarved rest
        std::size_t arena_left;
        State state;
    };

    static constexpr std::size_t size_class(std::size_t size) noexcept {
        return size == 0 ? 1 : (size + kGranule - 1) / kGranule;
    }
    static constexpr std::size_t class_bytes(std::size_t cls) noexcept { return cls * kGranule; }

    static void push(Pool& pool, void* ptr, std::size_t cls) noexcept {
        auto* block = static_cast<FreeBlock*>(ptr);
        block->next = pool.heads[cls];
        pool.heads[cls] = block;
    }

    // src/allocator.cpp
    static void* allocate_slow(std::size_t cls);
    static void deallocate_slow(void* ptr, std::size_t cls) noexcept;
    static void activate() noexcept;
    static void* carve(Pool& pool, std::size_t bytes);
    friend struct PoolReaper;

#ifdef _WIN32
    // mingw-w64's emulated TLS may free a thread_local before the code run
    // at thread exit reads it (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=80816),
    // which would lose the pool's blocks: there the pool lives on the heap,
    // reached through a pointer that starts at a shared pool that is never
    // active, so the fast paths need no null check. The pointer is in
    // src/allocator.cpp, as a DLL cannot export a thread_local
    // (detail/per_thread.hpp).
    static Pool& this_thread_pool() noexcept { return *this_thread_pool_slot(); }
    static Pool*& this_thread_pool_slot() noexcept;
#else
    static Pool& this_thread_pool() noexcept { return pool_; }
    static constinit inline thread_local Pool pool_{};
#endif
};

/// Base for objects that should come from the recycling allocator.
struct Recycled {
    static void* operator new(std::size_t size) { return RecyclingAllocator::allocate(size); }
    static void operator delete(void* ptr, std::size_t size) noexcept {
        RecyclingAllocator::deallocate(ptr, size);
    }
};

}  // namespace asyncio::detail
