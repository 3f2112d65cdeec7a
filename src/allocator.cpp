#include "asyncio/detail/allocator.hpp"

namespace asyncio::detail {

// Empties the calling thread's pool when the thread exits; after that the
// pool is "dead" and allocate/deallocate go straight to the global heap
// (coroutine frames may still be freed by later thread_local destructors).
struct PoolReaper {
    ~PoolReaper() {
        auto& pool = RecyclingAllocator::pool_;
        for (auto*& head : pool.heads) {
            while (head != nullptr) {
                auto* next = head->next;
                ::operator delete(head);
                head = next;
            }
        }
        pool.cached_bytes = 0;
        pool.state = RecyclingAllocator::Pool::dead;
    }
};

void RecyclingAllocator::activate() {
    static thread_local PoolReaper reaper;
    (void)&reaper;
    pool_.state = Pool::active;
}

}  // namespace asyncio::detail
