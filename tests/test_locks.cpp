// Synchronization primitives: ports of CPython's
// Lib/test/test_asyncio/test_locks.py (LockTests, EventTests, ConditionTests,
// SemaphoreTests, BarrierTests, including 3.13's lost-wake-up cases), plus a
// test per cancellation race: a waiter cancelled after it was chosen must
// pass its turn on, which each of those tests would see lost.
//
// Python's `await asyncio.sleep(0)` lets every ready task run one step; the
// tests synchronise on exactly that, never on wall-clock time.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::BrokenBarrierError;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Task;
using asyncio_test::ends_cancelled;
using asyncio_test::iterations;
using asyncio_test::run_guarded;
using asyncio_test::settle;

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool contains(const std::string& s, const std::string& needle) {
    return s.find(needle) != std::string::npos;
}

Coro<bool> lock_and_log(asyncio::Lock& lock, std::vector<int>& log, int tag) {
    co_await lock.acquire();
    log.push_back(tag);
    co_return true;
}

Coro<bool> wait_and_log(asyncio::Event& event, std::vector<int>& log, int tag) {
    co_await event.wait();
    log.push_back(tag);
    co_return true;
}

Coro<bool> sem_and_log(asyncio::Semaphore& sem, std::vector<int>& log, int tag) {
    co_await sem.acquire();
    log.push_back(tag);
    co_return true;
}

/// Acquires, waits to be notified, logs; keeps the lock (test_wait).
Coro<bool> cond_wait_and_log(asyncio::Condition& cond, std::vector<int>& log, int tag) {
    co_await cond.acquire();
    co_await cond.wait();
    log.push_back(tag);
    co_return true;
}

/// Acquires, waits to be notified, logs and releases (test_notify).
Coro<bool> cond_wait_log_release(asyncio::Condition& cond, std::vector<int>& log, int tag) {
    co_await cond.acquire();
    co_await cond.wait();
    log.push_back(tag);
    cond.release();
    co_return true;
}

}  // namespace

// -- Lock --------------------------------------------------------------------------------

TEST_CASE("Lock: repr") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        CHECK(ends_with(lock.repr(), "[unlocked]>"));
        CHECK(lock.repr().rfind("<asyncio.Lock object at 0x", 0) == 0);
        co_await lock.acquire();
        CHECK(ends_with(lock.repr(), "[locked]>"));
        Task<void> waiter = asyncio::create_task(lock.acquire());
        co_await asyncio::sleep(0);
        CHECK(ends_with(lock.repr(), "[locked, waiters:1]>"));
        lock.release();
        co_await waiter;
        lock.release();
    };
    run_guarded(main());
}

TEST_CASE("Lock: acquire wakes waiters in FIFO order") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        std::vector<int> result;
        co_await lock.acquire();
        Task<bool> t1 = asyncio::create_task(lock_and_log(lock, result, 1));
        Task<bool> t2 = asyncio::create_task(lock_and_log(lock, result, 2));

        co_await asyncio::sleep(0);
        CHECK(result.empty());

        lock.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});

        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});

        Task<bool> t3 = asyncio::create_task(lock_and_log(lock, result, 3));

        lock.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2});

        lock.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2, 3});

        for (Task<bool>* t : {&t1, &t2, &t3}) {
            CHECK(t->done());
            CHECK(t->result());
        }
    };
    run_guarded(main());
}

TEST_CASE("Lock: a cancelled acquire leaves no waiter behind") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        co_await lock.acquire();
        Task<void> task = asyncio::create_task(lock.acquire());
        asyncio::get_running_loop().call_soon([task]() mutable { task.cancel(); });
        const bool cancelled = co_await ends_cancelled(task);
        CHECK(cancelled);
        CHECK(ends_with(lock.repr(), "[locked]>"));
        lock.release();
        CHECK_FALSE(lock.locked());
    };
    run_guarded(main());
}

namespace {
Coro<void> lockit(asyncio::Lock& lock, std::optional<asyncio::Future<>> blocker) {
    auto held = co_await lock;
    if (blocker) co_await *blocker;
}
}  // namespace

TEST_CASE("Lock: cancel race (a cancelled waiter is skipped by release)") {
    // A holds the lock, B and C wait. B is cancelled while A releases.
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        auto fa = asyncio::get_running_loop().create_future();
        Task<void> ta = asyncio::create_task(lockit(lock, fa));
        co_await asyncio::sleep(0);
        CHECK(lock.locked());
        Task<void> tb = asyncio::create_task(lockit(lock, std::nullopt));
        co_await asyncio::sleep(0);
        CHECK(contains(lock.repr(), "waiters:1"));
        Task<void> tc = asyncio::create_task(lockit(lock, std::nullopt));
        co_await asyncio::sleep(0);
        CHECK(contains(lock.repr(), "waiters:2"));

        fa.set_result();
        tb.cancel();
        co_await asyncio::sleep(0);
        CHECK_FALSE(lock.locked());
        CHECK(ta.done());
        CHECK(tb.cancelled());
        co_await tc;
        CHECK_FALSE(lock.locked());
    };
    run_guarded(main());
}

TEST_CASE("Lock: cancel/release race takes the lock only once (bpo-32734)") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        int lock_count = 0;
        int call_count = 0;
        auto lock_it = [&]() -> Coro<void> {
            ++call_count;
            co_await lock.acquire();
            ++lock_count;
        };
        co_await lock.acquire();
        Task<void> t1 = asyncio::create_task(lock_it());
        Task<void> t2 = asyncio::create_task(lock_it());
        Task<void> t3 = asyncio::create_task(lock_it());
        co_await asyncio::sleep(0);

        asyncio::get_running_loop().call_soon([&] {
            t1.cancel();
            lock.release();
        });
        const bool cancelled = co_await ends_cancelled(t1);
        CHECK(cancelled);
        CHECK(lock_count == 1);
        CHECK(call_count == 3);
        CHECK(t1.cancelled());
        CHECK(t2.done());

        t3.cancel();
        co_await asyncio::sleep(0);
        CHECK(t3.cancelled());
    };
    run_guarded(main());
}

TEST_CASE("Lock: a waiter cancelled before release does not block the next one") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        co_await lock.acquire();
        CHECK(lock.locked());
        Task<void> tb = asyncio::create_task(lock.acquire());
        co_await asyncio::sleep(0);
        CHECK(contains(lock.repr(), "waiters:1"));

        Task<void> tc = asyncio::create_task(lock.acquire());
        tb.cancel();
        lock.release();
        co_await asyncio::sleep(0);

        CHECK(lock.locked());
        CHECK(tb.cancelled());
        co_await tc;
    };
    run_guarded(main());
}

TEST_CASE("Lock: a waiter chosen by release() and then cancelled passes the lock on") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        std::vector<int> log;
        co_await lock.acquire();
        Task<bool> t1 = asyncio::create_task(lock_and_log(lock, log, 1));
        Task<bool> t2 = asyncio::create_task(lock_and_log(lock, log, 2));
        co_await asyncio::sleep(0);

        lock.release();  // chooses t1
        t1.cancel();     // before t1 has run
        co_await iterations(3);
        CHECK(t1.cancelled());
        CHECK(t2.done());  // the turn was passed on, not lost
        CHECK(lock.locked());
        CHECK(log == std::vector<int>{2});
        if (!t2.done()) t2.cancel();
        co_await settle(t2);
    };
    run_guarded(main());
}

TEST_CASE("Lock: a newcomer cannot take the lock before the chosen waiter") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        std::vector<int> log;
        co_await lock.acquire();
        auto first = [&]() -> Coro<void> {
            auto held = co_await lock;
            log.push_back(1);
            co_await asyncio::sleep(0);
        };
        Task<void> t1 = asyncio::create_task(first());
        co_await asyncio::sleep(0);
        lock.release();
        CHECK_FALSE(lock.locked());  // free, but promised to t1
        co_await lock.acquire();     // must queue behind t1
        log.push_back(2);
        CHECK(t1.done());
        CHECK(log == std::vector<int>{1, 2});
        lock.release();
    };
    run_guarded(main());
}

TEST_CASE("Lock: release of an unlocked lock is a RuntimeError") {
    asyncio::Lock lock;
    CHECK_THROWS_AS(lock.release(), asyncio::RuntimeError);
    CHECK_THROWS_WITH(lock.release(), "Lock is not acquired.");
}

TEST_CASE("Lock: release without waiters") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        co_await lock.acquire();
        CHECK(lock.locked());
        lock.release();
        CHECK_FALSE(lock.locked());
    };
    run_guarded(main());
}

TEST_CASE("Lock: co_await lock is async with: released at scope end") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        CHECK_FALSE(lock.locked());
        {
            auto held = co_await lock;
            CHECK(lock.locked());
            CHECK(held.owns());
        }
        CHECK_FALSE(lock.locked());

        // Also when the block is left by an exception.
        auto body = [&]() -> Coro<void> {
            auto held = co_await lock;
            throw std::runtime_error("boom");
        };
        bool thrown = false;
        try {
            co_await body();
        } catch (const std::runtime_error&) {
            thrown = true;
        }
        CHECK(thrown);
        CHECK_FALSE(lock.locked());
    };
    run_guarded(main());
}

TEST_CASE("Lock: the guard moves, and releases early on request") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        auto held = co_await lock;
        asyncio::LockGuard<asyncio::Lock> moved = std::move(held);
        CHECK_FALSE(held.owns());
        CHECK(moved.owns());
        CHECK(lock.locked());
        moved.release();
        CHECK_FALSE(moved);
        CHECK_FALSE(lock.locked());
        moved.release();  // nothing left to release
    };
    run_guarded(main());
}

TEST_CASE("Lock: a release error at scope end goes to the exception handler") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        asyncio::Lock lock;
        {
            auto held = co_await lock;
            lock.release();  // by hand: the guard's release finds it unlocked
        }
        CHECK(reports.contains("releasing a lock"));
        REQUIRE(reports.contexts.size() == 1);
        CHECK_THROWS_AS(std::rethrow_exception(reports.contexts[0].exception),
                        asyncio::RuntimeError);
    };
    run_guarded(main());
}

TEST_CASE("Lock: cancelling the holder releases the lock through its guard") {
    auto main = []() -> Coro<void> {
        asyncio::Lock lock;
        auto holder = [&]() -> Coro<void> {
            auto held = co_await lock;
            co_await asyncio::sleep(1h);
        };
        Task<void> t = asyncio::create_task(holder());
        co_await asyncio::sleep(0);
        CHECK(lock.locked());
        t.cancel();
        const bool cancelled = co_await ends_cancelled(t);
        CHECK(cancelled);
        CHECK_FALSE(lock.locked());
    };
    run_guarded(main());
}

TEST_CASE("Lock: waiting from a second loop is a RuntimeError") {
    asyncio::Lock lock;
    auto contend = [](asyncio::Lock& l) -> Coro<void> {
        co_await l.acquire();
        Task<void> waiter = asyncio::create_task(l.acquire());
        co_await asyncio::sleep(0);
        l.release();
        co_await waiter;
        l.release();
    };
    auto first = asyncio::new_event_loop();
    auto second = asyncio::new_event_loop();
    first->run_until_complete(contend(lock));  // binds the lock to `first`
    CHECK_THROWS_WITH(second->run_until_complete(contend(lock)),
                      Catch::Matchers::Contains("is bound to a different event loop"));
    CHECK_NOTHROW(first->run_until_complete(contend(lock)));
    second->close();
    first->close();
}

// -- Event -------------------------------------------------------------------------------

TEST_CASE("Event: repr") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        CHECK(ends_with(ev.repr(), "[unset]>"));
        Task<void> waiter = asyncio::create_task(ev.wait());
        co_await asyncio::sleep(0);
        CHECK(ends_with(ev.repr(), "[unset, waiters:1]>"));
        ev.set();
        CHECK(ends_with(ev.repr(), "[set]>"));
        co_await waiter;
    };
    run_guarded(main());
}

TEST_CASE("Event: wait") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        CHECK_FALSE(ev.is_set());
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(wait_and_log(ev, result, 1));
        Task<bool> t2 = asyncio::create_task(wait_and_log(ev, result, 2));
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        Task<bool> t3 = asyncio::create_task(wait_and_log(ev, result, 3));
        ev.set();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{3, 1, 2});
        for (Task<bool>* t : {&t1, &t2, &t3}) {
            CHECK(t->done());
            CHECK(t->result());
        }
    };
    run_guarded(main());
}

TEST_CASE("Event: wait on a set event returns at once") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        ev.set();
        co_await ev.wait();
        CHECK(ev.is_set());
    };
    run_guarded(main());
}

TEST_CASE("Event: a cancelled wait leaves no waiter behind") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        Task<void> wait = asyncio::create_task(ev.wait());
        asyncio::get_running_loop().call_soon([wait]() mutable { wait.cancel(); });
        const bool cancelled = co_await ends_cancelled(wait);
        CHECK(cancelled);
        CHECK(ends_with(ev.repr(), "[unset]>"));
    };
    run_guarded(main());
}

TEST_CASE("Event: clear") {
    asyncio::Event ev;
    CHECK_FALSE(ev.is_set());
    ev.set();
    CHECK(ev.is_set());
    ev.clear();
    CHECK_FALSE(ev.is_set());
}

TEST_CASE("Event: clear with waiters does not take the wake-up back") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        std::vector<int> result;
        Task<bool> t = asyncio::create_task(wait_and_log(ev, result, 1));
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        ev.set();
        ev.clear();
        CHECK_FALSE(ev.is_set());
        ev.set();
        ev.set();

        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});
        CHECK(t.done());
        CHECK(t.result());
    };
    run_guarded(main());
}

TEST_CASE("Event: a waiter cancelled after set() is cancelled; the others still wake") {
    auto main = []() -> Coro<void> {
        asyncio::Event ev;
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(wait_and_log(ev, result, 1));
        Task<bool> t2 = asyncio::create_task(wait_and_log(ev, result, 2));
        co_await asyncio::sleep(0);
        ev.set();
        t1.cancel();
        co_await asyncio::sleep(0);
        CHECK(t1.cancelled());
        CHECK(t2.done());
        CHECK(result == std::vector<int>{2});
    };
    run_guarded(main());
}

// -- Condition ---------------------------------------------------------------------------

TEST_CASE("Condition: wait, notify and the lock hand-over") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(cond_wait_and_log(cond, result, 1));
        Task<bool> t2 = asyncio::create_task(cond_wait_and_log(cond, result, 2));
        Task<bool> t3 = asyncio::create_task(cond_wait_and_log(cond, result, 3));

        co_await asyncio::sleep(0);
        CHECK(result.empty());
        CHECK_FALSE(cond.locked());

        co_await cond.acquire();
        cond.notify();
        co_await asyncio::sleep(0);
        CHECK(result.empty());
        CHECK(cond.locked());

        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});
        CHECK(cond.locked());

        cond.notify(2);
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});
        CHECK(cond.locked());

        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2});
        CHECK(cond.locked());

        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2, 3});
        CHECK(cond.locked());

        for (Task<bool>* t : {&t1, &t2, &t3}) {
            CHECK(t->done());
            CHECK(t->result());
        }
        cond.release();
    };
    run_guarded(main());
}

TEST_CASE("Condition: a cancelled wait re-acquires the lock before it throws") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        co_await cond.acquire();
        Task<void> wait = asyncio::create_task(cond.wait());
        asyncio::get_running_loop().call_soon([wait]() mutable { wait.cancel(); });
        const bool cancelled = co_await ends_cancelled(wait);
        CHECK(cancelled);
        CHECK(ends_with(cond.repr(), "[locked]>"));  // no waiter left
        CHECK(cond.locked());
    };
    run_guarded(main());
}

TEST_CASE("Condition: cancelled while contending for the lock after a notify") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        auto& loop = asyncio::get_running_loop();
        co_await cond.acquire();
        CHECK(cond.locked());
        Task<void> wait_task = asyncio::create_task(cond.wait());
        co_await asyncio::sleep(0);
        CHECK_FALSE(cond.locked());

        // Notify, but contest the lock before cancelling.
        co_await cond.acquire();
        CHECK(cond.locked());
        cond.notify();
        loop.call_soon([wait_task]() mutable { wait_task.cancel(); });
        loop.call_soon([&cond] { cond.release(); });
        co_await settle(wait_task);
        CHECK(cond.locked());  // wait() re-acquired it, cancelled or not
    };
    run_guarded(main());
}

TEST_CASE("Condition: cancel after notify (bpo-32841)") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        bool waited = false;
        auto wait_on_cond = [&]() -> Coro<void> {
            auto held = co_await cond;
            waited = true;
            co_await cond.wait();
        };
        Task<void> waiter = asyncio::create_task(wait_on_cond());
        co_await asyncio::sleep(0);  // start waiting

        co_await cond.acquire();
        cond.notify();
        co_await asyncio::sleep(0);  // get to acquire()
        waiter.cancel();
        co_await asyncio::sleep(0);  // activate the cancellation
        cond.release();
        co_await asyncio::sleep(0);  // the cancellation happens
        CHECK(waiter.cancelled());
        CHECK(waited);
        CHECK_FALSE(cond.locked());
    };
    run_guarded(main());
}

TEST_CASE("Condition: wait without the lock is a RuntimeError") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        bool refused = false;
        try {
            co_await cond.wait();
        } catch (const asyncio::RuntimeError& e) {
            refused = std::string(e.what()) == "cannot wait on un-acquired lock";
        }
        CHECK(refused);
    };
    run_guarded(main());
}

TEST_CASE("Condition: wait_for re-checks the predicate after each notify") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        bool presult = false;
        std::vector<int> result;
        auto c1 = [&]() -> Coro<bool> {
            co_await cond.acquire();
            auto predicate = [&] { return presult; };
            co_await cond.wait_for(predicate);
            result.push_back(1);
            cond.release();
            co_return true;
        };
        Task<bool> t = asyncio::create_task(c1());
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        presult = true;
        co_await cond.acquire();
        cond.notify();
        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});
        CHECK(t.done());
        CHECK(t.result());
    };
    run_guarded(main());
}

TEST_CASE("Condition: wait_for without the lock") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        auto yes = [] { return true; };
        co_await cond.wait_for(yes);  // true at once: no need for the lock
        auto no = [] { return false; };
        bool refused = false;
        try {
            co_await cond.wait_for(no);
        } catch (const asyncio::RuntimeError&) {
            refused = true;
        }
        CHECK(refused);
    };
    run_guarded(main());
}

TEST_CASE("Condition: notify(n) wakes n waiters in FIFO order") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(cond_wait_log_release(cond, result, 1));
        Task<bool> t2 = asyncio::create_task(cond_wait_log_release(cond, result, 2));
        Task<bool> t3 = asyncio::create_task(cond_wait_log_release(cond, result, 3));
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        co_await cond.acquire();
        cond.notify(1);
        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});

        co_await cond.acquire();
        cond.notify(1);
        cond.notify(2048);
        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2, 3});
        for (Task<bool>* t : {&t1, &t2, &t3}) {
            CHECK(t->done());
            CHECK(t->result());
        }
    };
    run_guarded(main());
}

TEST_CASE("Condition: notify_all") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(cond_wait_log_release(cond, result, 1));
        Task<bool> t2 = asyncio::create_task(cond_wait_log_release(cond, result, 2));
        co_await asyncio::sleep(0);
        CHECK(result.empty());

        co_await cond.acquire();
        cond.notify_all();
        cond.release();
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1, 2});
        CHECK(t1.result());
        CHECK(t2.result());
    };
    run_guarded(main());
}

TEST_CASE("Condition: notify without the lock is a RuntimeError") {
    asyncio::Condition cond;
    CHECK_THROWS_AS(cond.notify(), asyncio::RuntimeError);
    CHECK_THROWS_WITH(cond.notify_all(), "cannot notify on un-acquired lock");
}

TEST_CASE("Condition: repr") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        CHECK(contains(cond.repr(), "[unlocked]"));
        co_await cond.acquire();
        CHECK(contains(cond.repr(), "[locked]"));
        Task<void> w1 = asyncio::create_task(cond.wait());
        co_await asyncio::sleep(0);
        co_await cond.acquire();  // w1 released it to wait
        CHECK(contains(cond.repr(), "[locked, waiters:1]"));
        Task<void> w2 = asyncio::create_task(cond.wait());
        co_await asyncio::sleep(0);
        CHECK(contains(cond.repr(), "waiters:2"));
        co_await cond.acquire();
        cond.notify_all();
        cond.release();
        co_await w1;  // each re-acquires in turn and keeps it
        cond.release();
        co_await w2;
        cond.release();
    };
    run_guarded(main());
}

TEST_CASE("Condition: co_await cond is async with") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        CHECK_FALSE(cond.locked());
        {
            auto held = co_await cond;
            CHECK(cond.locked());
        }
        CHECK_FALSE(cond.locked());
    };
    run_guarded(main());
}

TEST_CASE("Condition: an explicit lock is shared with the condition") {
    auto f = [](asyncio::Lock& lock, asyncio::Condition& cond) -> Coro<void> {
        CHECK_FALSE(lock.locked());
        CHECK_FALSE(cond.locked());
        {
            auto held = co_await cond;
            CHECK(lock.locked());
            CHECK(cond.locked());
        }
        CHECK_FALSE(lock.locked());
        CHECK_FALSE(cond.locked());
        {
            auto held = co_await lock;
            CHECK(lock.locked());
            CHECK(cond.locked());
        }
        CHECK_FALSE(lock.locked());
        CHECK_FALSE(cond.locked());
    };
    asyncio::Lock lock;
    asyncio::Condition cond(&lock);
    run_guarded(f(lock, cond));
    asyncio::Condition other(&lock);
    run_guarded(f(lock, other));
}

TEST_CASE("Condition: used from a second loop is a RuntimeError") {
    asyncio::Condition cond;
    auto wait_briefly = [](asyncio::Condition& c) -> Coro<void> {
        auto held = co_await c;
        try {
            co_await asyncio::wait_for(c.wait(), 1ms);  // nobody notifies
        } catch (const asyncio::TimeoutError&) {
        }
    };
    auto first = asyncio::new_event_loop();
    auto second = asyncio::new_event_loop();
    first->run_until_complete(wait_briefly(cond));  // binds the condition to `first`
    CHECK_THROWS_WITH(second->run_until_complete(wait_briefly(cond)),
                      Catch::Matchers::Contains("is bound to a different event loop"));
    CHECK_FALSE(cond.locked());  // refused before it released anything
    second->close();
    first->close();
}

TEST_CASE("Condition: a timeout inside the block re-acquires the lock") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        auto held = co_await cond;
        bool timed_out = false;
        try {
            co_await asyncio::wait_for(cond.wait(), 1ms);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(cond.locked());
    };
    run_guarded(main());
}

TEST_CASE("Condition: a cancellation while waiting for a notify propagates unchanged") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        bool wake = false;
        std::string raised;
        auto func = [&]() -> Coro<void> {
            auto held = co_await cond;
            try {
                auto predicate = [&] { return wake; };
                co_await cond.wait_for(predicate);
            } catch (const CancelledError& e) {
                raised = e.message();
                CHECK(cond.locked());
                throw;
            }
        };
        Task<void> task = asyncio::create_task(func());
        co_await asyncio::sleep(0);
        task.cancel("foo");
        std::string seen;
        try {
            co_await task;
        } catch (const CancelledError& e) {
            seen = e.message();
        }
        CHECK(seen == "foo");
        CHECK(raised == "foo");
        CHECK_FALSE(cond.locked());
    };
    run_guarded(main());
}

TEST_CASE("Condition: a cancellation while re-acquiring the lock propagates unchanged") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        bool wake = false;
        std::string raised;
        auto func = [&]() -> Coro<void> {
            auto held = co_await cond;
            try {
                auto predicate = [&] { return wake; };
                co_await cond.wait_for(predicate);
            } catch (const CancelledError& e) {
                raised = e.message();
                CHECK(cond.locked());
                throw;
            }
        };
        Task<void> task = asyncio::create_task(func());
        co_await asyncio::sleep(0);
        co_await cond.acquire();
        wake = true;
        cond.notify();
        co_await asyncio::sleep(0);  // the task now waits for the lock
        task.cancel("foo");
        cond.release();
        std::string seen;
        try {
            co_await task;
        } catch (const CancelledError& e) {
            seen = e.message();
        }
        CHECK(seen == "foo");
        CHECK(raised == "foo");
        CHECK_FALSE(cond.locked());
    };
    run_guarded(main());
}

namespace {
/// CPython's test_cancelled_wakeup consumer: takes units of `state` one
/// at a time until it goes negative.
Coro<void> consumer(asyncio::Condition& cond, int& state) {
    auto held = co_await cond;
    for (;;) {
        auto nonzero = [&state] { return state != 0; };
        co_await cond.wait_for(nonzero);
        if (state < 0) co_return;
        state -= 1;
    }
}
}  // namespace

TEST_CASE("Condition: a waiter notified and then cancelled passes the notification on") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        int state = 0;
        Task<void> c0 = asyncio::create_task(consumer(cond, state));
        Task<void> c1 = asyncio::create_task(consumer(cond, state));
        co_await asyncio::sleep(0);
        {
            auto held = co_await cond;
            state += 1;
            cond.notify(1);  // chooses c0
            c0.cancel();     // before c0 has run
        }
        co_await iterations(5);
        CHECK(state == 0);  // c1 got the notification c0 could not act on
        CHECK(c0.cancelled());
        {
            auto held = co_await cond;
            state = -1;
            cond.notify_all();
        }
        co_await c1;
    };
    run_guarded(main());
}

TEST_CASE("Condition: a waiter cancelled while re-acquiring the lock passes the notification on") {
    auto main = []() -> Coro<void> {
        asyncio::Condition cond;
        int state = 0;
        Task<void> c0 = asyncio::create_task(consumer(cond, state));
        Task<void> c1 = asyncio::create_task(consumer(cond, state));
        co_await asyncio::sleep(0);
        {
            auto held = co_await cond;
            state += 1;
            cond.notify(1);
            co_await asyncio::sleep(0);  // c0 wakes and waits for the lock
            c0.cancel();
        }
        co_await iterations(5);
        CHECK(state == 0);
        CHECK(c0.cancelled());
        {
            auto held = co_await cond;
            state = -1;
            cond.notify_all();
        }
        co_await c1;
    };
    run_guarded(main());
}

// -- Semaphore ---------------------------------------------------------------------------

TEST_CASE("Semaphore: initial value zero is locked") {
    asyncio::Semaphore sem(0);
    CHECK(sem.locked());
}

TEST_CASE("Semaphore: repr") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem;
        CHECK(ends_with(sem.repr(), "[unlocked, value:1]>"));
        co_await sem.acquire();
        CHECK(ends_with(sem.repr(), "[locked]>"));
        CHECK_FALSE(contains(sem.repr(), "waiters"));
        Task<void> w1 = asyncio::create_task(sem.acquire());
        Task<void> w2 = asyncio::create_task(sem.acquire());
        co_await asyncio::sleep(0);
        CHECK(ends_with(sem.repr(), "[locked, waiters:2]>"));
        sem.release();
        sem.release();
        co_await w1;
        co_await w2;
        asyncio::BoundedSemaphore bounded(3);
        CHECK(bounded.repr().rfind("<asyncio.BoundedSemaphore object at", 0) == 0);
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: a negative value is a ValueError") {
    CHECK_THROWS_AS(asyncio::Semaphore(-1), std::invalid_argument);
    CHECK_THROWS_WITH(asyncio::BoundedSemaphore(-1), "Semaphore initial value must be >= 0");
    CHECK(asyncio::Semaphore(0L).locked());
    CHECK_FALSE(asyncio::Semaphore(std::size_t{2}).locked());
}

TEST_CASE("Semaphore: acquire with FIFO hand-over") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(3);
        std::vector<int> result;
        co_await sem.acquire();
        co_await sem.acquire();
        CHECK_FALSE(sem.locked());

        Task<bool> t1 = asyncio::create_task(sem_and_log(sem, result, 1));
        Task<bool> t2 = asyncio::create_task(sem_and_log(sem, result, 2));
        Task<bool> t3 = asyncio::create_task(sem_and_log(sem, result, 3));
        co_await asyncio::sleep(0);
        CHECK(result == std::vector<int>{1});
        CHECK(sem.locked());
        CHECK(contains(sem.repr(), "waiters:2"));

        Task<bool> t4 = asyncio::create_task(sem_and_log(sem, result, 4));
        sem.release();
        sem.release();
        co_await asyncio::sleep(0);
        CHECK(result.size() == 3);
        CHECK(sem.locked());
        CHECK(contains(sem.repr(), "waiters:1"));
        CHECK(t1.done());
        CHECK(t1.result());
        int done = 0;
        for (Task<bool>* t : {&t2, &t3, &t4})
            done += t->done() && t->result();
        CHECK(done == 2);

        sem.release();
        std::vector<Task<bool>> all{t2, t3, t4};
        co_await asyncio::gather(all);
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: a cancelled acquire leaves no waiter behind") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem;
        co_await sem.acquire();
        Task<void> acquire = asyncio::create_task(sem.acquire());
        asyncio::get_running_loop().call_soon([acquire]() mutable { acquire.cancel(); });
        const bool cancelled = co_await ends_cancelled(acquire);
        CHECK(cancelled);
        CHECK_FALSE(contains(sem.repr(), "waiters"));
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: waiters cancelled before a release are skipped") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(0);
        Task<void> t1 = asyncio::create_task(sem.acquire());
        Task<void> t2 = asyncio::create_task(sem.acquire());
        Task<void> t3 = asyncio::create_task(sem.acquire());
        Task<void> t4 = asyncio::create_task(sem.acquire());
        co_await asyncio::sleep(0);

        t1.cancel();
        t2.cancel();
        sem.release();
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK(t3.done());
        CHECK_FALSE(t4.done());
        t3.cancel();
        t4.cancel();
        co_await asyncio::sleep(0);
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: no hang after a cancelled waiter") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(0);
        Task<void> t1 = asyncio::create_task(sem.acquire());
        Task<void> t2 = asyncio::create_task(sem.acquire());
        co_await asyncio::sleep(0);
        t1.cancel();
        sem.release();
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK(sem.locked());
        CHECK(t2.done());
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: a holder that cancels the next waiter does not lose the slot") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(1);
        std::optional<Task<void>> t2;
        bool c2_entered = false;
        auto c1 = [&]() -> Coro<void> {
            {
                auto held = co_await sem;
                co_await asyncio::sleep(0);
            }
            t2->cancel();  // t2 was just chosen by the release above
        };
        auto c2 = [&]() -> Coro<void> {
            auto held = co_await sem;
            c2_entered = true;
        };
        Task<void> t1 = asyncio::create_task(c1());
        t2 = asyncio::create_task(c2());
        auto outcomes = co_await asyncio::gather(asyncio::return_exceptions, t1, *t2);
        CHECK(std::get<0>(outcomes).has_value());
        CHECK_THROWS_AS(std::get<1>(outcomes).value(), CancelledError);
        CHECK_FALSE(c2_entered);
        CHECK_FALSE(sem.locked());
        co_await asyncio::wait_for(sem.acquire(), 10s);
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: a waiter chosen by release() and then cancelled passes the slot on") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(0);
        std::vector<int> log;
        Task<bool> t1 = asyncio::create_task(sem_and_log(sem, log, 1));
        Task<bool> t2 = asyncio::create_task(sem_and_log(sem, log, 2));
        co_await asyncio::sleep(0);
        sem.release();  // chooses t1
        t1.cancel();    // before t1 has run
        co_await iterations(3);
        CHECK(t1.cancelled());
        CHECK(t2.done());
        CHECK(log == std::vector<int>{2});
        CHECK(sem.locked());
        if (!t2.done()) t2.cancel();
        co_await settle(t2);
    };
    run_guarded(main());
}

TEST_CASE("BoundedSemaphore: releasing above the initial value is a ValueError") {
    asyncio::BoundedSemaphore sem;
    CHECK_THROWS_AS(sem.release(), std::invalid_argument);
    CHECK_THROWS_WITH(sem.release(), "BoundedSemaphore released too many times");
    asyncio::Semaphore& base = sem;  // still checked through the base class
    CHECK_THROWS_AS(base.release(), std::invalid_argument);
}

TEST_CASE("BoundedSemaphore: acquire and release within the bound") {
    auto main = []() -> Coro<void> {
        asyncio::BoundedSemaphore sem(2);
        {
            auto a = co_await sem;
            auto b = co_await sem;
            CHECK(sem.locked());
        }
        CHECK_FALSE(sem.locked());
        CHECK(ends_with(sem.repr(), "[unlocked, value:2]>"));
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: release without waiters") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem;
        co_await sem.acquire();
        CHECK(sem.locked());
        sem.release();
        CHECK_FALSE(sem.locked());
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: FIFO order across repeated acquires") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(1);
        std::vector<std::string> result;
        auto coro = [&](std::string tag) -> Coro<void> {
            {
                auto held = co_await sem;
                result.push_back(tag + "_1");
                co_await asyncio::sleep(0);
            }
            {
                auto held = co_await sem;
                result.push_back(tag + "_2");
                co_await asyncio::sleep(0);
            }
        };
        std::vector<Task<void>> tasks;
        for (const char* tag : {"c1", "c2", "c3"})
            tasks.push_back(asyncio::create_task(coro(tag)));
        co_await asyncio::gather(tasks);
        CHECK(result == std::vector<std::string>{"c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"});
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: FIFO order 2 (a release does not let the releaser barge)") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(1);
        std::vector<int> result;
        auto c2 = [&]() -> Coro<bool> {
            co_await sem.acquire();
            result.push_back(2);
            sem.release();
            co_await sem.acquire();
            result.push_back(4);
            co_return true;
        };
        Task<bool> t1 = asyncio::create_task(sem_and_log(sem, result, 1));
        Task<bool> t2 = asyncio::create_task(c2());
        Task<bool> t3 = asyncio::create_task(sem_and_log(sem, result, 3));
        co_await asyncio::sleep(0);
        sem.release();
        sem.release();
        std::vector<Task<bool>> all{t1, t2, t3};
        co_await asyncio::gather(all);
        CHECK(result == std::vector<int>{1, 2, 3, 4});
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: FIFO order 3 (a cancelled waiter is skipped)") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(0);
        std::vector<int> result;
        Task<bool> t1 = asyncio::create_task(sem_and_log(sem, result, 1));
        Task<bool> t2 = asyncio::create_task(sem_and_log(sem, result, 2));
        Task<bool> t3 = asyncio::create_task(sem_and_log(sem, result, 3));
        co_await asyncio::sleep(0);
        t1.cancel();
        co_await asyncio::sleep(0);
        sem.release();
        sem.release();
        std::vector<Task<bool>> all{t1, t2, t3};
        co_await asyncio::gather(asyncio::return_exceptions, all);
        CHECK(result == std::vector<int>{2, 3});
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: FIFO order 4 (one acquire lets in every waiter a release allows)") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(0);
        std::vector<int> result;
        std::optional<Task<bool>> t4;
        auto c4 = [&]() -> Coro<bool> {
            result.push_back(4);
            co_return true;
        };
        auto c1 = [&]() -> Coro<bool> {
            co_await sem.acquire();           // woken by c2
            CHECK(sem.locked());              // every slot went to a waiter
            t4 = asyncio::create_task(c4());  // must run after c3, not before c2
            result.push_back(1);
            co_return true;
        };
        auto c2 = [&]() -> Coro<bool> {
            sem.release();
            sem.release();
            sem.release();
            CHECK(ends_with(sem.repr(), "[locked, waiters:1]>"));  // c1 has not woken yet
            co_await sem.acquire();
            result.push_back(2);
            co_return true;
        };
        auto c3 = [&]() -> Coro<bool> {
            co_await sem.acquire();
            CHECK(sem.locked());
            result.push_back(3);
            co_return true;
        };
        Task<bool> t1 = asyncio::create_task(c1());
        Task<bool> t2 = asyncio::create_task(c2());
        Task<bool> t3 = asyncio::create_task(c3());
        co_await asyncio::sleep(0);
        CHECK(contains(sem.repr(), "waiters:3"));  // the first has not woken yet
        co_await asyncio::sleep(0);
        REQUIRE(t4.has_value());
        std::vector<Task<bool>> all{t1, t2, t3, *t4};
        co_await asyncio::gather(all);
        CHECK(result == std::vector<int>{1, 2, 3, 4});
    };
    run_guarded(main());
}

TEST_CASE("Semaphore: co_await sem is async with") {
    auto main = []() -> Coro<void> {
        asyncio::Semaphore sem(2);
        {
            auto a = co_await sem;
            CHECK_FALSE(sem.locked());
            auto b = co_await sem;
            CHECK(sem.locked());
        }
        CHECK(ends_with(sem.repr(), "[unlocked, value:2]>"));
    };
    run_guarded(main());
}

// -- Barrier -----------------------------------------------------------------------------

namespace {
constexpr std::size_t N = 5;

/// Starts `n` tasks of `coro()` and waits for all of them.
template <class F>
Coro<void> gather_tasks(std::size_t n, F& coro) {
    using R = typename std::invoke_result_t<F&>::value_type;
    std::vector<Task<R>> tasks;
    for (std::size_t i = 0; i < n; ++i)
        tasks.push_back(asyncio::create_task(coro()));
    co_await asyncio::gather(std::move(tasks));
}
}  // namespace

TEST_CASE("Barrier: parties must be at least 1") {
    CHECK_THROWS_AS(asyncio::Barrier(0), std::invalid_argument);
    CHECK_THROWS_WITH(asyncio::Barrier(-4), "parties must be >= 1");
    CHECK(asyncio::Barrier(N).parties() == N);
}

TEST_CASE("Barrier: repr through filling, draining, resetting and broken") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        CHECK(contains(barrier.repr(), "[filling, waiters:0/5]"));
        std::vector<Task<std::size_t>> waiters;
        for (int i = 0; i < 2; ++i)
            waiters.push_back(asyncio::create_task(barrier.wait()));
        co_await asyncio::sleep(0);
        CHECK(contains(barrier.repr(), "[filling, waiters:2/5]"));

        const std::size_t missing = barrier.parties() - barrier.n_waiting();
        for (std::size_t i = 0; i < missing; ++i)
            waiters.push_back(asyncio::create_task(barrier.wait()));
        co_await asyncio::sleep(0);
        CHECK(contains(barrier.repr(), "draining"));

        for (int i = 0; i < 2; ++i)
            waiters.push_back(asyncio::create_task(barrier.wait()));
        co_await asyncio::sleep(0);
        co_await barrier.reset();
        CHECK(contains(barrier.repr(), "resetting"));

        for (int i = 0; i < 2; ++i)
            waiters.push_back(asyncio::create_task(barrier.wait()));
        co_await asyncio::sleep(0);
        co_await barrier.abort();
        CHECK(ends_with(barrier.repr(), "[broken]>"));
        CHECK(barrier.broken());
        co_await asyncio::gather(asyncio::return_exceptions, waiters);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: every party gets a distinct index") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(3);
        std::vector<std::size_t> results;
        auto coro = [&]() -> Coro<void> {
            const std::size_t i = co_await barrier.wait();
            results.push_back(i);
        };
        co_await gather_tasks(3, coro);
        std::sort(results.begin(), results.end());
        CHECK(results == std::vector<std::size_t>{0, 1, 2});
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: one party passes at once, twice") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(1);
        const std::size_t i = co_await barrier.wait();
        CHECK(i == 0);
        CHECK(barrier.n_waiting() == 0);

        Task<std::size_t> t1 = asyncio::create_task(barrier.wait());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 0);
        Task<std::size_t> t2 = asyncio::create_task(barrier.wait());
        co_await asyncio::sleep(0);
        CHECK(t1.done());
        CHECK(t2.done());
        CHECK(t1.result() == t2.result());
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: filling task by task") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(3);
        Task<std::size_t> t1 = asyncio::create_task(barrier.wait());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 1);
        CHECK(contains(barrier.repr(), "filling"));
        Task<std::size_t> t2 = asyncio::create_task(barrier.wait());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 2);
        Task<std::size_t> t3 = asyncio::create_task(barrier.wait());
        co_await asyncio::sleep(0);
        std::vector<Task<std::size_t>> all{t1, t2, t3};
        co_await asyncio::wait(all);
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: every task passes twice, with the right indexes") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        std::vector<bool> results;
        std::vector<std::size_t> second;
        auto coro = [&]() -> Coro<void> {
            co_await barrier.wait();
            results.push_back(true);
            const std::size_t i = co_await barrier.wait();
            results.push_back(false);
            second.push_back(i);
        };
        co_await gather_tasks(N, coro);
        CHECK(results.size() == 2 * N);
        CHECK(std::count(results.begin(), results.end(), true) == static_cast<long>(N));
        std::sort(second.begin(), second.end());
        CHECK(second == std::vector<std::size_t>{0, 1, 2, 3, 4});
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: draining until the last task has left") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        std::vector<bool> results;
        auto coro = [&]() -> Coro<void> {
            co_await barrier.wait();
            results.push_back(contains(barrier.repr(), "draining"));
        };
        co_await gather_tasks(N, coro);
        REQUIRE(results.size() == N);
        CHECK_FALSE(results.back());
        CHECK(std::all_of(results.begin(), results.end() - 1, [](bool b) { return b; }));
    };
    run_guarded(main());
}

TEST_CASE("Barrier: tasks arriving while it drains wait for the next cycle") {
    auto main = []() -> Coro<void> {
        constexpr std::size_t rewait = 2;
        asyncio::Barrier barrier(N);
        asyncio::Barrier barrier_nowaiting(N - rewait);
        std::size_t rewait_n = rewait;
        auto coro = [&]() -> Coro<void> {
            co_await barrier.wait();
            if (rewait_n > 0) {
                --rewait_n;
                co_await barrier.wait();  // wait again, only for the rewaiting tasks
            } else {
                co_await barrier_nowaiting.wait();  // the end of draining
                co_await barrier.wait();
            }
        };
        co_await gather_tasks(N, coro);
        CHECK(barrier.n_waiting() == 0);
        CHECK(barrier_nowaiting.n_waiting() == 0);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: a cancelled waiter leaves") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(3);
        int passed = 0;
        auto coro = [&]() -> Coro<void> {
            co_await barrier.wait();
            ++passed;
        };
        Task<void> t1 = asyncio::create_task(coro());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 1);
        Task<void> t2 = asyncio::create_task(coro());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 2);

        t1.cancel();
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 1);
        const bool cancelled = co_await ends_cancelled(t1);
        CHECK(cancelled);

        Task<void> t3 = asyncio::create_task(coro());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 2);
        Task<void> t4 = asyncio::create_task(coro());
        co_await asyncio::gather(t2, t3, t4);
        CHECK(passed == 3);
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset with nobody waiting") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(1);
        asyncio::create_task(barrier.reset());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset breaks the current waiters") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        int broken = 0;
        auto coro = [&]() -> Coro<void> {
            try {
                co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                ++broken;
            }
        };
        std::vector<Task<void>> tasks;
        for (std::size_t i = 0; i + 1 < N; ++i)
            tasks.push_back(asyncio::create_task(coro()));
        co_await asyncio::sleep(0);
        asyncio::create_task(barrier.reset());
        co_await asyncio::gather(tasks);
        CHECK(broken == static_cast<int>(N - 1));
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(contains(barrier.repr(), "resetting"));
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset while half of the tasks are draining") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        std::vector<bool> results1;
        constexpr std::size_t rest_of_tasks = N / 2;
        std::size_t exited = 0;
        auto coro = [&]() -> Coro<void> {
            bool broke = false;
            try {
                co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broke = true;  // still draining when the barrier was reset
                results1.push_back(true);
            }
            // Python checks barrier._count == rest_of_tasks: the tasks that
            // have left so far are the others.
            if (!broke && ++exited == N - rest_of_tasks) co_await barrier.reset();
        };
        co_await gather_tasks(N, coro);
        CHECK(results1 == std::vector<bool>(rest_of_tasks, true));
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(contains(barrier.repr(), "resetting"));
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset while half drain and half block") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        std::vector<bool> results1, results2;
        constexpr std::size_t blocking_tasks = N / 2;
        std::size_t count = 0;
        auto coro = [&]() -> Coro<void> {
            bool broke = false;
            try {
                co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broke = true;  // still waiting when reset
                results1.push_back(true);
            }
            if (broke) {
                co_await barrier.wait();  // wait again to reach the parties
                co_return;
            }
            if (++count > blocking_tasks) {
                co_await barrier.reset();  // the waiting tasks get BrokenBarrierError
                co_await barrier.wait();
            } else {
                try {
                    co_await barrier.wait();
                } catch (const BrokenBarrierError&) {
                    results2.push_back(true);  // never: blocked tasks wait
                }
            }
        };
        co_await gather_tasks(N, coro);
        CHECK(results1 == std::vector<bool>(blocking_tasks, true));
        CHECK(results2.empty());
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(contains(barrier.repr(), "resetting"));
        CHECK_FALSE(barrier.broken());
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset while tasks wait, and they wait again") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        int results1 = 0, results2 = 0;
        auto coro1 = [&]() -> Coro<void> {
            try {
                co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                ++results1;
            }
            co_await barrier.wait();  // Python's finally
            ++results2;
        };
        auto coro2 = [&]() -> Coro<void> {
            co_await barrier.wait();
            ++results2;
        };
        std::vector<Task<void>> tasks;
        for (std::size_t i = 0; i + 1 < N; ++i)
            tasks.push_back(asyncio::create_task(coro1()));
        asyncio::create_task(barrier.reset());
        co_await asyncio::sleep(0);
        Task<void> last = asyncio::create_task(coro2());
        co_await asyncio::gather(tasks);
        co_await last;
        CHECK_FALSE(barrier.broken());
        CHECK(results1 == static_cast<int>(N - 1));
        CHECK(results2 == static_cast<int>(N));
        CHECK(barrier.n_waiting() == 0);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: reset by the last task to leave a draining barrier") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        int results1 = 0, results2 = 0, results3 = 0;
        std::size_t count = 0;
        auto coro = [&]() -> Coro<void> {
            co_await barrier.wait();
            if (++count == N) {
                co_await barrier.reset();  // the last task out resets
                co_await barrier.wait();
            } else {
                try {
                    co_await barrier.wait();
                    ++results1;
                } catch (const std::exception&) {
                    ++results2;
                }
            }
            co_await barrier.wait();
            ++results3;
        };
        co_await gather_tasks(N, coro);
        CHECK_FALSE(barrier.broken());
        CHECK(results1 == static_cast<int>(N - 1));
        CHECK(results2 == 0);
        CHECK(results3 == static_cast<int>(N));
        CHECK(barrier.n_waiting() == 0);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: abort with nobody waiting") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(1);
        asyncio::create_task(barrier.abort());
        co_await asyncio::sleep(0);
        CHECK(barrier.n_waiting() == 0);
        CHECK(barrier.broken());
        bool refused = false;
        try {
            co_await barrier.wait();
        } catch (const BrokenBarrierError&) {
            refused = true;
        }
        CHECK(refused);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: abort while half drain and half block") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        int results1 = 0, results2 = 0;
        constexpr std::size_t blocking_tasks = N / 2;
        std::size_t count = 0;
        auto coro = [&]() -> Coro<void> {
            bool broke = false;
            try {
                co_await barrier.wait();
            } catch (const BrokenBarrierError&) {
                broke = true;  // waiting to drain
                ++results1;
            }
            if (broke) co_return;
            if (++count > blocking_tasks) {
                co_await barrier.abort();  // everyone waiting gets BrokenBarrierError
            } else {
                try {
                    co_await barrier.wait();
                } catch (const BrokenBarrierError&) {
                    ++results2;  // blocked tasks, already drained
                }
            }
        };
        co_await gather_tasks(N, coro);
        CHECK(barrier.broken());
        CHECK(results1 == static_cast<int>(blocking_tasks));
        CHECK(results2 == static_cast<int>(N - blocking_tasks - 1));
        CHECK(barrier.n_waiting() == 0);
        CHECK_FALSE(contains(barrier.repr(), "resetting"));
    };
    run_guarded(main());
}

TEST_CASE("Barrier: abort on an exception breaks it for everyone") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier(N);
        int results1 = 0, results2 = 0;
        auto coro = [&]() -> Coro<void> {
            bool failed = false;
            try {
                const std::size_t i = co_await barrier.wait();
                if (i == N / 2) throw std::runtime_error("boom");
                co_await barrier.wait();
                ++results1;
            } catch (const BrokenBarrierError&) {
                ++results2;
            } catch (const std::runtime_error&) {
                failed = true;
            }
            if (failed) co_await barrier.abort();
        };
        co_await gather_tasks(N, coro);
        CHECK(barrier.broken());
        CHECK(results1 == 0);
        CHECK(results2 == static_cast<int>(N - 1));
        CHECK(barrier.n_waiting() == 0);
    };
    run_guarded(main());
}

TEST_CASE("Barrier: abort on an exception, then reset and reuse") {
    auto main = []() -> Coro<void> {
        asyncio::Barrier barrier1(N);
        asyncio::Barrier barrier2(N);
        int results1 = 0, results2 = 0, results3 = 0;
        auto coro = [&]() -> Coro<void> {
            bool failed = false;
            try {
                const std::size_t i = co_await barrier1.wait();
                if (i == N / 2) throw std::runtime_error("boom");
                co_await barrier1.wait();
                ++results1;
            } catch (const BrokenBarrierError&) {
                ++results2;
            } catch (const std::runtime_error&) {
                failed = true;
            }
            if (failed) co_await barrier1.abort();
            // Synchronise so that everyone has left barrier1 before the
            // reset, and again so that nobody enters it before.
            const std::size_t i = co_await barrier2.wait();
            if (i == N / 2) co_await barrier1.reset();
            co_await barrier2.wait();
            co_await barrier1.wait();
            ++results3;
        };
        co_await gather_tasks(N, coro);
        CHECK_FALSE(barrier1.broken());
        CHECK(results1 == 0);
        CHECK(results2 == static_cast<int>(N - 1));
        CHECK(results3 == static_cast<int>(N));
        CHECK(barrier1.n_waiting() == 0);
    };
    run_guarded(main());
}

// -- loop teardown -----------------------------------------------------------------------

TEST_CASE("closing the loop frees tasks waiting on primitives, chosen ones included") {
    // The primitives outlive the loop, as a global would. Each waiter is
    // freed with its task; one already chosen hands its turn to the next,
    // whose node must be dropped before its own frame goes.
    asyncio::Lock lock;
    asyncio::Semaphore sem(0);
    asyncio::Condition cond;
    asyncio::Event event;
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    auto hold = [](asyncio::Lock& l) -> Coro<void> {
        co_await l.acquire();
        co_await asyncio::sleep(1h);
    };
    auto take = [](asyncio::Lock& l, asyncio::Semaphore& s) -> Coro<void> {
        auto held = co_await l;
        auto slot = co_await s;
    };
    auto notified = [](asyncio::Condition& c, asyncio::Event& e) -> Coro<void> {
        auto held = co_await c;
        co_await c.wait();
        co_await e.wait();
    };
    auto main = [&]() -> Coro<void> {
        asyncio::create_task(hold(lock));
        for (int i = 0; i < 3; ++i) {
            asyncio::create_task(take(lock, sem));
            asyncio::create_task(notified(cond, event));
        }
        co_await asyncio::sleep(0);
        lock.release();  // chooses the first taker
        {
            auto held = co_await cond;
            cond.notify(2);  // chooses two waiters
        }
    };
    loop->run_until_complete(main());
    CHECK(lock.locked());  // by the first taker, now waiting on the semaphore
    asyncio_test::CapturedLog log;
    loop->close();
    // A task freed inside cond.wait() does not hold the lock: its guard left it alone.
    CHECK_FALSE(log.contains("Exception releasing a lock"));
    CHECK(reports.contains("Task was destroyed but it is pending!"));
    CHECK_FALSE(lock.locked());  // every holder's guard released it, every turn was passed on
    CHECK_FALSE(cond.locked());
    CHECK(ends_with(lock.repr(), "[unlocked]>"));
    CHECK(ends_with(sem.repr(), "[locked]>"));
    CHECK(ends_with(cond.repr(), "[unlocked]>"));
    CHECK(ends_with(event.repr(), "[unset]>"));
}

TEST_CASE("a task freed inside Condition.wait() does not release a lock another task holds") {
    asyncio::Lock lock;
    asyncio::Condition cond(&lock);
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    auto waiter = [](asyncio::Condition& c) -> Coro<void> {
        auto held = co_await c;
        co_await c.wait();  // releases the lock, then is freed here
    };
    auto holder = [](asyncio::Lock& l) -> Coro<void> {
        co_await l.acquire();  // no guard: it holds the lock to the end
        co_await asyncio::sleep(1h);
    };
    auto main = [&]() -> Coro<void> {
        asyncio::create_task(waiter(cond));
        co_await asyncio::sleep(0);  // the waiter is inside wait(); the lock is free
        asyncio::create_task(holder(lock));
        co_await asyncio::sleep(0);
    };
    loop->run_until_complete(main());
    REQUIRE(lock.locked());  // by the holder
    loop->close();
    CHECK(reports.contains("Task was destroyed but it is pending!"));
    CHECK(lock.locked());  // still the holder's: the waiter's guard did not release it
}
