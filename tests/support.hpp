// Shared by the tests: the Catch2 v2/v3 shim and small helpers.
//
// Never put co_await inside a Catch2 assertion macro: the macros repeat
// their argument in an unevaluated `false && (expr)` branch, and GCC 12 still
// evaluates a co_await found there. Bind the awaited value to a local first.
// Nor put one inside a loop that co_awaits: GCC 12 at -O2 lost the last
// push_back of such a loop (tests/test_datagram.cpp's drain); count inside
// the loop and assert after it.
#pragma once

#if ASYNCIO_CATCH_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <fcntl.h>
#include <unistd.h>

#include <asyncio.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asyncio_test {

/// Installs an exception handler on `loop` that records every report.
struct RecordedReports {
    explicit RecordedReports(asyncio::EventLoop& loop) {
        loop.set_exception_handler([this](asyncio::EventLoop&, const asyncio::ExceptionContext& c) {
            messages.push_back(c.message);
            contexts.push_back(c);
        });
    }
    bool contains(const std::string& needle) const {
        for (const auto& m : messages) {
            if (m.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    std::vector<std::string> messages;
    std::vector<asyncio::ExceptionContext> contexts;
};

/// A message the log sink received, captured for the duration of a test.
struct CapturedLog {
    CapturedLog() {
        previous = asyncio::set_log_sink([this](asyncio::LogLevel level, std::string_view text) {
            lines.emplace_back(level, std::string(text));
        });
    }
    ~CapturedLog() { asyncio::set_log_sink(std::move(previous)); }
    bool contains(const std::string& needle) const {
        for (const auto& [level, text] : lines) {
            if (text.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    asyncio::LogSink previous;
    std::vector<std::pair<asyncio::LogLevel, std::string>> lines;
};

/// Lets the loop run `n` iterations (each `sleep(0)` is one).
inline asyncio::Coro<void> iterations(int n) {
    for (int i = 0; i < n; ++i)
        co_await asyncio::sleep(0);
}

/// Awaits `task`; true if that threw CancelledError.
template <class T>
asyncio::Coro<bool> ends_cancelled(asyncio::Task<T> task) {
    bool cancelled = false;
    try {
        co_await task;
    } catch (const asyncio::CancelledError&) {
        cancelled = true;
    }
    co_return cancelled;
}

/// A pipe, both ends close-on-exec (and blocking); the test closes them.
struct Pipe {
    int read_fd = -1, write_fd = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        read_fd = fds[0];
        write_fd = fds[1];
    }
};

/// `n` bytes of a repeating a-z pattern, so that a lost or moved byte shows.
inline std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7) % 26);
    return s;
}

/// Awaits `task` whatever its outcome (gather(..., return_exceptions=True)).
template <class T>
asyncio::Coro<void> settle(asyncio::Task<T> task) {
    try {
        co_await task;
    } catch (...) {
    }
}

/// Cancels the oldest task of `loop` (asyncio::run's main task) if it is
/// still running after `limit` of wall time. A thread keeps the time, not a
/// loop timer: on a TestClock loop time may race ahead or stand still.
class HangGuard {
  public:
    HangGuard(asyncio::EventLoop& loop, std::chrono::seconds limit)
        : thread_([this, &loop, limit] {
              std::unique_lock lock(mutex_);
              if (done_changed_.wait_for(lock, limit, [this] { return done_; })) return;
              fired_ = true;
              // Runs on the loop thread, which alone may touch its tasks.
              loop.call_soon_threadsafe([&loop] {
                  std::vector<asyncio::Task<>> tasks = asyncio::all_tasks(loop);
                  if (!tasks.empty()) tasks.front().cancel("hang guard");
              });
          }) {}
    HangGuard(const HangGuard&) = delete;
    HangGuard& operator=(const HangGuard&) = delete;
    ~HangGuard() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_changed_.notify_one();
        thread_.join();
    }

    bool fired() {
        std::lock_guard lock(mutex_);
        return fired_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable done_changed_;
    bool done_ = false;
    bool fired_ = false;
    std::thread thread_;  // last: it starts once the members it uses exist
};

/// asyncio::run(main, opts) under a generous wall-time limit, so that a lost
/// wake-up fails the test with TimeoutError instead of hanging until CTest
/// kills it.
template <class T>
T run_guarded(asyncio::Coro<T> main, asyncio::RunOptions opts = {}) {
    using namespace std::chrono_literals;
    asyncio::Runner runner(opts);
    HangGuard guard(runner.get_loop(), 60s);
    try {
        return runner.run(std::move(main));
    } catch (const asyncio::CancelledError&) {
        if (!guard.fired()) throw;
    }
    throw asyncio::TimeoutError("run_guarded: the test was still running after 60 s");
}

/// run_guarded on a fresh auto-advancing TestClock: loop time starts at 0
/// and timers fire as soon as the loop is idle, so timing tests take no
/// wall time and can assert exact loop times.
template <class T>
T run_paused(asyncio::Coro<T> main) {
    asyncio::TestClock clock;
    return run_guarded(std::move(main), {.clock = &clock});
}

}  // namespace asyncio_test
