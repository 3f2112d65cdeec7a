#include "asyncio/detail/allocator.hpp"

#include <mutex>
#include <utility>

#include "thread_state.hpp"

// Every new block from ::operator new of its own: set by AddressSanitizer
// builds, and definable (-DASYNCIO_ALLOCATOR_PER_BLOCK) for heap profilers
// and valgrind, which then see each frame and state as an allocation.
#ifndef ASYNCIO_ALLOCATOR_PER_BLOCK
#if defined(__SANITIZE_ADDRESS__)
#define ASYNCIO_ALLOCATOR_PER_BLOCK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNCIO_ALLOCATOR_PER_BLOCK 1
#endif
#endif
#endif

namespace asyncio::detail {

namespace {

/// Blocks of threads that exited, for the next thread that allocates, and
/// the list of every arena, which lives as long as the process. Never
/// destroyed: a thread may exit, or a frame be freed, after static
/// destruction began.
struct Orphans {
    std::mutex mutex;
    void* heads[RecyclingAllocator::kClasses] = {};
    void* arenas = nullptr;  // each arena's first word links to the next
};

Orphans& orphans() {
    static Orphans* const instance = new Orphans();
    return *instance;
}

/// Splices the singly linked list `from` (each block's first word links to
/// the next) in front of `to`.
void splice(void*& from, void*& to) noexcept {
    if (from == nullptr) return;
    if (to == nullptr) {  // the usual case: one thread exits at a time
        to = std::exchange(from, nullptr);
        return;
    }
    void** last = static_cast<void**>(from);
    while (*last != nullptr)
        last = static_cast<void**>(*last);
    *last = to;
    to = from;
    from = nullptr;
}

}  // namespace

// Hands the calling thread's blocks to the orphans when the thread exits;
// after that the pool is "dead" and what is freed on this thread goes to the
// orphans directly (coroutine frames may still be freed by later
// thread_local destructors).
struct PoolReaper {
    RecyclingAllocator::Pool& pool = RecyclingAllocator::this_thread_pool();

    // On Windows the dead pool stays allocated (about 1 KiB per
    // exited thread): the thread may still free blocks, and reads its state.
    ~PoolReaper() {
        Orphans& shared = orphans();
        std::lock_guard lock(shared.mutex);
        for (std::size_t cls = 0; cls < RecyclingAllocator::kClasses; ++cls) {
            void* head = pool.heads[cls];
            pool.heads[cls] = nullptr;
            splice(head, shared.heads[cls]);
        }
        // The arena's uncarved rest is dropped: it stays on the arena list.
        pool.arena_left = 0;
        pool.state = RecyclingAllocator::Pool::dead;
    }
};

#ifdef _WIN32
RecyclingAllocator::Pool*& RecyclingAllocator::this_thread_pool_slot() noexcept {
    static constinit Pool unready{};
    static constinit thread_local Pool* pool = &unready;
    return pool;
}
#endif

void RecyclingAllocator::activate() noexcept {
#ifdef _WIN32
    this_thread_pool_slot() = new Pool{};
#endif
    static_cast<void>(thread_state<PoolReaper>());
    Pool& pool = this_thread_pool();
    pool.state = Pool::active;
    Orphans& shared = orphans();
    std::lock_guard lock(shared.mutex);
    for (std::size_t cls = 0; cls < kClasses; ++cls)
        pool.heads[cls] = static_cast<FreeBlock*>(std::exchange(shared.heads[cls], nullptr));
}

void* RecyclingAllocator::allocate_slow(std::size_t cls) {
    if (this_thread_pool().state == Pool::uninitialized) {
        activate();
        Pool& pool = this_thread_pool();
        if (FreeBlock* block = pool.heads[cls]) {
            pool.heads[cls] = block->next;
            return block;
        }
    }
    Pool& pool = this_thread_pool();
    if (pool.state == Pool::dead) return ::operator new(class_bytes(cls));
    return carve(pool, class_bytes(cls));
}

void RecyclingAllocator::deallocate_slow(void* ptr, std::size_t cls) noexcept {
    if (this_thread_pool().state == Pool::uninitialized) {
        activate();
        push(this_thread_pool(), ptr, cls);
        return;
    }
    Orphans& shared = orphans();
    std::lock_guard lock(shared.mutex);
    *static_cast<void**>(ptr) = shared.heads[cls];
    shared.heads[cls] = ptr;
}

void* RecyclingAllocator::carve(Pool& pool, std::size_t bytes) {
#ifdef ASYNCIO_ALLOCATOR_PER_BLOCK
    (void)pool;
    return ::operator new(bytes);
#else
    if (pool.arena_left < bytes) {
        // What is left of the arena is a block of its own size class: every
        // size carved is a multiple of the granule.
        if (pool.arena_left != 0) push(pool, pool.arena_next, pool.arena_left / kGranule);
        char* arena = static_cast<char*>(::operator new(kArenaBytes));
        {
            Orphans& shared = orphans();
            std::lock_guard lock(shared.mutex);
            *reinterpret_cast<void**>(arena) = shared.arenas;
            shared.arenas = arena;
        }
        pool.arena_next = arena + kGranule;  // after the link, keeping blocks aligned
        pool.arena_left = kArenaBytes - kGranule;
    }
    void* block = pool.arena_next;
    pool.arena_next += bytes;
    pool.arena_left -= bytes;
    return block;
#endif
}

}  // namespace asyncio::detail
