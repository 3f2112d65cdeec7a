// TaskGroup: ports of CPython's test_taskgroups.py.
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::CancelledError;
using asyncio::Coro;
using asyncio::ExceptionGroup;
using asyncio::Task;
using asyncio::TaskGroup;
using asyncio_test::run_guarded;

namespace {

Coro<int> value_after(int steps, int value) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    co_return value;
}

Coro<void> fail_after(int steps, std::string what) {
    for (int i = 0; i < steps; ++i)
        co_await asyncio::sleep(0);
    throw std::runtime_error(what);
}

/// Waits forever; records whether it was cancelled.
Coro<void> wait_cancelled(bool& cancelled) {
    try {
        co_await asyncio::sleep(1h);
    } catch (const CancelledError&) {
        cancelled = true;
        throw;
    }
}

std::vector<std::string> messages_of(const ExceptionGroup& group) {
    std::vector<std::string> out;
    for (const auto& error : group.exceptions()) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            out.push_back(e.what());
        }
    }
    return out;
}

}  // namespace

TEST_CASE("a task group waits for all its tasks") {
    auto main = []() -> Coro<int> {
        TaskGroup tg;
        auto a = tg.create_task(value_after(1, 1));
        auto b = tg.create_task(value_after(5, 2));
        co_await tg.wait();
        CHECK(a.done());
        CHECK(b.done());
        co_return a.result() + b.result();
    };
    CHECK(run_guarded(main()) == 3);
}

TEST_CASE("a failure cancels the other tasks and wait throws an ExceptionGroup") {
    auto main = []() -> Coro<void> {
        bool sibling_cancelled = false;
        TaskGroup tg;
        tg.create_task(fail_after(1, "boom"));
        tg.create_task(wait_cancelled(sibling_cancelled));
        try {
            co_await tg.wait();
            FAIL("no ExceptionGroup");
        } catch (const ExceptionGroup& group) {
            CHECK(group.message() == "unhandled errors in a TaskGroup");
            CHECK(messages_of(group) == std::vector<std::string>{"boom"});
            CHECK(std::string(group.what()) == "unhandled errors in a TaskGroup (1 sub-exception)");
        }
        CHECK(sibling_cancelled);
        CHECK(asyncio::current_task()->cancelling() == 0);
    };
    run_guarded(main());
}

TEST_CASE("every failure ends up in the ExceptionGroup") {
    auto main = []() -> Coro<std::vector<std::string>> {
        TaskGroup tg;
        tg.create_task(fail_after(1, "first"));
        tg.create_task(fail_after(1, "second"));
        try {
            co_await tg.wait();
        } catch (const ExceptionGroup& group) {
            co_return messages_of(group);
        }
        co_return {};
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"first", "second"});
}

TEST_CASE("a child failing while another is in its cleanup") {
    // The second child catches the cancellation, awaits in its cleanup, and
    // fails there: both failures are reported.
    auto main = []() -> Coro<std::vector<std::string>> {
        auto slow_cleanup = []() -> Coro<void> {
            bool cancelled = false;
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
                cancelled = true;
            }
            if (cancelled) {
                co_await asyncio::sleep(0);
                throw std::runtime_error("cleanup failed");
            }
        };
        TaskGroup tg;
        tg.create_task(slow_cleanup());
        tg.create_task(fail_after(1, "first"));
        try {
            co_await tg.wait();
        } catch (const ExceptionGroup& group) {
            co_return messages_of(group);
        }
        co_return {};
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"first", "cleanup failed"});
}

TEST_CASE("a failure interrupts what the parent awaits before wait()") {
    auto real = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> log;
        auto block = [&](TaskGroup& tg) -> Coro<void> {
            tg.create_task(fail_after(1, "boom"));
            try {
                co_await asyncio::sleep(1h);  // the group cancels the parent
            } catch (const CancelledError&) {
                log.push_back("parent cancelled");
                throw;
            }
        };
        try {
            co_await asyncio::task_group(block);
        } catch (const ExceptionGroup& group) {
            for (auto& m : messages_of(group))
                log.push_back(m);
        }
        CHECK(asyncio::current_task()->cancelling() == 0);
        co_return log;
    };
    CHECK(run_guarded(real()) == std::vector<std::string>{"parent cancelled", "boom"});
}

TEST_CASE("a cancellation from outside cancels the children and propagates") {
    auto main = []() -> Coro<void> {
        bool child_cancelled = false;
        auto parent = [](bool& flag) -> Coro<void> {
            TaskGroup tg;
            tg.create_task(wait_cancelled(flag));
            co_await tg.wait();
        };
        Task<void> task = asyncio::create_task(parent(child_cancelled));
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
        CHECK(child_cancelled);
    };
    run_guarded(main());
}

TEST_CASE("a child error and an outside cancellation: the errors win, the cancel stays") {
    auto main = []() -> Coro<void> {
        auto parent = []() -> Coro<std::string> {
            TaskGroup tg;
            auto stubborn = []() -> Coro<void> {
                try {
                    co_await asyncio::sleep(1h);
                } catch (const CancelledError&) {
                }
                throw std::runtime_error("failed after cancel");
            };
            tg.create_task(stubborn());
            try {
                co_await tg.wait();
            } catch (const ExceptionGroup&) {
                // The outside cancellation is still pending: it arrives at
                // the next suspension.
                CHECK(asyncio::current_task()->cancelling() == 1);
            }
            try {
                co_await asyncio::sleep(0);
            } catch (const CancelledError&) {
                co_return "cancelled after the group";
            }
            co_return "not cancelled";
        };
        Task<std::string> task = asyncio::create_task(parent());
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        task.cancel();
        const std::string outcome = co_await task;
        CHECK(outcome == "cancelled after the group");
    };
    run_guarded(main());
}

TEST_CASE("tasks may be added while the group waits") {
    auto main = []() -> Coro<int> {
        TaskGroup tg;
        int total = 0;
        auto spawner = [](TaskGroup& group, int& sum) -> Coro<void> {
            co_await asyncio::sleep(0);
            auto adder = [](int& s) -> Coro<void> {
                co_await asyncio::sleep(0);
                s += 10;
            };
            group.create_task(adder(sum));
            sum += 1;
        };
        tg.create_task(spawner(tg, total));
        co_await tg.wait();
        co_return total;
    };
    CHECK(run_guarded(main()) == 11);
}

TEST_CASE("task groups nest") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::vector<std::string> log;
        TaskGroup outer;
        auto inner_group = [](std::vector<std::string>& out) -> Coro<void> {
            TaskGroup inner;
            auto step = [](std::vector<std::string>& o, std::string name) -> Coro<void> {
                co_await asyncio::sleep(0);
                o.push_back(name);
            };
            inner.create_task(step(out, "inner"));
            co_await inner.wait();
            out.push_back("inner done");
        };
        outer.create_task(inner_group(log));
        co_await outer.wait();
        log.push_back("outer done");
        co_return log;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"inner", "inner done", "outer done"});
}

TEST_CASE("a failing nested group reaches the outer one as an ExceptionGroup") {
    auto main = []() -> Coro<std::size_t> {
        TaskGroup outer;
        auto inner_group = []() -> Coro<void> {
            TaskGroup inner;
            inner.create_task(fail_after(1, "deep"));
            co_await inner.wait();
        };
        outer.create_task(inner_group());
        try {
            co_await outer.wait();
        } catch (const ExceptionGroup& group) {
            REQUIRE(group.exceptions().size() == 1);
            try {
                std::rethrow_exception(group.exceptions()[0]);
            } catch (const ExceptionGroup& nested) {
                co_return nested.exceptions().size();
            }
        }
        co_return 0;
    };
    CHECK(run_guarded(main()) == 1);
}

TEST_CASE("create_task is refused once the group shuts down or is finished") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto release = loop.create_future();
        // Keeps the group alive after the failure, until `release`.
        auto lingering = [](asyncio::Future<> gate) -> Coro<void> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
            }
            co_await gate;
        };
        TaskGroup tg;
        tg.create_task(lingering(release));
        tg.create_task(fail_after(1, "boom"));
        std::string shutting_down;
        auto late = [](TaskGroup& group, std::string& out, asyncio::Future<> gate) -> Coro<void> {
            for (int i = 0; i < 4; ++i)
                co_await asyncio::sleep(0);
            try {
                group.create_task(value_after(0, 1));
            } catch (const asyncio::RuntimeError& e) {
                out = e.what();
            }
            gate.set_result();
        };
        auto observer = asyncio::create_task(late(tg, shutting_down, release));
        try {
            co_await tg.wait();
        } catch (const ExceptionGroup&) {
        }
        co_await observer;
        CHECK(shutting_down == "TaskGroup is shutting down");

        TaskGroup done;
        done.create_task(value_after(0, 1));
        co_await done.wait();
        CHECK_THROWS_WITH(done.create_task(value_after(0, 1)), "TaskGroup is finished");
    };
    run_guarded(main());
}

TEST_CASE("a group destroyed without wait() cancels its tasks and is reported") {
    auto main = []() -> Coro<void> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        bool cancelled = false;
        {
            TaskGroup forgotten;
            forgotten.create_task(wait_cancelled(cancelled));
            co_await asyncio::sleep(0);
        }
        co_await asyncio::sleep(0);
        CHECK(cancelled);
        CHECK(reports.contains("TaskGroup was destroyed without wait()"));
    };
    run_guarded(main());
}

TEST_CASE("a task that fails after its group's parent ended is reported with its task") {
    // taskgroups.py reports {'message': ..., 'exception': exc, 'task': task}.
    auto main = []() -> Coro<std::string> {
        asyncio_test::RecordedReports reports(asyncio::get_running_loop());
        auto late = []() -> Coro<void> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const CancelledError&) {
            }
            throw std::runtime_error("after the parent");
        };
        auto parent = [](Coro<void> child) -> Coro<void> {
            TaskGroup forgotten;
            forgotten.create_task(std::move(child), {.name = "late"});
            co_await asyncio::sleep(0);
        };  // returns without wait(): the group cancels its task
        co_await asyncio::create_task(parent(late()));
        co_await asyncio_test::iterations(3);
        std::string named;
        for (const auto& context : reports.contexts) {
            if (context.message.find("its parent task is already completed") == std::string::npos)
                continue;
            CHECK_FALSE(context.future.has_value());
            if (context.task) named = context.task->get_name();
        }
        co_return named;
    };
    CHECK(run_guarded(main()) == "late");
}

TEST_CASE("task_group passes the block's exception to the group") {
    auto main = []() -> Coro<std::vector<std::string>> {
        bool child_cancelled = false;
        std::vector<std::string> messages;
        auto block = [&](TaskGroup& tg) -> Coro<void> {
            tg.create_task(wait_cancelled(child_cancelled));
            co_await asyncio::sleep(0);
            throw std::runtime_error("block failed");
        };
        try {
            co_await asyncio::task_group(block);
        } catch (const ExceptionGroup& group) {
            messages = messages_of(group);
        }
        CHECK(child_cancelled);
        co_return messages;
    };
    CHECK(run_guarded(main()) == std::vector<std::string>{"block failed"});
}

TEST_CASE("task_group waits for the children of a block that throws before its first await") {
    auto main = []() -> Coro<std::vector<std::string>> {
        std::optional<asyncio::Task<>> child;
        std::vector<std::string> messages;
        // Not a coroutine: it throws from the call, before returning one.
        auto block = [&](TaskGroup& tg) -> Coro<void> {
            child = tg.create_task(asyncio::sleep(1h));
            throw std::runtime_error("block failed early");
        };
        try {
            co_await asyncio::task_group(block);
        } catch (const ExceptionGroup& group) {
            messages = messages_of(group);
        }
        REQUIRE(child);
        CHECK(child->cancelled());
        co_return messages;
    };
    CHECK(asyncio::run(main()) == std::vector<std::string>{"block failed early"});
}

TEST_CASE("task_group returns the block's value") {
    auto main = []() -> Coro<int> {
        co_return co_await asyncio::task_group([](TaskGroup& tg) -> Coro<int> {
            auto a = tg.create_task(value_after(2, 20));
            co_await asyncio::sleep(0);
            co_return 1 + a.done();  // not done yet: the group waits after the block
        });
    };
    CHECK(run_guarded(main()) == 1);
}

TEST_CASE("a TaskGroup outside a task is refused") {
    auto loop = asyncio::new_event_loop();
    std::string error;
    loop->call_soon([&] {
        try {
            TaskGroup tg;
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        loop->stop();
    });
    loop->run_forever();
    CHECK(error == "TaskGroup cannot determine the parent task");
}

TEST_CASE("a TaskGroup of 10,000 tasks") {
    auto main = []() -> Coro<long> {
        long sum = 0;
        co_await asyncio::task_group([&](TaskGroup& tg) -> Coro<void> {
            auto add = [](long& s, int i) -> Coro<void> {
                co_await asyncio::sleep(0);
                s += i;
            };
            for (int i = 0; i < 10'000; ++i)
                tg.create_task(add(sum, i));
            co_return;
        });
        co_return sum;
    };
    CHECK(run_guarded(main()) == 10'000L * 9'999L / 2);
}
