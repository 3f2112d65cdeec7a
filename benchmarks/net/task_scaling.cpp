// How a task's cost grows with the number alive (issue 15): for each N,
// spawn N tasks that each wait on one Event, then set it and let them all
// finish. Each N runs twice, each time on a fresh loop: the first (cold)
// run takes its memory from the heap, the second (warm) finds the blocks
// the first freed. Prints one JSON line per N:
//   spawn_ns       create_task per task while the others stay pending (warm)
//   finish_ns      waking and finishing per task (warm)
//   cold_spawn_ns  spawn_ns of the cold run
//   heap_bytes     heap taken per pending task (mallinfo2, cold run)
//   rss_bytes      resident memory added per pending task (VmRSS, cold run)
//
//   task_scaling [N...]     (default: 1000 10000 100000 1000000)
#include <asyncio.hpp>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "task_scaling.hpp"

namespace {

asyncio::Coro<void> wait_for(asyncio::Event& go, std::int64_t& finished) {
    co_await go.wait();
    ++finished;
}

asyncio::Coro<task_scaling::Result> measure(std::int64_t n) {
    asyncio::Event go;
    std::int64_t finished = 0;
    std::vector<asyncio::Task<>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    task_scaling::Measurement measurement;
    measurement.start();
    for (std::int64_t i = 0; i < n; ++i)
        tasks.push_back(asyncio::create_task(wait_for(go, finished)));
    co_await asyncio::sleep(0);  // every task starts and waits
    measurement.all_waiting();
    go.set();
    for (asyncio::Task<>& task : tasks)
        co_await task;
    if (finished != n) throw std::runtime_error("not every task finished");
    co_return measurement.all_finished(n);
}

}  // namespace

int main(int argc, char** argv) {
    return task_scaling::main("task_scaling", argc, argv,
                              [](std::int64_t n) { return asyncio::run(measure(n)); });
}
