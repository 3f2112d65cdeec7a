// What task_scaling.cpp and its Boost.Asio peer (benchmarks/peers/asio/
// task_scaling.cpp) share: how one run is measured, and the loop over the
// counts that prints one JSON line per N, so that run.py reads both alike.
#pragma once

#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

namespace task_scaling {

inline std::int64_t rss_bytes() {
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

inline std::int64_t heap_bytes() {
    return static_cast<std::int64_t>(mallinfo2().uordblks);
}

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// One run's figures, per task.
struct Result {
    double spawn_ns, finish_ns, heap_bytes, rss_bytes;
};

/// The clock and memory readings of one run of N tasks: start() before the
/// first spawn, all_waiting() once every task waits, all_finished() once
/// every task is done.
class Measurement {
  public:
    void start() {
        heap_before_ = heap_bytes();
        rss_before_ = rss_bytes();
        start_ = now_ns();
    }
    void all_waiting() {
        waiting_ = now_ns();
        heap_waiting_ = heap_bytes();
        rss_waiting_ = rss_bytes();
    }
    Result all_finished(std::int64_t n) const {
        const std::int64_t finished = now_ns();
        const auto per = [n](std::int64_t v) {
            return static_cast<double>(v) / static_cast<double>(n);
        };
        return Result{per(waiting_ - start_), per(finished - waiting_),
                      per(heap_waiting_ - heap_before_), per(rss_waiting_ - rss_before_)};
    }

  private:
    std::int64_t heap_before_ = 0, rss_before_ = 0, start_ = 0;
    std::int64_t waiting_ = 0, heap_waiting_ = 0, rss_waiting_ = 0;
};

/// The program's main: for each N of the arguments (default 1,000 to
/// 1,000,000), a cold run(n) on fresh memory, then a warm one that finds the
/// blocks the first freed; prints the warm times, the cold spawn time and
/// the cold memory as one JSON line.
template <class Run>
int main(const char* program, int argc, char** argv, Run run) {
    std::vector<std::int64_t> counts;
    for (int i = 1; i < argc; ++i)
        counts.push_back(std::atoll(argv[i]));
    if (counts.empty()) counts = {1000, 10000, 100000, 1000000};
    try {
        for (const std::int64_t n : counts) {
            if (n <= 0) {
                std::fprintf(stderr, "%s: counts must be positive\n", program);
                return 2;
            }
            const Result cold = run(n);
            const Result warm = run(n);
            std::printf(
                "{\"tasks\": %lld, \"spawn_ns\": %.1f, \"finish_ns\": %.1f, "
                "\"cold_spawn_ns\": %.1f, \"heap_bytes\": %.1f, \"rss_bytes\": %.1f}\n",
                static_cast<long long>(n), warm.spawn_ns, warm.finish_ns, cold.spawn_ns,
                cold.heap_bytes, cold.rss_bytes);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 1;
    }
    return 0;
}

}  // namespace task_scaling
