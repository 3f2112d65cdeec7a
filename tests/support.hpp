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
#ifdef _WIN32
#include <io.h>  // _open, _pipe, _write, _close
#else
#include <sys/socket.h>
#include <unistd.h>
#endif

#include <array>
#include <asyncio.hpp>  // on Windows, winsock2.h and ws2tcpip.h (asyncio/detail/native.hpp)
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
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

#ifndef _WIN32
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
#endif

// Portable stand-ins for the POSIX calls the tests make on raw descriptors.
// On Windows a socket is a winsock SOCKET carried in an int (as the library
// and CPython's fileno() carry it), which the C runtime's close/read/write
// do not know, and the environment is set through _putenv_s.

/// setenv(name, value, 1).
inline void set_environment(const char* name, const char* value) {
#ifdef _WIN32
    REQUIRE(::_putenv_s(name, value) == 0);
#else
    REQUIRE(::setenv(name, value, 1) == 0);
#endif
}

/// unsetenv(name) (_putenv_s with an empty value removes the variable).
inline void unset_environment(const char* name) {
#ifdef _WIN32
    REQUIRE(::_putenv_s(name, "") == 0);
#else
    REQUIRE(::unsetenv(name) == 0);
#endif
}

/// Closes a raw socket descriptor (closesocket on Windows).
inline void close_socket(int fd) {
#ifdef _WIN32
    ::closesocket(static_cast<SOCKET>(fd));
#else
    ::close(fd);
#endif
}

/// send(2) on a raw socket: the count, or -1. Never raises SIGPIPE.
inline long long raw_send(int fd, const void* data, std::size_t size) {
#ifdef _WIN32
    return ::send(static_cast<SOCKET>(fd), static_cast<const char*>(data), static_cast<int>(size),
                  0);
#else
    return ::send(fd, data, size, MSG_NOSIGNAL);
#endif
}

/// recv(2) on a raw socket: the count, 0 at EOF, or -1.
inline long long raw_recv(int fd, void* data, std::size_t size) {
#ifdef _WIN32
    return ::recv(static_cast<SOCKET>(fd), static_cast<char*>(data), static_cast<int>(size), 0);
#else
    return ::recv(fd, data, size, 0);
#endif
}

/// setsockopt(2) with an int value (winsock takes the value as const char*).
inline int set_socket_option(int fd, int level, int option, const void* value, std::size_t size) {
#ifdef _WIN32
    return ::setsockopt(static_cast<SOCKET>(fd), level, option, static_cast<const char*>(value),
                        static_cast<int>(size));
#else
    return ::setsockopt(fd, level, option, value, static_cast<socklen_t>(size));
#endif
}

/// getsockopt(2) of an int option; -1 if the call failed.
inline int get_socket_option(int fd, int level, int option) {
    int value = 0;
    ::socklen_t size = sizeof value;
#ifdef _WIN32
    const int rc = ::getsockopt(static_cast<SOCKET>(fd), level, option,
                                reinterpret_cast<char*>(&value), &size);
#else
    const int rc = ::getsockopt(fd, level, option, &value, &size);
#endif
    return rc == 0 ? value : -1;
}

/// Makes a raw socket non-blocking (or blocking again).
inline void set_blocking(int fd, bool blocking) {
#ifdef _WIN32
    u_long non_blocking = blocking ? 0 : 1;
    REQUIRE(::ioctlsocket(static_cast<SOCKET>(fd), FIONBIO, &non_blocking) == 0);
#else
    const int flags = ::fcntl(fd, F_GETFL);
    REQUIRE(flags >= 0);
    REQUIRE(::fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK) == 0);
#endif
}

/// Two connected stream sockets (asyncio::socketpair: AF_UNIX, or loopback
/// TCP on Windows) as raw descriptors the test owns and closes with
/// close_socket, or adopts with asyncio::Socket::from_fd; blocking unless
/// `non_blocking`. On Windows with TCP_NODELAY, so that small writes travel
/// at once, as they do on a Unix socket.
inline std::array<int, 2> socket_pair(bool non_blocking = false) {
    auto [first, second] = asyncio::socketpair();
    const std::array<int, 2> fds{first.detach(), second.detach()};
    for (const int fd : fds) {
#ifdef _WIN32
        const int one = 1;
        REQUIRE(set_socket_option(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0);
#endif
        if (!non_blocking) set_blocking(fd, true);
    }
    return fds;
}

// Files and pipes are C runtime descriptors on both systems (the library's
// sendfile takes one): _open, _pipe, _write and _close on Windows.

/// Closes a C runtime descriptor (a file or a pipe end; not a socket).
inline void close_fd(int fd) {
#ifdef _WIN32
    ::_close(fd);
#else
    ::close(fd);
#endif
}

/// Writes all of `data` to the file or pipe `fd`.
inline void write_fd(int fd, std::string_view data) {
#ifdef _WIN32
    REQUIRE(::_write(fd, data.data(), static_cast<unsigned>(data.size())) ==
            static_cast<int>(data.size()));
#else
    REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
#endif
}

/// A pipe, both ends close-on-exec (not inherited) and blocking, as C
/// runtime descriptors: {read end, write end}; the test closes them with
/// close_fd. Windows' pipe buffer is asked for 64 KiB, Linux's default.
inline std::array<int, 2> os_pipe() {
    int fds[2];
#ifdef _WIN32
    REQUIRE(::_pipe(fds, 65536, _O_BINARY | _O_NOINHERIT) == 0);
#else
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
#endif
    return {fds[0], fds[1]};
}

/// A temporary file holding `content`, positioned at 0, removed when closed
/// (unlinked at once on POSIX, _O_TEMPORARY on Windows).
struct TempFile {
    int fd = -1;
    explicit TempFile(std::string_view content) {
#ifdef _WIN32
        char directory[MAX_PATH + 1];
        char path[MAX_PATH + 1];
        REQUIRE(::GetTempPathA(sizeof directory, directory) != 0);
        REQUIRE(::GetTempFileNameA(directory, "aio", 0, path) != 0);
        fd = ::_open(path, _O_RDWR | _O_BINARY | _O_TEMPORARY | _O_NOINHERIT);
        REQUIRE(fd >= 0);
#else
        char path[] = "/tmp/asyncio-test-XXXXXX";
        fd = ::mkostemp(path, O_CLOEXEC);
        REQUIRE(fd >= 0);
        ::unlink(path);
#endif
        write_fd(fd, content);
        seek(0);
    }
    ~TempFile() { close_fd(fd); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    /// The file position.
    long long tell() const {
#ifdef _WIN32
        return ::_lseeki64(fd, 0, SEEK_CUR);
#else
        return ::lseek(fd, 0, SEEK_CUR);
#endif
    }
    void seek(long long position) const {
#ifdef _WIN32
        REQUIRE(::_lseeki64(fd, position, SEEK_SET) == position);
#else
        REQUIRE(::lseek(fd, static_cast<off_t>(position), SEEK_SET) == position);
#endif
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

/// std::latch on a mutex and a condition variable. libstdc++ 12 builds
/// std::latch on atomic waits, which on mingw-w64 (no futex there) lose
/// wake-ups: a waiting thread may sleep through the count reaching zero.
class Latch {
  public:
    explicit Latch(std::ptrdiff_t count) : count_(count) {}
    Latch(const Latch&) = delete;
    Latch& operator=(const Latch&) = delete;

    void count_down(std::ptrdiff_t n = 1) {
        std::lock_guard lock(mutex_);
        count_ -= n;
        if (count_ <= 0) reached_zero_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        reached_zero_.wait(lock, [this] { return count_ <= 0; });
    }
    void arrive_and_wait(std::ptrdiff_t n = 1) {
        count_down(n);
        wait();
    }

  private:
    std::mutex mutex_;
    std::condition_variable reached_zero_;
    std::ptrdiff_t count_;
};

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
