// The steady state allocates nothing from the global heap: this executable
// replaces operator new and counts the calls made while a workload repeats
// after a warm-up (DESIGN: no allocation per call_soon, per await of a leaf
// operation, or per I/O completion; frames and states come from the
// per-thread recycling allocator).
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "counting_new.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;

namespace {

/// Allocations made by `body()` on its `rounds`-th and later repetitions.
template <class Body>
long steady_state_allocations(Body&& body, int warmup = 3, int rounds = 50) {
    for (int i = 0; i < warmup; ++i)
        body();
    const long before = asyncio_test::global_allocations();
    for (int i = 0; i < rounds; ++i)
        body();
    return asyncio_test::global_allocations() - before;
}

Coro<int> trivial() {
    co_return 1;
}

}  // namespace

TEST_CASE("call_soon of a small callable allocates nothing") {
    auto loop = asyncio::new_event_loop();
    int counter = 0;
    const long n = steady_state_allocations([&] {
        for (int i = 0; i < 100; ++i)
            loop->call_soon([&counter] { ++counter; });
        loop->stop();
        loop->run_forever();
    });
    CHECK(n == 0);
    CHECK(counter > 0);
}

TEST_CASE("call_soon_threadsafe allocates nothing") {
    auto loop = asyncio::new_event_loop();
    int counter = 0;
    const long n = steady_state_allocations([&] {
        for (int i = 0; i < 100; ++i)
            loop->call_soon_threadsafe([&counter] { ++counter; });
        loop->stop();
        loop->run_forever();
    });
    CHECK(n == 0);
}

TEST_CASE("create_task and its completion allocate nothing") {
    auto loop = asyncio::new_event_loop();
    const long n = steady_state_allocations([&] {
        for (int i = 0; i < 100; ++i)
            loop->create_task(trivial());
        loop->stop();
        loop->run_forever();
    });
    CHECK(n == 0);
    CHECK(loop->stats().tasks == 0);
}

TEST_CASE("awaiting futures, sleep(0) and timers allocates nothing") {
    auto loop = asyncio::new_event_loop();
    auto body = []() -> Coro<int> {
        auto done = asyncio::get_running_loop().create_future<int>();
        done.set_result(2);
        int sum = 0;
        for (int i = 0; i < 50; ++i) {
            sum += co_await done;
            co_await asyncio::sleep(0);
            co_await asyncio::sleep(1us);
            auto pending = asyncio::get_running_loop().create_future<int>();
            asyncio::get_running_loop().call_soon([pending]() mutable { pending.set_result(1); });
            sum += co_await pending;
        }
        co_return sum;
    };
    const long n =
        steady_state_allocations([&] { CHECK(loop->run_until_complete(body()) == 150); }, 3, 10);
    CHECK(n == 0);
}

TEST_CASE("an I/O operation that waits and completes allocates nothing") {
    const auto sv = asyncio_test::socket_pair(/*non_blocking=*/true);
    auto loop = asyncio::new_event_loop();
    auto ping = [](int reader, int writer) -> Coro<int> {
        char byte = 0;
        int got = 0;
        for (int i = 0; i < 50; ++i) {
            asyncio::get_running_loop().call_soon([writer] {
                const char c = 'x';
                REQUIRE(asyncio_test::raw_send(writer, &c, 1) == 1);
            });
            asyncio::detail::IoAwaiter op(asyncio::get_running_loop().backend());
            op.kind = asyncio::IoOp::Kind::recv;
            op.fd = reader;
            op.buf = &byte;
            op.len = 1;
            got += static_cast<int>(co_await op);
        }
        co_return got;
    };
    const long n = steady_state_allocations(
        [&] { CHECK(loop->run_until_complete(ping(sv[0], sv[1])) == 50); }, 3, 10);
    CHECK(n == 0);
    loop->backend().forget_fd(sv[0]);
    asyncio_test::close_socket(sv[0]);
    asyncio_test::close_socket(sv[1]);
}

TEST_CASE("the count sees allocations: a callable too big to store inline allocates") {
    auto loop = asyncio::new_event_loop();
    std::array<long, 32> big{};
    long sum = 0;
    const long n = steady_state_allocations([&] {
        loop->call_soon([big, &sum] { sum += big[0] + 1; });
        loop->stop();
        loop->run_forever();
    });
    CHECK(n == 50);
    CHECK(sum > 0);
}

TEST_CASE("many tasks pending at once reuse their blocks: the next round allocates nothing") {
    // 100,000 pending tasks need more than the 8 MiB a thread once cached
    // (beyond which blocks went back to malloc); every freed block is kept.
    constexpr int kTasks = 100000;
    auto loop = asyncio::new_event_loop();
    std::vector<asyncio::Task<>> tasks;
    tasks.reserve(kTasks);
    auto waiter = [](asyncio::Event& go) -> Coro<void> { co_await go.wait(); };
    const long n = steady_state_allocations(
        [&] {
            loop->run_until_complete([&]() -> Coro<void> {
                asyncio::Event go;
                for (int i = 0; i < kTasks; ++i)
                    tasks.push_back(asyncio::create_task(waiter(go)));
                co_await asyncio::sleep(0);  // every task waits now
                go.set();
                for (asyncio::Task<>& task : tasks)
                    co_await task;
                tasks.clear();
            }());
        },
        1, 2);
    CHECK(n == 0);
}

TEST_CASE("a block freed on another thread than its own is reused there") {
    using asyncio::detail::RecyclingAllocator;
    void* block = RecyclingAllocator::allocate(300);
    void* reused = nullptr;
    std::thread([&] {
        RecyclingAllocator::deallocate(block, 300);
        reused = RecyclingAllocator::allocate(300);
        RecyclingAllocator::deallocate(reused, 300);
    }).join();
    CHECK(reused == block);
}

TEST_CASE("a thread that exits hands the blocks it freed to the next thread") {
    using asyncio::detail::RecyclingAllocator;
    void* freed = nullptr;
    std::thread([&] {
        freed = RecyclingAllocator::allocate(200);
        RecyclingAllocator::deallocate(freed, 200);
    }).join();
    void* reused = nullptr;
    std::thread([&] {
        reused = RecyclingAllocator::allocate(200);
        RecyclingAllocator::deallocate(reused, 200);
    }).join();
    CHECK(reused == freed);
}
