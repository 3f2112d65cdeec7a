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
#include <malloc.h>

#include <asyncio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::int64_t rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "VmRSS:") {
            std::int64_t kib = 0;
            status >> kib;
            return kib * 1024;
        }
        status.ignore(4096, '\n');
    }
    return 0;
}

std::int64_t heap_bytes() {
    return static_cast<std::int64_t>(mallinfo2().uordblks);
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

asyncio::Coro<void> wait_for(asyncio::Event& go, std::int64_t& finished) {
    co_await go.wait();
    ++finished;
}

struct Result {
    double spawn_ns, finish_ns, heap_bytes, rss_bytes;
};

asyncio::Coro<Result> measure(std::int64_t n) {
    asyncio::Event go;
    std::int64_t finished = 0;
    std::vector<asyncio::Task<>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    const std::int64_t heap_before = heap_bytes(), rss_before = rss_bytes();
    const std::int64_t t0 = now_ns();
    for (std::int64_t i = 0; i < n; ++i)
        tasks.push_back(asyncio::create_task(wait_for(go, finished)));
    co_await asyncio::sleep(0);  // every task starts and waits
    const std::int64_t t1 = now_ns();
    const std::int64_t heap_after = heap_bytes(), rss_after = rss_bytes();
    go.set();
    for (asyncio::Task<>& task : tasks)
        co_await task;
    const std::int64_t t2 = now_ns();
    if (finished != n) throw std::runtime_error("not every task finished");
    const auto per = [n](std::int64_t v) {
        return static_cast<double>(v) / static_cast<double>(n);
    };
    co_return Result{per(t1 - t0), per(t2 - t1), per(heap_after - heap_before),
                     per(rss_after - rss_before)};
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::int64_t> counts;
    for (int i = 1; i < argc; ++i)
        counts.push_back(std::atoll(argv[i]));
    if (counts.empty()) counts = {1000, 10000, 100000, 1000000};
    for (const std::int64_t n : counts) {
        if (n <= 0) {
            std::fprintf(stderr, "task_scaling: counts must be positive\n");
            return 2;
        }
        const Result cold = asyncio::run(measure(n));
        const Result warm = asyncio::run(measure(n));
        std::printf(
            "{\"tasks\": %lld, \"spawn_ns\": %.1f, \"finish_ns\": %.1f, \"cold_spawn_ns\": %.1f, "
            "\"heap_bytes\": %.1f, \"rss_bytes\": %.1f}\n",
            static_cast<long long>(n), warm.spawn_ns, warm.finish_ns, cold.spawn_ns,
            cold.heap_bytes, cold.rss_bytes);
        std::fflush(stdout);
    }
    return 0;
}
