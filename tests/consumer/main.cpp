// Written against the documented public API only (docs/coro.md, future.md,
// task.md, tasks.md and loop.md) and built against the installed package:
// proves the public surface is complete and behaves like CPython's. Exits
// non-zero on any mismatch.
#include <asyncio.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what);
        ++failures;
    }
}

asyncio::Coro<int> compute(int x, int y) {
    co_await asyncio::sleep(1ms);
    co_return x + y;
}

asyncio::Coro<std::string> main_coro() {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Task<int> task = asyncio::create_task(compute(1, 2), {.name = "adder"});
    expect(task.get_name() == "adder", "task name");
    const int sum = co_await task;
    expect(sum == 3, "task result");

    asyncio::Future<std::string> fut = loop.create_future<std::string>();
    loop.call_later(1ms, [fut]() mutable { fut.set_result("done"); });
    const std::string text = co_await fut;

    asyncio::Task<> sleeper = asyncio::create_task(asyncio::sleep(1h));
    co_await asyncio::sleep(0);
    sleeper.cancel("bye");
    try {
        co_await sleeper;
        expect(false, "cancelled task raised");
    } catch (const asyncio::CancelledError& e) {
        expect(e.message() == "bye", "cancel message");
    }
    expect(sleeper.cancelled(), "cancelled()");
    expect(asyncio::current_task().has_value(), "current_task");
    expect(asyncio::all_tasks().size() == 1, "all_tasks");
    co_return text;
}
}  // namespace

int main() {
    expect(asyncio::run(main_coro()) == "done", "run result");

    auto loop = asyncio::new_event_loop();
    std::vector<int> order;
    loop->call_soon([&] { order.push_back(1); });
    asyncio::Handle h = loop->call_soon([&] { order.push_back(2); });
    h.cancel();
    asyncio::TimerHandle t = loop->call_later(1ms, [&] {
        order.push_back(3);
        loop->stop();
    });
    expect(t.when() > 0, "TimerHandle.when");
    loop->run_forever();
    expect((order == std::vector<int>{1, 3}), "callback order");
    loop->close();
    expect(loop->is_closed(), "is_closed");

    asyncio::Runner runner;
    expect(runner.run(compute(2, 3)) == 5, "Runner.run");
    runner.close();

    std::printf("consumer: %s (backend %s)\n", failures == 0 ? "ok" : "FAILED",
                std::string(asyncio::to_string(asyncio::default_backend())).c_str());
    return failures == 0 ? 0 : 1;
}
