// timeout / timeout_at / Timeout: ports of CPython's test_timeouts.py.
// They run on a TestClock (run_paused), so deadlines expire at exact loop
// times and no test waits for them in wall time.
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::Task;
using asyncio::Timeout;
using asyncio_test::run_paused;

namespace {
double loop_time() {
    return asyncio::get_running_loop().time();
}

Coro<void> forever() {
    auto never = asyncio::get_running_loop().create_future();
    co_await never;
}
}  // namespace

TEST_CASE("a body that finishes in time returns its value") {
    auto main = []() -> Coro<int> {
        auto body = []() -> Coro<int> {
            co_await asyncio::sleep(0);
            co_return 5;
        };
        co_return co_await asyncio::timeout(10s, body());
    };
    CHECK(run_paused(main()) == 5);
}

TEST_CASE("an expired timeout cancels the body and raises TimeoutError") {
    auto main = []() -> Coro<void> {
        bool body_cancelled = false;
        std::optional<Timeout> seen;
        auto body = [&](Timeout cm) -> Coro<void> {
            seen = cm;
            try {
                co_await forever();
            } catch (const CancelledError&) {
                body_cancelled = true;
                throw;
            }
        };
        bool timed_out = false;
        try {
            co_await asyncio::timeout(1h, body);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(loop_time() == 3600.0);
        CHECK(body_cancelled);
        REQUIRE(seen.has_value());
        CHECK(seen->expired());
        CHECK(asyncio::current_task()->cancelling() == 0);  // the timeout withdrew its request
    };
    run_paused(main());
}

TEST_CASE("a timeout that did not expire says so") {
    auto main = []() -> Coro<void> {
        std::optional<Timeout> seen;
        co_await asyncio::timeout(10s, [&](Timeout cm) -> Coro<void> {
            seen = cm;
            co_await asyncio::sleep(9s);
        });
        CHECK_FALSE(seen->expired());
        CHECK(seen->when() == 10.0);
        CHECK(loop_time() == 9.0);
    };
    run_paused(main());
}

TEST_CASE("timeout_at with no deadline never expires; reschedule sets one") {
    auto main = []() -> Coro<std::string> {
        try {
            co_await asyncio::timeout_at(std::nullopt, [](Timeout cm) -> Coro<void> {
                CHECK_FALSE(cm.when().has_value());
                co_await asyncio::sleep(0);
                cm.reschedule(loop_time() + 5);
                co_await forever();
            });
        } catch (const asyncio::TimeoutError&) {
            CHECK(loop_time() == 5.0);
            co_return "timed out";
        }
        co_return "finished";
    };
    CHECK(run_paused(main()) == "timed out");
}

TEST_CASE("reschedule to no deadline disables the timeout") {
    auto main = []() -> Coro<int> {
        const int result = co_await asyncio::timeout(1ms, [](Timeout cm) -> Coro<int> {
            cm.reschedule(std::nullopt);
            co_await asyncio::sleep(1h);  // well past the original deadline
            co_return 1;
        });
        CHECK(loop_time() == 3600.0);
        co_return result;
    };
    CHECK(run_paused(main()) == 1);
}

TEST_CASE("a deadline in the past expires at the first suspension") {
    auto main = []() -> Coro<bool> {
        const double past = loop_time() - 10;
        try {
            co_await asyncio::timeout_at(past, forever());
        } catch (const asyncio::TimeoutError&) {
            co_return loop_time() == 0.0;  // expired without the clock moving
        }
        co_return false;
    };
    CHECK(run_paused(main()));
}

TEST_CASE("reschedule outside the scope is refused") {
    auto main = []() -> Coro<void> {
        Timeout fresh(std::nullopt);
        CHECK_THROWS_WITH(fresh.reschedule(1.0), "Timeout has not been entered");
        std::optional<Timeout> kept;
        co_await asyncio::timeout(10s, [&](Timeout cm) -> Coro<void> {
            kept = cm;
            co_return;
        });
        CHECK_THROWS_AS(kept->reschedule(1.0), asyncio::RuntimeError);
    };
    run_paused(main());
}

TEST_CASE("a Timeout outside a task is refused") {
    auto loop = asyncio::new_event_loop();
    Timeout cm(std::nullopt);
    bool refused = false;
    loop->call_soon([&] {
        try {
            cm.enter(asyncio::detail::library_key);  // what timeout() does first
        } catch (const asyncio::RuntimeError& e) {
            refused = std::string(e.what()) == "Timeout should be used inside a task";
        }
        loop->stop();
    });
    loop->run_forever();
    CHECK(refused);
}

TEST_CASE("a body that catches the cancellation and returns is not a TimeoutError") {
    auto main = []() -> Coro<int> {
        std::optional<Timeout> seen;
        const int result = co_await asyncio::timeout(1ms, [&](Timeout cm) -> Coro<int> {
            seen = cm;
            try {
                co_await forever();
            } catch (const CancelledError&) {
                co_return 7;
            }
            co_return 0;
        });
        CHECK(seen->expired());
        CHECK(loop_time() == 0.001);
        CHECK(asyncio::current_task()->cancelling() == 0);
        co_return result;
    };
    CHECK(run_paused(main()) == 7);
}

TEST_CASE("nested timeouts: the inner one expires first") {
    auto main = []() -> Coro<std::string> {
        co_return co_await asyncio::timeout(10s, [](Timeout outer) -> Coro<std::string> {
            std::string result;
            try {
                co_await asyncio::timeout(1ms, forever());
            } catch (const asyncio::TimeoutError&) {
                result = "inner timed out";
            }
            CHECK(loop_time() == 0.001);
            CHECK_FALSE(outer.expired());
            co_return result;
        });
    };
    CHECK(run_paused(main()) == "inner timed out");
}

TEST_CASE("nested timeouts: the outer one expires while the inner is active") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> log;
        try {
            co_await asyncio::timeout(5ms, [&](Timeout) -> Coro<void> {
                try {
                    co_await asyncio::timeout(10s, forever());
                } catch (const asyncio::TimeoutError&) {
                    log.push_back("inner saw TimeoutError");  // must not happen
                } catch (const CancelledError&) {
                    log.push_back("inner saw CancelledError");
                    throw;
                }
            });
        } catch (const asyncio::TimeoutError&) {
            log.push_back("outer TimeoutError");
            CHECK(loop_time() == 0.005);
        }
        co_return log;
    };
    CHECK(run_paused(main()) ==
          std::vector<std::string>{"inner saw CancelledError", "outer TimeoutError"});
}

TEST_CASE("a cancellation from outside passes through a timeout as CancelledError") {
    auto main = []() -> Coro<void> {
        auto body = []() -> Coro<void> { co_await asyncio::timeout(10s, forever()); };
        Task<void> task = asyncio::create_task(body());
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        task.cancel();
        bool cancelled = false;
        try {
            co_await task;
        } catch (const CancelledError&) {
            cancelled = true;
        }
        CHECK(cancelled);
    };
    run_paused(main());
}

TEST_CASE("an outside cancellation arriving with the deadline still propagates") {
    // Both the timeout and someone else cancel: CancelledError, not TimeoutError.
    auto main = []() -> Coro<std::string> {
        auto body = []() -> Coro<void> {
            const double when = loop_time() + 0.002;
            co_await asyncio::timeout_at(when, [when](Timeout) -> Coro<void> {
                // Due at the same time as the timeout's own handler, and
                // scheduled after it: both cancel in the same iteration.
                asyncio::Task<> me = *asyncio::current_task();
                asyncio::get_running_loop().call_at(when, [me]() mutable { me.cancel(); });
                co_await forever();
            });
        };
        Task<void> task = asyncio::create_task(body());
        try {
            co_await task;
        } catch (const CancelledError&) {
            co_return "cancelled";
        } catch (const asyncio::TimeoutError&) {
            co_return "timeout";
        }
        co_return "finished";
    };
    CHECK(run_paused(main()) == "cancelled");
}

TEST_CASE("timeout(seconds) with a double and with no deadline") {
    auto main = []() -> Coro<int> {
        auto body = []() -> Coro<int> { co_return 2; };
        const int a = co_await asyncio::timeout(std::optional<double>(5.0), body());
        const int b = co_await asyncio::timeout(std::optional<double>{}, body());
        co_return a + b;
    };
    CHECK(run_paused(main()) == 4);
}

TEST_CASE("reschedule while the timeout is expiring names that state") {
    auto main = []() -> Coro<std::string> {
        std::string message;
        co_await asyncio::timeout(1ms, [&](Timeout cm) -> Coro<void> {
            try {
                co_await forever();
            } catch (const CancelledError&) {
                try {
                    cm.reschedule(std::nullopt);
                } catch (const asyncio::RuntimeError& e) {
                    message = e.what();
                }
            }
        });
        co_return message;
    };
    CHECK(run_paused(main()) == "Cannot change state of expiring Timeout");
}

TEST_CASE("a timeout refused at entry does not report its body as never awaited") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        bool refused = false;
        try {
            co_await asyncio::timeout(std::optional<double>(std::nan("")), asyncio::sleep(0));
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
        CHECK(reports.contexts.empty());
    };
    run_paused(main());
}

TEST_CASE("timeout(seconds) with a body that takes the Timeout") {
    auto main = []() -> Coro<bool> {
        bool has_deadline = true;
        co_await asyncio::timeout(std::nullopt, [&](Timeout cm) -> Coro<void> {
            has_deadline = cm.when().has_value();
            co_return;
        });
        co_return has_deadline;
    };
    CHECK_FALSE(run_paused(main()));
}
