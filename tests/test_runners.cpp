// asyncio.run and asyncio.Runner: ports of CPython's test_runners.py.
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;

namespace {
Coro<int> forty_two() {
    co_await asyncio::sleep(0);
    co_return 42;
}
}  // namespace

TEST_CASE("run returns the result of the main coroutine") {
    CHECK(asyncio::run(forty_two()) == 42);
}

TEST_CASE("run propagates the main coroutine's exception") {
    auto main = []() -> Coro<void> {
        co_await asyncio::sleep(0);
        throw std::domain_error("from main");
    };
    CHECK_THROWS_AS(asyncio::run(main()), std::domain_error);
}

TEST_CASE("run makes its loop the current event loop and closes it afterwards") {
    asyncio::EventLoop* seen = nullptr;
    auto main = [](asyncio::EventLoop*& out) -> Coro<void> {
        out = &asyncio::get_event_loop();
        CHECK(out == &asyncio::get_running_loop());
        co_return;
    };
    asyncio::run(main(seen));
    CHECK(seen != nullptr);
}

TEST_CASE("run cannot be called from a running loop") {
    auto main = []() -> Coro<std::string> {
        try {
            asyncio::run(forty_two());
        } catch (const asyncio::RuntimeError& e) {
            co_return e.what();
        }
        co_return "ran";
    };
    CHECK(asyncio::run(main()) == "asyncio.run() cannot be called from a running event loop");
}

TEST_CASE("run passes the debug and backend options") {
    auto main = []() -> Coro<bool> { co_return asyncio::get_running_loop().get_debug(); };
    CHECK(asyncio::run(main(), {.debug = true}));
    CHECK_FALSE(asyncio::run(main(), {.debug = false}));
    const asyncio::Backend backend = asyncio::default_backend();
    auto name = []() -> Coro<std::string> {
        co_return std::string(asyncio::get_running_loop().backend_name());
    };
    CHECK(asyncio::run(name(), {.backend = backend}) == asyncio::to_string(backend));
}

TEST_CASE("run cancels the tasks left when main returns and waits for them") {
    std::vector<std::string> log;
    auto lingering = [](std::vector<std::string>& out) -> Coro<void> {
        try {
            co_await asyncio::sleep(1h);
        } catch (const asyncio::CancelledError&) {
            out.push_back("cancelled");
        }
        co_await asyncio::sleep(0);  // cleanup may still await (C++: not inside the handler)
        out.push_back("cleaned up");
        throw asyncio::CancelledError();
    };
    auto main = [&]() -> Coro<void> {
        asyncio::create_task(lingering(log));
        co_await asyncio::sleep(0);
        log.push_back("main done");
    };
    asyncio::run(main());
    CHECK(log == std::vector<std::string>{"main done", "cancelled", "cleaned up"});
}

TEST_CASE("an exception raised by a task during shutdown is reported") {
    asyncio_test::CapturedLog log;
    auto refuses = []() -> Coro<void> {
        try {
            co_await asyncio::sleep(1h);
        } catch (const asyncio::CancelledError&) {
            throw std::runtime_error("failed while cancelled");
        }
    };
    auto main = [&]() -> Coro<void> {
        asyncio::create_task(refuses());
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
    CHECK(log.contains("unhandled exception during asyncio.run() shutdown"));
    CHECK(log.contains("failed while cancelled"));
}

TEST_CASE("a Runner runs several coroutines on one loop") {
    asyncio::Runner runner;
    asyncio::EventLoop& loop = runner.get_loop();
    auto which = []() -> Coro<asyncio::EventLoop*> { co_return &asyncio::get_running_loop(); };
    CHECK(runner.run(which()) == &loop);
    CHECK(runner.run(which()) == &loop);
    CHECK(runner.run(forty_two()) == 42);
    runner.close();
    CHECK_THROWS_WITH(runner.run(forty_two()), "Runner is closed");
    CHECK_THROWS_WITH(runner.get_loop(), "Runner is closed");
    runner.close();  // idempotent
}

TEST_CASE("Runner.run from inside a running loop is refused") {
    asyncio::Runner outer, inner;
    auto main = [](asyncio::Runner& r) -> Coro<std::string> {
        try {
            r.run(forty_two());
        } catch (const asyncio::RuntimeError& e) {
            co_return e.what();
        }
        co_return "ran";
    };
    CHECK(outer.run(main(inner)) == "Runner.run() cannot be called from a running event loop");
}

TEST_CASE("a Runner keeps tasks between runs and cancels them on close") {
    asyncio::Runner runner;
    bool cancelled = false;
    auto background = [](bool& flag) -> Coro<void> {
        try {
            co_await asyncio::sleep(1h);
        } catch (const asyncio::CancelledError&) {
            flag = true;
            throw;
        }
    };
    auto start = [&]() -> Coro<void> {
        asyncio::create_task(background(cancelled));
        co_return;
    };
    runner.run(start());
    CHECK(runner.run(forty_two()) == 42);
    CHECK_FALSE(cancelled);
    runner.close();
    CHECK(cancelled);
}

TEST_CASE("a Runner closes itself on destruction") {
    bool cancelled = false;
    {
        asyncio::Runner runner;
        auto background = [](bool& flag) -> Coro<void> {
            try {
                co_await asyncio::sleep(1h);
            } catch (const asyncio::CancelledError&) {
                flag = true;
                throw;
            }
        };
        auto start = [&]() -> Coro<void> {
            asyncio::create_task(background(cancelled));
            co_await asyncio::sleep(0);
        };
        runner.run(start());
    }
    CHECK(cancelled);
}

TEST_CASE("a Runner runs every coroutine in one context; run(coro, context) overrides it") {
    // runners.py: Runner._context is copy_context() at lazy init, used by every run().
    asyncio::ContextVar<int> var("var", 0);
    auto set = [](asyncio::ContextVar<int>& v, int value) -> Coro<void> {
        v.set(value);
        co_return;
    };
    auto get = [](asyncio::ContextVar<int>& v) -> Coro<int> { co_return v.get(); };
    asyncio::Runner runner;
    runner.run(set(var, 7));
    CHECK(runner.run(get(var)) == 7);
    asyncio::Context other;
    CHECK(runner.run(get(var), other) == 0);
    runner.run(set(var, 9), other);
    CHECK(other.get(var) == 9);
    CHECK(runner.run(get(var)) == 7);
    CHECK(var.get() == 0);  // the caller's context is untouched
}

TEST_CASE("closing a Runner that never created its loop does nothing") {
    asyncio::Runner runner;
    runner.close();
    CHECK(runner.run(forty_two()) == 42);
    runner.close();
    CHECK_THROWS_WITH(runner.run(forty_two()), "Runner is closed");
}

TEST_CASE("a Runner given a backend does not touch the current event loop") {
    // runners.py: only a runner without loop_factory calls set_event_loop.
    auto current = asyncio::new_event_loop();
    asyncio::set_event_loop(current.get());
    {
        asyncio::Runner runner({.backend = asyncio::default_backend()});
        asyncio::EventLoop& loop = runner.get_loop();
        CHECK(&loop != current.get());
        CHECK(&asyncio::get_event_loop() == current.get());
        CHECK(runner.run(forty_two()) == 42);
        runner.close();
        CHECK(&asyncio::get_event_loop() == current.get());
    }
    asyncio::set_event_loop(nullptr);
}
