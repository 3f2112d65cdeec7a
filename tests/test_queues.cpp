// Queues: ports of CPython's Lib/test/test_asyncio/test_queues.py
// (QueueBasicTests, QueueGetTests, QueuePutTests, LifoQueueTests,
// PriorityQueueTests, the join and 3.13 shutdown mixins for all three
// kinds), plus a test per cancellation race (a getter or putter woken and
// then cancelled must pass the wake-up on; the item stays in the queue),
// move-only items, and a count of global allocations showing that waiting
// on a queue or a lock allocates nothing in the steady state.
//
// Python's `await asyncio.sleep(0)` lets every ready task run one step; the
// tests synchronise on exactly that, never on wall-clock time.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "counting_new.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::QueueShutDown;
using asyncio::Task;
using asyncio_test::ends_cancelled;
using asyncio_test::iterations;
using asyncio_test::run_guarded;
using asyncio_test::settle;

namespace {

bool contains(const std::string& s, const std::string& needle) {
    return s.find(needle) != std::string::npos;
}

/// Awaits `task`; true if that threw QueueShutDown.
template <class T>
Coro<bool> ends_shut_down(Task<T> task) {
    bool shut_down = false;
    try {
        co_await task;
    } catch (const QueueShutDown&) {
        shut_down = true;
    }
    co_return shut_down;
}

template <class Q>
Coro<typename Q::value_type> get_from(Q& q) {
    co_return co_await q.get();
}

template <class Q, class T>
Coro<void> put_into(Q& q, T item) {
    co_await q.put(std::move(item));
}

/// Whether `q.get()` throws QueueShutDown.
template <class Q>
Coro<bool> get_shut_down(Q& q) {
    bool shut_down = false;
    try {
        co_await q.get();
    } catch (const QueueShutDown&) {
        shut_down = true;
    }
    co_return shut_down;
}

/// Whether `q.put(item)` throws QueueShutDown.
template <class Q, class T>
Coro<bool> put_shut_down(Q& q, T item) {
    bool shut_down = false;
    try {
        co_await q.put(std::move(item));
    } catch (const QueueShutDown&) {
        shut_down = true;
    }
    co_return shut_down;
}

}  // namespace

// -- QueueBasicTests ---------------------------------------------------------------------

TEST_CASE("Queue: repr shows maxsize, getters, putters and unfinished tasks") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        CHECK(q.repr().rfind("<Queue at 0x", 0) == 0);
        CHECK(contains(q.repr(), " maxsize=0>"));

        Task<int> getter = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        CHECK(contains(q.repr(), "_getters[1]"));
        q.put_nowait(0);
        const int got = co_await getter;
        CHECK(got == 0);
        CHECK(contains(q.repr(), "tasks=1"));

        asyncio::Queue<int> bounded(1);
        bounded.put_nowait(1);
        Task<void> putter = asyncio::create_task(put_into(bounded, 2));
        co_await asyncio::sleep(0);
        CHECK(contains(bounded.repr(), "maxsize=1 _putters[1] tasks=1"));
        bounded.get_nowait();
        co_await asyncio::sleep(0);
        CHECK(putter.done());

        asyncio::LifoQueue<int> lifo;
        asyncio::PriorityQueue<int> priority;
        CHECK(lifo.repr().rfind("<LifoQueue at 0x", 0) == 0);
        CHECK(priority.repr().rfind("<PriorityQueue at 0x", 0) == 0);
    };
    run_guarded(main());
}

TEST_CASE("Queue: empty") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        CHECK(q.empty());
        co_await q.put(1);
        CHECK_FALSE(q.empty());
        const int got = co_await q.get();
        CHECK(got == 1);
        CHECK(q.empty());
    };
    run_guarded(main());
}

TEST_CASE("Queue: full") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> unbounded;
        CHECK_FALSE(unbounded.full());
        asyncio::Queue<int> q(1);
        co_await q.put(1);
        CHECK(q.full());
        CHECK(q.qsize() == 1);
    };
    run_guarded(main());
}

TEST_CASE("Queue: FIFO order") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        for (int i : {1, 3, 2})
            co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i)
            items.push_back(co_await q.get());
        CHECK(items == std::vector<int>{1, 3, 2});
    };
    run_guarded(main());
}

TEST_CASE("Queue: maxsize makes put() wait") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(2);
        CHECK(q.maxsize() == 2);
        std::vector<int> have_been_put;
        auto putter = [&]() -> Coro<bool> {
            for (int i = 0; i < 3; ++i) {
                co_await q.put(i);
                have_been_put.push_back(i);
            }
            co_return true;
        };
        Task<bool> t = asyncio::create_task(putter());
        co_await iterations(2);
        CHECK(have_been_put == std::vector<int>{0, 1});  // blocked after two
        int got = co_await q.get();
        CHECK(got == 0);

        co_await asyncio::sleep(0);  // the putter resumes and puts the last one
        CHECK(have_been_put == std::vector<int>{0, 1, 2});
        got = co_await q.get();
        CHECK(got == 1);
        got = co_await q.get();
        CHECK(got == 2);
        CHECK(t.done());
        CHECK(t.result());
    };
    run_guarded(main());
}

TEST_CASE("Queue: the ring buffer keeps FIFO order as it grows around its end") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        int next_in = 0, next_out = 0;
        bool in_order = true;
        for (int round = 0; round < 6; ++round) {
            for (int i = 0; i < 7 * (round + 1); ++i)
                q.put_nowait(next_in++);
            for (int i = 0; i < 5 * (round + 1); ++i)
                in_order &= q.get_nowait() == next_out++;
        }
        while (!q.empty())
            in_order &= q.get_nowait() == next_out++;
        CHECK(in_order);
        CHECK(next_out == next_in);
        co_return;
    };
    run_guarded(main());
}

// -- QueueGetTests -----------------------------------------------------------------------

TEST_CASE("Queue: get of an available item does not wait") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        q.put_nowait(1);
        const int got = co_await q.get();
        CHECK(got == 1);
    };
    run_guarded(main());
}

TEST_CASE("Queue: get wakes a waiting putter") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        co_await q.put(1);
        Task<void> putter = asyncio::create_task(put_into(q, 2));
        co_await asyncio::sleep(0);
        CHECK_FALSE(putter.done());
        const int got = co_await q.get();
        CHECK(got == 1);
        co_await putter;
        CHECK(q.get_nowait() == 2);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a blocked get returns the item put later") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        asyncio::Event started;
        bool finished = false;
        auto queue_get = [&]() -> Coro<int> {
            started.set();
            const int res = co_await q.get();
            finished = true;
            co_return res;
        };
        Task<int> queue_get_task = asyncio::create_task(queue_get());
        co_await started.wait();
        CHECK_FALSE(finished);
        asyncio::get_running_loop().call_soon([&q] { q.put_nowait(1); });
        const int res = co_await queue_get_task;
        CHECK(finished);
        CHECK(res == 1);
    };
    run_guarded(main());
}

TEST_CASE("Queue: get_nowait") {
    asyncio::Queue<int> q;
    q.put_nowait(1);
    CHECK(q.get_nowait() == 1);
    CHECK_THROWS_AS(q.get_nowait(), asyncio::QueueEmpty);
}

TEST_CASE("Queue: a getter cancelled before any put is skipped") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::string> q;
        Task<std::string> t1 = asyncio::create_task(get_from(q));
        Task<std::string> t2 = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        t1.cancel();
        co_await asyncio::sleep(0);
        CHECK(t1.done());
        co_await q.put("a");
        co_await asyncio::sleep(0);
        const std::string got = co_await t2;
        CHECK(got == "a");
    };
    run_guarded(main());
}

TEST_CASE("Queue: get with waiting putters") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::string> q(1);
        asyncio::create_task(put_into(q, std::string("a")));
        asyncio::create_task(put_into(q, std::string("b")));
        std::string got = co_await q.get();
        CHECK(got == "a");
        got = co_await q.get();
        CHECK(got == "b");
    };
    run_guarded(main());
}

TEST_CASE("Queue: getters and putters on a queue of one") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        constexpr int n = 5;
        auto producer = [&]() -> Coro<void> {
            for (int i = 0; i < n; ++i)
                co_await q.put(i);
        };
        std::vector<int> got;
        auto consumer = [&]() -> Coro<void> {
            for (int i = 0; i < n; ++i)
                got.push_back(co_await q.get());
        };
        Task<void> p = asyncio::create_task(producer());
        Task<void> c = asyncio::create_task(consumer());
        co_await asyncio::gather(p, c);
        CHECK(got == std::vector<int>{0, 1, 2, 3, 4});
    };
    run_guarded(main());
}

TEST_CASE("Queue: a getter that timed out is not kept") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(5);
        bool timed_out = false;
        try {
            co_await asyncio::wait_for(q.get(), 1ms);  // nothing is ever put
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK_FALSE(contains(q.repr(), "_getters"));
    };
    run_guarded(main());
}

// -- QueuePutTests -----------------------------------------------------------------------

TEST_CASE("Queue: put to an unbounded queue does not wait") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        co_await q.put(1);
        const int got = co_await q.get();
        CHECK(got == 1);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a blocked put resumes once an item is taken") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        asyncio::Event started;
        bool finished = false;
        auto queue_put = [&]() -> Coro<void> {
            started.set();
            co_await q.put(1);
            co_await q.put(2);
            finished = true;
        };
        Task<void> queue_put_task = asyncio::create_task(queue_put());
        co_await started.wait();
        CHECK_FALSE(finished);  // blocked on the second put
        // Python uses call_later(0.01, ...): what matters is that it runs
        // while the putter is blocked.
        asyncio::get_running_loop().call_soon([&q] { q.get_nowait(); });
        co_await queue_put_task;
        CHECK(finished);
    };
    run_guarded(main());
}

TEST_CASE("Queue: put_nowait") {
    asyncio::Queue<int> q;
    q.put_nowait(1);
    CHECK(q.get_nowait() == 1);
    asyncio::Queue<int> bounded(1);
    bounded.put_nowait(1);
    CHECK_THROWS_AS(bounded.put_nowait(2), asyncio::QueueFull);
}

TEST_CASE("Queue: an item put for a getter that is then cancelled is not lost") {
    // CPython's test_get_cancel_drop_one_pending_reader.
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        Task<int> reader = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        q.put_nowait(1);
        q.put_nowait(2);
        reader.cancel();
        const bool cancelled = co_await ends_cancelled(reader);
        CHECK(cancelled);
        reader = asyncio::create_task(get_from(q));  // try again
        const int result = co_await reader;
        CHECK(result == 1);  // 2 would mean that 1 was dropped
    };
    run_guarded(main());
}

TEST_CASE("Queue: items put for several getters survive one being cancelled") {
    // CPython's test_get_cancel_drop_many_pending_readers.
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        Task<int> reader1 = asyncio::create_task(get_from(q));
        Task<int> reader2 = asyncio::create_task(get_from(q));
        Task<int> reader3 = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        q.put_nowait(1);
        q.put_nowait(2);
        reader1.cancel();
        const bool cancelled = co_await ends_cancelled(reader1);
        CHECK(cancelled);
        co_await iterations(2);
        CHECK(reader2.done());
        CHECK(reader3.done());
        if (reader2.done() && reader3.done()) {
            const int r2 = reader2.result();
            const int r3 = reader3.result();
            CHECK(std::min(r2, r3) == 1);
            CHECK(std::max(r2, r3) == 2);
        }
        reader2.cancel();  // if a wake-up was lost
        reader3.cancel();
        co_await settle(reader2);
        co_await settle(reader3);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a slot freed for a putter that is then cancelled is not lost") {
    // CPython's test_put_cancel_drop.
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        q.put_nowait(1);
        Task<void> writer = asyncio::create_task(put_into(q, 2));
        co_await asyncio::sleep(0);
        CHECK(q.get_nowait() == 1);
        writer.cancel();
        const bool cancelled = co_await ends_cancelled(writer);
        CHECK(cancelled);
        writer = asyncio::create_task(put_into(q, 2));  // try again
        co_await writer;
        CHECK(q.get_nowait() == 2);
        CHECK(q.qsize() == 0);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a put that did not have to wait completes") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        auto queue_put = [&]() -> Coro<bool> {
            co_await q.put(1);
            co_return true;
        };
        Task<bool> t = asyncio::create_task(queue_put());
        const int got = co_await q.get();
        CHECK(got == 1);
        CHECK(t.done());
        CHECK(t.result());
    };
    run_guarded(main());
}

TEST_CASE("Queue: a putter cancelled before a slot frees is skipped") {
    // CPython's test_put_cancelled_race.
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::string> q(1);
        Task<void> put_a = asyncio::create_task(put_into(q, std::string("a")));
        Task<void> put_b = asyncio::create_task(put_into(q, std::string("b")));
        Task<void> put_c = asyncio::create_task(put_into(q, std::string("X")));
        co_await asyncio::sleep(0);
        CHECK(put_a.done());
        CHECK_FALSE(put_b.done());

        put_c.cancel();
        co_await asyncio::sleep(0);
        CHECK(put_c.done());
        CHECK(q.get_nowait() == "a");
        co_await asyncio::sleep(0);
        CHECK(q.get_nowait() == "b");
        co_await put_b;
    };
    run_guarded(main());
}

TEST_CASE("Queue: put wakes a waiting getter") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::string> q;
        Task<std::string> t = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        co_await q.put("a");
        const std::string got = co_await t;
        CHECK(got == "a");
    };
    run_guarded(main());
}

TEST_CASE("Queue: putters wait for a getter that empties the queue") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(2);
        auto getter = [&]() -> Coro<void> {
            co_await asyncio::sleep(0);
            const std::size_t num = q.qsize();
            for (std::size_t i = 0; i < num; ++i)
                q.get_nowait();
        };
        Task<void> g = asyncio::create_task(getter());
        std::vector<Task<void>> putters;
        for (int i = 0; i < 4; ++i)
            putters.push_back(asyncio::create_task(put_into(q, i)));
        co_await g;
        co_await asyncio::gather(putters);
        CHECK(q.qsize() == 2);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a cancelled putter is not kept") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        q.put_nowait(1);
        Task<void> put_task = asyncio::create_task(put_into(q, 1));
        co_await asyncio::sleep(0);
        CHECK(contains(q.repr(), "_putters[1]"));
        put_task.cancel();
        const bool cancelled = co_await ends_cancelled(put_task);
        CHECK(cancelled);
        CHECK_FALSE(contains(q.repr(), "_putters"));
    };
    run_guarded(main());
}

TEST_CASE("Queue: a putter woken by get_nowait and then cancelled throws CancelledError") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        q.put_nowait(1);
        Task<void> put_task = asyncio::create_task(put_into(q, 1));
        co_await asyncio::sleep(0);
        q.get_nowait();  // wakes the putter
        put_task.cancel();
        const bool cancelled = co_await ends_cancelled(put_task);
        CHECK(cancelled);
        CHECK(q.empty());  // the cancelled put did not put
    };
    run_guarded(main());
}

// -- the cancellation races, one by one --------------------------------------------------

TEST_CASE("Queue: a getter woken and then cancelled passes the wake-up on") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        Task<int> g1 = asyncio::create_task(get_from(q));
        Task<int> g2 = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        q.put_nowait(7);  // wakes g1
        g1.cancel();      // before g1 has run
        co_await iterations(3);
        CHECK(g1.cancelled());
        CHECK(g2.done());  // else the item would sit in the queue, g2 asleep
        CHECK(q.empty());
        if (g2.done()) {
            CHECK(g2.result() == 7);
        } else {
            g2.cancel();
            co_await settle(g2);
        }
    };
    run_guarded(main());
}

TEST_CASE("Queue: an item woken for a cancelled getter stays in the queue") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::unique_ptr<int>> q;
        Task<std::unique_ptr<int>> g = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        q.put_nowait(std::make_unique<int>(7));
        g.cancel();
        const bool cancelled = co_await ends_cancelled(g);
        CHECK(cancelled);
        REQUIRE(q.qsize() == 1);
        CHECK(*q.get_nowait() == 7);
    };
    run_guarded(main());
}

TEST_CASE("Queue: a putter woken and then cancelled passes the free slot on") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<std::string> q(1);
        q.put_nowait("x");
        Task<void> p1 = asyncio::create_task(put_into(q, std::string("a")));
        Task<void> p2 = asyncio::create_task(put_into(q, std::string("b")));
        co_await asyncio::sleep(0);
        CHECK(q.get_nowait() == "x");  // wakes p1
        p1.cancel();                   // before p1 has run
        co_await iterations(3);
        CHECK(p1.cancelled());
        CHECK(p2.done());  // else the slot would stay free, p2 asleep
        CHECK(q.qsize() == 1);
        if (!q.empty()) CHECK(q.get_nowait() == "b");
        if (!p2.done()) p2.cancel();
        co_await settle(p2);
    };
    run_guarded(main());
}

TEST_CASE("Queue: getters are woken in FIFO order") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        std::vector<Task<int>> getters;
        for (int i = 0; i < 5; ++i)
            getters.push_back(asyncio::create_task(get_from(q)));
        co_await asyncio::sleep(0);
        for (int i = 0; i < 5; ++i)
            q.put_nowait(i);
        std::vector<int> got = co_await asyncio::gather(getters);
        CHECK(got == std::vector<int>{0, 1, 2, 3, 4});
    };
    run_guarded(main());
}

TEST_CASE("Queue: putters are woken in FIFO order") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q(1);
        q.put_nowait(-1);
        std::vector<Task<void>> putters;
        for (int i = 0; i < 5; ++i)
            putters.push_back(asyncio::create_task(put_into(q, i)));
        co_await asyncio::sleep(0);
        std::vector<int> got;
        for (int i = 0; i < 6; ++i)
            got.push_back(co_await q.get());
        CHECK(got == std::vector<int>{-1, 0, 1, 2, 3, 4});
        co_await asyncio::gather(putters);
    };
    run_guarded(main());
}

TEST_CASE("Queue: waiting from a second loop is a RuntimeError") {
    asyncio::Queue<int> q;
    auto get_one = [](asyncio::Queue<int>& queue) -> Coro<int> {
        Task<int> getter = asyncio::create_task(get_from(queue));
        co_await asyncio::sleep(0);
        queue.put_nowait(1);
        co_return co_await getter;
    };
    auto first = asyncio::new_event_loop();
    auto second = asyncio::new_event_loop();
    CHECK(first->run_until_complete(get_one(q)) == 1);
    CHECK_THROWS_WITH(second->run_until_complete(get_one(q)),
                      Catch::Matchers::Contains("is bound to a different event loop"));
    CHECK(q.get_nowait() == 1);  // put for the getter that was refused
    second->close();
    first->close();
}

// -- move-only items ---------------------------------------------------------------------

namespace {
/// Can only be moved: a copy anywhere on the path would not compile.
struct MoveOnly {
    explicit MoveOnly(int v) : value(v) {}
    MoveOnly(MoveOnly&&) noexcept = default;
    MoveOnly& operator=(MoveOnly&&) noexcept = default;
    MoveOnly(const MoveOnly&) = delete;
    MoveOnly& operator=(const MoveOnly&) = delete;
    friend bool operator<(const MoveOnly& a, const MoveOnly& b) { return a.value < b.value; }
    int value;
};
}  // namespace

TEMPLATE_TEST_CASE("Queue: move-only items, waiting and not", "", asyncio::Queue<MoveOnly>,
                   asyncio::LifoQueue<MoveOnly>, asyncio::PriorityQueue<MoveOnly>) {
    auto main = []() -> Coro<void> {
        TestType q(2);
        Task<MoveOnly> getter = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);
        co_await q.put(MoveOnly(1));  // to the waiting getter
        MoveOnly first = co_await getter;
        CHECK(first.value == 1);

        q.put_nowait(MoveOnly(2));
        co_await q.put(MoveOnly(3));
        Task<void> putter = asyncio::create_task(put_into(q, MoveOnly(4)));  // waits: full
        co_await asyncio::sleep(0);
        MoveOnly a = q.get_nowait();
        MoveOnly b = co_await q.get();
        MoveOnly c = co_await q.get();
        co_await putter;
        CHECK(a.value + b.value + c.value == 2 + 3 + 4);
        CHECK(q.empty());
    };
    run_guarded(main());
}

// -- LifoQueue, PriorityQueue ------------------------------------------------------------

TEST_CASE("LifoQueue: order") {
    auto main = []() -> Coro<void> {
        asyncio::LifoQueue<int> q;
        for (int i : {1, 3, 2})
            co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i)
            items.push_back(co_await q.get());
        CHECK(items == std::vector<int>{2, 3, 1});
    };
    run_guarded(main());
}

TEST_CASE("PriorityQueue: order") {
    auto main = []() -> Coro<void> {
        asyncio::PriorityQueue<int> q;
        for (int i : {1, 3, 2})
            co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i)
            items.push_back(co_await q.get());
        CHECK(items == std::vector<int>{1, 2, 3});
    };
    run_guarded(main());
}

TEST_CASE("PriorityQueue: (priority, data) entries and a custom Compare") {
    auto main = []() -> Coro<void> {
        asyncio::PriorityQueue<std::pair<int, std::string>> jobs;
        jobs.put_nowait({2, "write"});
        jobs.put_nowait({0, "wake up"});
        jobs.put_nowait({1, "coffee"});
        std::vector<std::string> order;
        while (!jobs.empty())
            order.push_back(jobs.get_nowait().second);
        CHECK(order == std::vector<std::string>{"wake up", "coffee", "write"});

        asyncio::PriorityQueue<int, std::greater<int>> largest_first(0, std::greater<int>());
        for (int i : {5, 9, 1, 7})
            co_await largest_first.put(i);
        std::vector<int> items;
        while (!largest_first.empty())
            items.push_back(co_await largest_first.get());
        CHECK(items == std::vector<int>{9, 7, 5, 1});
    };
    run_guarded(main());
}

// -- join, for each kind of queue --------------------------------------------------------

#define ALL_QUEUES asyncio::Queue<int>, asyncio::LifoQueue<int>, asyncio::PriorityQueue<int>

TEMPLATE_TEST_CASE("Queues: task_done called too many times is a ValueError", "", ALL_QUEUES) {
    TestType q;
    CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    CHECK_THROWS_WITH(q.task_done(), "task_done() called too many times");
}

TEMPLATE_TEST_CASE("Queues: join waits until every item is done", "", ALL_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q;
        for (int i = 0; i < 100; ++i)
            q.put_nowait(i);
        int accumulator = 0;
        bool running = true;
        auto worker = [&]() -> Coro<void> {
            while (running) {
                const int item = co_await q.get();
                accumulator += item;
                q.task_done();
            }
        };
        Task<void> w1 = asyncio::create_task(worker());
        Task<void> w2 = asyncio::create_task(worker());
        co_await q.join();
        CHECK(accumulator == 4950);

        running = false;  // let the workers finish
        q.put_nowait(0);
        q.put_nowait(0);
        co_await asyncio::gather(w1, w2);
    };
    run_guarded(main());
}

TEMPLATE_TEST_CASE("Queues: join on an empty queue returns at once", "", ALL_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q;
        co_await q.join();
        co_await q.join();
    };
    run_guarded(main());
}

TEMPLATE_TEST_CASE("Queues: repr counts unfinished tasks", "", ALL_QUEUES) {
    TestType q;
    CHECK(contains(q.repr(), " maxsize=0>"));
    q.put_nowait(1);
    q.put_nowait(2);
    q.get_nowait();
    CHECK(contains(q.repr(), " maxsize=0 tasks=2>"));
}

// -- shutdown (3.13), for each kind of queue ---------------------------------------------

#define ALL_STRING_QUEUES                                         \
    asyncio::Queue<std::string>, asyncio::LifoQueue<std::string>, \
        asyncio::PriorityQueue<std::string>

TEMPLATE_TEST_CASE("Queues: repr after shutdown", "", ALL_STRING_QUEUES) {
    TestType q;
    q.shutdown();
    CHECK(contains(q.repr(), " maxsize=0 shutdown>"));
}

TEMPLATE_TEST_CASE("Queues: shutdown of an empty queue", "", ALL_STRING_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q;
        Task<std::string> get_task = asyncio::create_task(get_from(q));
        co_await asyncio::sleep(0);  // the get is pending before the shutdown

        q.shutdown(false);
        CHECK(q.qsize() == 0);
        co_await q.join();

        co_await asyncio::sleep(0);
        CHECK(get_task.done());
        bool raised = co_await ends_shut_down(get_task);
        CHECK(raised);

        raised = co_await put_shut_down(q, std::string("data"));
        CHECK(raised);
        CHECK_THROWS_AS(q.put_nowait("data"), QueueShutDown);
        raised = co_await get_shut_down(q);
        CHECK(raised);
        CHECK_THROWS_AS(q.get_nowait(), QueueShutDown);
    };
    run_guarded(main());
}

TEMPLATE_TEST_CASE("Queues: shutdown of a non-empty queue", "", ALL_STRING_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q(1);
        q.put_nowait("data");
        Task<void> join_task = asyncio::create_task(q.join());
        Task<void> put_task = asyncio::create_task(put_into(q, std::string("data2")));
        co_await asyncio::sleep(0);
        CHECK_FALSE(put_task.done());

        q.shutdown(false);  // unfinished tasks: 1 -> 1
        CHECK(q.qsize() == 1);

        co_await asyncio::sleep(0);
        CHECK(put_task.done());
        bool raised = co_await ends_shut_down(put_task);
        CHECK(raised);

        const std::string got = co_await q.get();  // what is in the queue still comes out
        CHECK(got == "data");

        co_await asyncio::sleep(0);
        CHECK_FALSE(join_task.done());

        raised = co_await put_shut_down(q, std::string("data"));
        CHECK(raised);
        CHECK_THROWS_AS(q.put_nowait("data"), QueueShutDown);
        raised = co_await get_shut_down(q);
        CHECK(raised);
        CHECK_THROWS_AS(q.get_nowait(), QueueShutDown);

        q.task_done();
        co_await asyncio::sleep(0);
        CHECK(join_task.done());
        co_await join_task;
        CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    };
    run_guarded(main());
}

TEMPLATE_TEST_CASE("Queues: immediate shutdown drops the items and releases join", "",
                   ALL_STRING_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q;
        q.put_nowait("data");
        Task<void> join_task = asyncio::create_task(q.join());

        q.shutdown(true);  // unfinished tasks: 1 -> 0
        CHECK(q.qsize() == 0);

        co_await asyncio::sleep(0);
        CHECK(join_task.done());
        co_await join_task;

        bool raised = co_await put_shut_down(q, std::string("data"));
        CHECK(raised);
        CHECK_THROWS_AS(q.put_nowait("data"), QueueShutDown);
        raised = co_await get_shut_down(q);
        CHECK(raised);
        CHECK_THROWS_AS(q.get_nowait(), QueueShutDown);
        CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
    };
    run_guarded(main());
}

TEMPLATE_TEST_CASE("Queues: immediate shutdown with an item taken but not done", "",
                   ALL_STRING_QUEUES) {
    auto main = []() -> Coro<void> {
        TestType q;
        q.put_nowait("data");
        q.put_nowait("data");
        Task<void> join_task = asyncio::create_task(q.join());
        const std::string got = co_await q.get();
        CHECK(got == "data");

        q.shutdown(true);  // unfinished tasks: 2 -> 1
        CHECK(q.qsize() == 0);

        co_await asyncio::sleep(0);
        CHECK_FALSE(join_task.done());

        bool raised = co_await put_shut_down(q, std::string("data"));
        CHECK(raised);
        CHECK_THROWS_AS(q.put_nowait("data"), QueueShutDown);
        raised = co_await get_shut_down(q);
        CHECK(raised);
        CHECK_THROWS_AS(q.get_nowait(), QueueShutDown);

        q.task_done();
        CHECK_THROWS_AS(q.task_done(), std::invalid_argument);
        co_await asyncio::sleep(0);
        CHECK(join_task.done());
        co_await join_task;
    };
    run_guarded(main());
}

TEST_CASE("Queue: shutdown wakes every blocked getter and putter") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> empty;
        Task<bool> g1 = asyncio::create_task(get_shut_down(empty));
        Task<bool> g2 = asyncio::create_task(get_shut_down(empty));
        asyncio::Queue<int> full(1);
        full.put_nowait(0);
        Task<bool> p1 = asyncio::create_task(put_shut_down(full, 1));
        Task<bool> p2 = asyncio::create_task(put_shut_down(full, 2));
        co_await asyncio::sleep(0);
        empty.shutdown();
        full.shutdown();
        auto [a, b, c, d] = co_await asyncio::gather(g1, g2, p1, p2);
        CHECK(a);
        CHECK(b);
        CHECK(c);
        CHECK(d);
        CHECK(full.get_nowait() == 0);  // not immediate: the item is still there
    };
    run_guarded(main());
}

TEST_CASE("Queue: immediate shutdown makes a getter woken by a put throw") {
    auto main = []() -> Coro<void> {
        asyncio::Queue<int> q;
        Task<bool> g = asyncio::create_task(get_shut_down(q));
        co_await asyncio::sleep(0);
        q.put_nowait(1);   // wakes the getter...
        q.shutdown(true);  // ...which then finds the queue drained
        const bool raised = co_await g;
        CHECK(raised);
    };
    run_guarded(main());
}

// -- loop teardown -----------------------------------------------------------------------

TEST_CASE("closing the loop frees woken getters and putters without losing items") {
    asyncio::Queue<std::unique_ptr<int>> q;
    asyncio::Queue<int> full(1);
    full.put_nowait(0);
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    auto run_one_iteration = [&] {
        loop->stop();
        loop->run_forever();
    };
    for (int i = 0; i < 3; ++i) {
        loop->create_task(get_from(q));
        loop->create_task(put_into(full, i + 1));
    }
    run_one_iteration();  // all of them block
    loop->call_soon([&] {
        q.put_nowait(std::make_unique<int>(42));  // wakes the first getter
        full.get_nowait();                        // wakes the first putter
    });
    run_one_iteration();  // the woken ones are scheduled, not run
    loop->close();
    CHECK(reports.contains("Task was destroyed but it is pending!"));
    REQUIRE(q.qsize() == 1);
    CHECK(*q.get_nowait() == 42);
    CHECK(full.empty());
    CHECK_FALSE(contains(q.repr(), "_getters"));
    CHECK_FALSE(contains(full.repr(), "_putters"));
}

// -- nothing allocated per wait ----------------------------------------------------------

namespace {

Coro<void> echo(asyncio::Queue<int>& in, asyncio::Queue<int>& out, int n) {
    for (int i = 0; i < n; ++i) {
        const int v = co_await in.get();
        co_await out.put(v + 1);
    }
}

Coro<void> contend(asyncio::Lock& lock, int& counter, int n) {
    for (int i = 0; i < n; ++i) {
        auto held = co_await lock;
        co_await asyncio::sleep(0);
        ++counter;
    }
}

Coro<void> contend(asyncio::Semaphore& sem, int& counter, int n) {
    for (int i = 0; i < n; ++i) {
        auto slot = co_await sem;
        co_await asyncio::sleep(0);
        ++counter;
    }
}

Coro<void> signal(asyncio::Condition& cond, asyncio::Event& event, int& state, int n) {
    for (int i = 0; i < n; ++i) {
        co_await asyncio::sleep(0);
        auto held = co_await cond;
        ++state;
        cond.notify();
    }
    co_await asyncio::sleep(0);  // the waiter gets to event.wait() first
    event.set();
}

Coro<int> exercise(asyncio::Queue<int>& a, asyncio::Queue<int>& b, asyncio::Lock& lock,
                   asyncio::Semaphore& sem, asyncio::Condition& cond, asyncio::Event& event) {
    constexpr int n = 20;
    Task<void> echo_task = asyncio::create_task(echo(a, b, n));
    int v = 0;
    for (int i = 0; i < n; ++i) {
        co_await a.put(v);
        v = co_await b.get();
    }
    co_await echo_task;

    int counter = 0;
    Task<void> l1 = asyncio::create_task(contend(lock, counter, n));
    Task<void> l2 = asyncio::create_task(contend(lock, counter, n));
    Task<void> s1 = asyncio::create_task(contend(sem, counter, n));
    Task<void> s2 = asyncio::create_task(contend(sem, counter, n));
    co_await l1;
    co_await l2;
    co_await s1;
    co_await s2;

    int state = 0;
    event.clear();
    Task<void> signaller = asyncio::create_task(signal(cond, event, state, n));
    {
        auto held = co_await cond;
        auto done = [&state] { return state == n; };
        co_await cond.wait_for(done);
    }
    co_await event.wait();
    co_await signaller;
    co_return v + counter + state;
}

}  // namespace

TEST_CASE("waiting on a queue, lock, semaphore, condition or event allocates nothing") {
    auto loop = asyncio::new_event_loop();
    asyncio::Queue<int> a, b;
    asyncio::Lock lock;
    asyncio::Semaphore sem(1);
    asyncio::Condition cond;
    asyncio::Event event;
    for (int i = 0; i < 3; ++i) {  // warm-up: frame pools, the queues' storage
        CHECK(loop->run_until_complete(exercise(a, b, lock, sem, cond, event)) == 120);
    }
    const long before = asyncio_test::global_allocations();
    for (int i = 0; i < 10; ++i) {
        CHECK(loop->run_until_complete(exercise(a, b, lock, sem, cond, event)) == 120);
    }
    CHECK(asyncio_test::global_allocations() - before == 0);
}
