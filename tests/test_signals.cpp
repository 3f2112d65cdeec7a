// UNIX signals: loop.add_signal_handler / remove_signal_handler, ports of
// the behavioural cases of CPython's test_unix_events.py
// (SelectorEventLoopSignalTests), against real signals, and Runner's SIGINT
// (test_runners.py's test_signal_install_not_supported_ok and friends).
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::EventLoop;
using asyncio::IoOp;
using asyncio::detail::IoAwaiter;

namespace {

struct Loop {
    std::unique_ptr<EventLoop> loop = asyncio::new_event_loop();
    EventLoop* operator->() { return loop.get(); }
    EventLoop& operator*() { return *loop; }
    /// Runs until stop(), failing the test rather than hanging.
    void run_forever() {
        bool timed_out = false;
        asyncio::TimerHandle guard = loop->call_later(30s, [&] {
            timed_out = true;
            loop->stop();
        });
        loop->run_forever();
        guard.cancel();
        REQUIRE_FALSE(timed_out);
    }
};

/// The disposition of `sig`: SIG_DFL, SIG_IGN or a handler.
void (*disposition(int sig))(int) {
    struct sigaction action {};
    ::sigaction(sig, nullptr, &action);
    return action.sa_handler;
}

/// Sets `sig` to SIG_DFL for the scope (Catch2 handles SIGINT and SIGTERM
/// while a test runs) and restores what was there.
class DefaultDisposition {
  public:
    explicit DefaultDisposition(int sig) : sig_(sig) {
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigemptyset(&dfl.sa_mask);
        ::sigaction(sig_, &dfl, &previous_);
    }
    DefaultDisposition(const DefaultDisposition&) = delete;
    DefaultDisposition& operator=(const DefaultDisposition&) = delete;
    ~DefaultDisposition() { ::sigaction(sig_, &previous_, nullptr); }

  private:
    int sig_;
    struct sigaction previous_ {};
};

}  // namespace

TEST_CASE("a signal handler runs in the loop's thread, after the signal handler returned") {
    Loop loop;
    bool raising = false;
    int calls = 0;
    bool called_while_raising = true;
    std::thread::id thread;
    loop->add_signal_handler(SIGUSR1, [&] {
        ++calls;
        called_while_raising = raising;
        thread = std::this_thread::get_id();
        loop->stop();
    });
    CHECK(disposition(SIGUSR1) != SIG_DFL);
    loop->call_soon([&] {
        raising = true;
        ::raise(SIGUSR1);
        raising = false;
    });
    loop.run_forever();
    CHECK(calls == 1);
    CHECK_FALSE(called_while_raising);
    CHECK(thread == std::this_thread::get_id());
    CHECK(loop->remove_signal_handler(SIGUSR1));
}

TEST_CASE("a signal from another thread wakes a loop that waits for I/O") {
    Loop loop;
    std::atomic<bool> ready{false};
    int calls = 0;
    loop->add_signal_handler(SIGUSR1, [&] {
        ++calls;
        loop->stop();
    });
    // Nothing else is scheduled: the loop sleeps in the backend until the
    // signal's byte arrives on its pipe.
    loop->call_soon([&] { ready = true; });
    std::thread sender([&] {
        while (!ready)
            std::this_thread::yield();
        ::kill(::getpid(), SIGUSR1);
    });
    loop.run_forever();
    sender.join();
    CHECK(calls == 1);
}

TEST_CASE("add_signal_handler again replaces the handler") {
    Loop loop;
    std::vector<std::string> calls;
    loop->add_signal_handler(SIGUSR1, [&] { calls.emplace_back("first"); });
    loop->add_signal_handler(SIGUSR1, [&] {
        calls.emplace_back("second");
        loop->stop();
    });
    loop->call_soon([] { ::raise(SIGUSR1); });
    loop.run_forever();
    CHECK(calls == std::vector<std::string>{"second"});
}

TEST_CASE("remove_signal_handler returns whether there was one and restores SIG_DFL") {
    Loop loop;
    CHECK_FALSE(loop->remove_signal_handler(SIGUSR1));
    loop->add_signal_handler(SIGUSR1, [] {});
    CHECK(disposition(SIGUSR1) != SIG_DFL);
    CHECK(loop->remove_signal_handler(SIGUSR1));
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    CHECK_FALSE(loop->remove_signal_handler(SIGUSR1));
}

TEST_CASE("remove_signal_handler restores SIG_DFL for SIGINT too") {
    DefaultDisposition sigint(SIGINT);
    Loop loop;
    loop->add_signal_handler(SIGINT, [] {});
    CHECK(disposition(SIGINT) != SIG_DFL);
    CHECK(loop->remove_signal_handler(SIGINT));
    CHECK(disposition(SIGINT) == SIG_DFL);
}

TEST_CASE("a removed handler is not called for a signal that arrives later") {
    Loop loop;
    int calls = 0;
    // SIG_IGN afterwards, so that raising the signal does not end the test.
    loop->add_signal_handler(SIGUSR2, [&] { ++calls; });
    CHECK(loop->remove_signal_handler(SIGUSR2));
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGUSR2, &ignore, nullptr);
    loop->call_soon([&] {
        ::raise(SIGUSR2);
        loop->call_soon([&] { loop->stop(); });
    });
    loop.run_forever();
    CHECK(calls == 0);
    ::signal(SIGUSR2, SIG_DFL);
}

TEST_CASE("invalid signal numbers are refused") {
    Loop loop;
    const auto add = [&](int sig) { loop->add_signal_handler(sig, [] {}); };
    for (int sig : {0, -1, NSIG, NSIG + 1, 1000}) {
        CAPTURE(sig);
        CHECK_THROWS_AS(add(sig), std::invalid_argument);
        CHECK_THROWS_AS(loop->remove_signal_handler(sig), std::invalid_argument);
    }
    CHECK_THROWS_WITH(add(NSIG), "invalid signal number " + std::to_string(NSIG));
}

TEST_CASE("SIGKILL and SIGSTOP cannot be caught") {
    Loop loop;
    for (int sig : {SIGKILL, SIGSTOP}) {
        CAPTURE(sig);
        CHECK_THROWS_MATCHES(
            loop->add_signal_handler(sig, [] {}), asyncio::RuntimeError,
            Catch::Matchers::Message("sig " + std::to_string(sig) + " cannot be caught"));
        CHECK_FALSE(loop->remove_signal_handler(sig));
    }
}

TEST_CASE("a closed loop refuses add_signal_handler") {
    Loop loop;
    loop->close();
    CHECK_THROWS_MATCHES(loop->add_signal_handler(SIGUSR1, [] {}), asyncio::RuntimeError,
                         Catch::Matchers::Message("Event loop is closed"));
    // The signal number is checked first, as in CPython.
    CHECK_THROWS_AS(loop->add_signal_handler(0, [] {}), std::invalid_argument);
    CHECK_FALSE(loop->remove_signal_handler(SIGUSR1));
}

TEST_CASE("close() removes the loop's signal handlers and restores SIG_DFL") {
    Loop loop;
    int calls = 0;
    loop->add_signal_handler(SIGUSR1, [&] { ++calls; });
    loop->add_signal_handler(SIGUSR2, [&] { ++calls; });
    CHECK(disposition(SIGUSR1) != SIG_DFL);
    loop->close();
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    CHECK(disposition(SIGUSR2) == SIG_DFL);
    CHECK_FALSE(loop->remove_signal_handler(SIGUSR1));
    CHECK(calls == 0);
}

TEST_CASE("each signal of a burst calls the handler once") {
    // raise() in the loop's thread runs the C handler before it returns, so
    // the kernel merges none of them; each is counted, however full the
    // pipe gets.
    constexpr int kSignals = 100'000;
    Loop loop;
    int calls = 0;
    loop->add_signal_handler(SIGUSR1, [&] { ++calls; });
    loop->call_soon([&] {
        for (int i = 0; i < kSignals; ++i)
            ::raise(SIGUSR1);
        // The deliveries reach the loop with the pipe's wake-up, one
        // iteration from now; their calls, one more.
        loop->call_soon([&] { loop->call_soon([&] { loop->stop(); }); });
    });
    loop.run_forever();
    CHECK(calls == kSignals);
}

TEST_CASE("an exception thrown by a signal handler goes to the exception handler") {
    Loop loop;
    asyncio_test::RecordedReports reports(*loop);
    loop->add_signal_handler(SIGUSR1, [&] {
        loop->stop();
        throw std::runtime_error("boom");
    });
    loop->call_soon([] { ::raise(SIGUSR1); });
    loop.run_forever();
    REQUIRE(reports.contexts.size() == 1);
    CHECK(reports.messages[0].find("Exception in callback") != std::string::npos);
}

TEST_CASE("a handler may remove itself") {
    Loop loop;
    int calls = 0;
    loop->add_signal_handler(SIGUSR1, [&] {
        ++calls;
        CHECK(loop->remove_signal_handler(SIGUSR1));
        loop->stop();
    });
    loop->call_soon([] { ::raise(SIGUSR1); });
    loop.run_forever();
    CHECK(calls == 1);
    CHECK(disposition(SIGUSR1) == SIG_DFL);
}

TEST_CASE("two loops in two threads each receive a signal sent to the process") {
    struct Side {
        std::unique_ptr<EventLoop> loop;
        int calls = 0;
        std::thread::id thread;
    };
    Side sides[2];
    std::atomic<int> ready{0};
    const auto run_side = [&](Side& side) {
        side.loop = asyncio::new_event_loop();
        side.loop->add_signal_handler(SIGUSR1, [&side] {
            ++side.calls;
            side.thread = std::this_thread::get_id();
            side.loop->stop();
        });
        auto guard = side.loop->call_later(30s, [&side] { side.loop->stop(); });
        side.loop->call_soon([&] { ++ready; });
        side.loop->run_forever();
        guard.cancel();
        side.loop->close();
    };
    // The signal goes to any thread that does not block it: the main
    // thread blocks it, so one of the loops' threads takes it, and its C
    // handler writes to both loops' pipes.
    sigset_t usr1, previous;
    ::sigemptyset(&usr1);
    ::sigaddset(&usr1, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &usr1, &previous);
    std::vector<std::thread::id> ids;
    {
        std::vector<std::thread> threads;
        for (Side& side : sides) {
            ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);  // the threads inherit it
            threads.emplace_back(run_side, std::ref(side));
            ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
        }
        while (ready < 2)
            std::this_thread::yield();
        ::kill(::getpid(), SIGUSR1);
        for (std::thread& thread : threads) {
            ids.push_back(thread.get_id());
            thread.join();
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    CHECK(sides[0].calls == 1);
    CHECK(sides[1].calls == 1);
    CHECK(sides[0].thread == ids[0]);
    CHECK(sides[1].thread == ids[1]);
    CHECK(disposition(SIGUSR1) == SIG_DFL);
}

TEST_CASE("two loops handle different signals; pthread_kill reaches the right one") {
    struct Side {
        int sig;
        std::unique_ptr<EventLoop> loop;
        std::vector<int> calls;
    };
    Side sides[2] = {{SIGUSR1, nullptr, {}}, {SIGUSR2, nullptr, {}}};
    std::atomic<int> ready{0};
    std::atomic<bool> sent{false};
    const auto run_side = [&](Side& side) {
        side.loop = asyncio::new_event_loop();
        side.loop->add_signal_handler(side.sig, [&side] {
            side.calls.push_back(side.sig);
            side.loop->stop();
        });
        auto guard = side.loop->call_later(30s, [&side] { side.loop->stop(); });
        side.loop->call_soon([&] { ++ready; });
        side.loop->run_forever();
        guard.cancel();
        // pthread_kill needs the thread alive until both signals are sent.
        while (!sent)
            std::this_thread::yield();
        side.loop->close();
    };
    std::thread first(run_side, std::ref(sides[0]));
    std::thread second(run_side, std::ref(sides[1]));
    while (ready < 2)
        std::this_thread::yield();
    // Each signal to the thread of the loop that does not handle it: the
    // handler's thread does not matter.
    ::pthread_kill(second.native_handle(), SIGUSR1);
    ::pthread_kill(first.native_handle(), SIGUSR2);
    sent = true;
    first.join();
    second.join();
    CHECK(sides[0].calls == std::vector<int>{SIGUSR1});
    CHECK(sides[1].calls == std::vector<int>{SIGUSR2});
    CHECK(disposition(SIGUSR1) == SIG_DFL);
    CHECK(disposition(SIGUSR2) == SIG_DFL);
}

TEST_CASE("another loop's handler keeps the signal caught when one loop removes its own") {
    Loop a;
    Loop b;
    int calls_b = 0;
    a->add_signal_handler(SIGUSR1, [] {});
    b->add_signal_handler(SIGUSR1, [&] {
        ++calls_b;
        b->stop();
    });
    CHECK(a->remove_signal_handler(SIGUSR1));
    CHECK(disposition(SIGUSR1) != SIG_DFL);
    b->call_soon([] { ::raise(SIGUSR1); });
    b.run_forever();
    CHECK(calls_b == 1);
    CHECK(b->remove_signal_handler(SIGUSR1));
    CHECK(disposition(SIGUSR1) == SIG_DFL);
}

TEST_CASE("a library signal watch coexists with a handler for the same signal") {
    Loop loop;
    std::vector<std::string> calls;
    loop->add_signal_watch(asyncio::detail::library_key, SIGUSR2,
                           [&] { calls.emplace_back("watch"); });
    loop->add_signal_handler(SIGUSR2, [&] {
        calls.emplace_back("handler");
        loop->stop();
    });
    loop->call_soon([] { ::raise(SIGUSR2); });
    loop.run_forever();
    // The watch runs at the wake-up, the handler one call_soon later.
    CHECK(calls == std::vector<std::string>{"watch", "handler"});

    // Removing the handler leaves the watch, and the signal caught.
    CHECK(loop->remove_signal_handler(SIGUSR2));
    CHECK(disposition(SIGUSR2) != SIG_DFL);
    calls.clear();
    loop->add_signal_watch(asyncio::detail::library_key, SIGUSR2, [&] {
        calls.emplace_back("watch 2");
        loop->stop();
    });
    loop->call_soon([] { ::raise(SIGUSR2); });
    loop.run_forever();
    CHECK(calls == std::vector<std::string>{"watch 2"});

    loop->remove_signal_watch(asyncio::detail::library_key, SIGUSR2);
    CHECK(disposition(SIGUSR2) == SIG_DFL);
}

TEST_CASE("a library signal watch restores the disposition it found") {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigemptyset(&ignore.sa_mask);
    struct sigaction previous {};
    ::sigaction(SIGUSR2, &ignore, &previous);
    {
        Loop loop;
        loop->add_signal_watch(asyncio::detail::library_key, SIGUSR2, [] {});
        CHECK(disposition(SIGUSR2) != SIG_IGN);
        loop->close();  // removes the watch
        CHECK(disposition(SIGUSR2) == SIG_IGN);
    }
    ::sigaction(SIGUSR2, &previous, nullptr);
}

TEST_CASE("a signal watch is called once per delivery, in the loop's thread") {
    Loop loop;
    int calls = 0;
    loop->add_signal_watch(asyncio::detail::library_key, SIGUSR1, [&] { ++calls; });
    loop->call_soon([&] {
        for (int i = 0; i < 3; ++i)
            ::raise(SIGUSR1);
        loop->call_soon([&] { loop->stop(); });
    });
    loop.run_forever();
    CHECK(calls == 3);
}

// -- Runner and asyncio::run -------------------------------------------------------

namespace {

Coro<void> interrupt_myself(bool* cancelled) {
    ::raise(SIGINT);
    try {
        co_await asyncio::sleep(30s);
    } catch (const asyncio::CancelledError&) {
        *cancelled = true;
        throw;
    }
}

Coro<int> swallow_interrupt() {
    ::raise(SIGINT);
    try {
        co_await asyncio::sleep(30s);
    } catch (const asyncio::CancelledError&) {
        co_return 42;
    }
    co_return 0;
}

Coro<void> wait_for_interrupt(std::atomic<bool>* waiting) {
    *waiting = true;
    co_await asyncio::sleep(30s);
}

Coro<void> check_sigint_untouched(void (*expected)(int), bool* checked) {
    *checked = disposition(SIGINT) == expected;
    co_return;
}

Coro<void> handle_sigint_myself(int* calls) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Future<> got = loop.create_future();
    loop.add_signal_handler(SIGINT, [calls, got]() mutable {
        ++*calls;
        if (!got.done()) got.set_result();
    });
    ::raise(SIGINT);
    co_await got;
}

}  // namespace

TEST_CASE("SIGINT cancels asyncio::run's main task, which throws KeyboardInterrupt") {
    DefaultDisposition sigint(SIGINT);
    bool cancelled = false;
    CHECK_THROWS_AS(asyncio::run(interrupt_myself(&cancelled)), asyncio::KeyboardInterrupt);
    CHECK(cancelled);
    CHECK(disposition(SIGINT) == SIG_DFL);
}

TEST_CASE("KeyboardInterrupt is not a std::exception") {
    DefaultDisposition sigint(SIGINT);
    bool cancelled = false;
    bool caught_as_std_exception = false;
    bool caught = false;
    try {
        asyncio::run(interrupt_myself(&cancelled));
    } catch (const std::exception&) {
        caught_as_std_exception = true;
    } catch (const asyncio::KeyboardInterrupt& interrupt) {
        caught = true;
        CHECK(std::string(interrupt.what()) == "KeyboardInterrupt");
    }
    CHECK(caught);
    CHECK_FALSE(caught_as_std_exception);
}

TEST_CASE("a SIGINT sent from another thread wakes the loop and interrupts run") {
    DefaultDisposition sigint(SIGINT);
    std::atomic<bool> waiting{false};
    std::thread sender([&] {
        while (!waiting)
            std::this_thread::yield();
        ::kill(::getpid(), SIGINT);
    });
    CHECK_THROWS_AS(asyncio_test::run_guarded(wait_for_interrupt(&waiting)),
                    asyncio::KeyboardInterrupt);
    sender.join();
    CHECK(disposition(SIGINT) == SIG_DFL);
}

TEST_CASE("a main task that swallows the SIGINT cancellation returns its result") {
    DefaultDisposition sigint(SIGINT);
    CHECK(asyncio::run(swallow_interrupt()) == 42);
    CHECK(disposition(SIGINT) == SIG_DFL);
}

TEST_CASE("a Runner handles SIGINT for each run, and not between runs") {
    DefaultDisposition sigint(SIGINT);
    asyncio::Runner runner;
    bool cancelled = false;
    CHECK_THROWS_AS(runner.run(interrupt_myself(&cancelled)), asyncio::KeyboardInterrupt);
    CHECK(disposition(SIGINT) == SIG_DFL);
    CHECK(runner.run(swallow_interrupt()) == 42);
    CHECK(disposition(SIGINT) == SIG_DFL);
}

TEST_CASE("run leaves SIGINT alone unless its disposition is SIG_DFL") {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigemptyset(&ignore.sa_mask);
    struct sigaction previous {};
    ::sigaction(SIGINT, &ignore, &previous);
    bool checked = false;
    asyncio::run(check_sigint_untouched(SIG_IGN, &checked));
    CHECK(checked);
    CHECK(disposition(SIGINT) == SIG_IGN);
    ::sigaction(SIGINT, &previous, nullptr);
}

TEST_CASE("run outside the main thread leaves SIGINT alone") {
    DefaultDisposition sigint(SIGINT);
    bool checked = false;
    std::thread([&] { asyncio::run(check_sigint_untouched(SIG_DFL, &checked)); }).join();
    CHECK(checked);
}

TEST_CASE("a SIGINT handler added by the main coroutine replaces the Runner's") {
    DefaultDisposition sigint(SIGINT);
    int calls = 0;
    asyncio::run(handle_sigint_myself(&calls));  // not interrupted
    CHECK(calls == 1);
    CHECK(disposition(SIGINT) == SIG_DFL);  // closing the loop removed it
}

namespace {
constexpr const char* kSecondSigintChild = "child: a second SIGINT interrupts asyncio::run";

Coro<void> ignore_first_interrupt() {
    ::raise(SIGINT);
    try {
        co_await asyncio::sleep(30s);
    } catch (const asyncio::CancelledError&) {
    }
    ::raise(SIGINT);  // the process ends here
    co_await asyncio::sleep(30s);
}
}  // namespace

// Run by the next test in a child process (hidden from a plain run).
TEST_CASE("child: a second SIGINT interrupts asyncio::run", "[.]") {
    DefaultDisposition sigint(SIGINT);
    asyncio::run(ignore_first_interrupt());
    std::_Exit(3);  // not interrupted
}

TEST_CASE("a second SIGINT interrupts the process") {
    std::string exe = "/proc/self/exe";
    std::string name = kSecondSigintChild;
    char* argv[] = {exe.data(), name.data(), nullptr};
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::execv(argv[0], argv);
        std::_Exit(127);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) {
        CHECK(WTERMSIG(status) == SIGINT);
    } else {
        CHECK(WEXITSTATUS(status) == -1);  // shows the status
    }
}

// -- the backend's signal op, which a loop on kqueue watches each signal with ----------

namespace {

Coro<std::int64_t> count_signal(int sig) {
    IoAwaiter op(asyncio::get_running_loop().backend());
    op.kind = IoOp::Kind::signal;
    op.sig = sig;
    co_return co_await op;
}

}  // namespace

TEST_CASE("a signal op counts deliveries where the backend counts signals") {
    // kqueue records a signal even while it is ignored (SIGCHLD aside).
    struct sigaction ignore {};
    struct sigaction previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGUSR2, &ignore, &previous) == 0);
    auto main = []() -> Coro<std::pair<bool, std::int64_t>> {
        const bool counts = asyncio::get_running_loop().backend().counts_signals();
        auto counting = asyncio::create_task(count_signal(SIGUSR2));
        co_await asyncio::sleep(0);
        ::raise(SIGUSR2);
        const std::int64_t r = co_await counting;
        co_return std::pair{counts, r};
    };
    const auto [counts, r] = asyncio_test::run_guarded(main());
    ::sigaction(SIGUSR2, &previous, nullptr);
    if (counts) {
        CHECK(r >= 1);
    } else {
        CHECK(r == -ENOSYS);
    }
}
