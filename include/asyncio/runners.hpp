// asyncio.run and asyncio.Runner (Lib/asyncio/runners.py).
//
//     asyncio::Coro<int> main_coro() { co_await asyncio::sleep(1s); co_return 0; }
//     int main() { return asyncio::run(main_coro()); }
//
// A Runner owns a fresh loop, makes it the thread's current loop (unless it
// was given a backend, CPython's loop_factory), runs every coroutine in one
// Context, and on close cancels whatever tasks are left, waits for them, and
// closes the loop.
#pragma once

#include <memory>
#include <optional>
#include <utility>

#include "asyncio/backend.hpp"
#include "asyncio/contextvars.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"

namespace asyncio {

/// Keyword arguments of asyncio.run and asyncio.Runner.
struct RunOptions {
    bool debug = false;
    std::optional<Backend> backend{};
    /// Runs the loop on this virtual clock instead of the monotonic one
    /// (clock.hpp); it must outlive the runner.
    TestClock* clock = nullptr;
};

class ASYNCIO_EXPORT Runner {
  public:
    explicit Runner(RunOptions opts = {});
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;
    ~Runner();

    /// Runs `coro` to completion on this runner's loop and returns its
    /// result. It runs in the runner's Context, the same for every run, so
    /// what one run sets the next sees. RuntimeError if a loop is already
    /// running in this thread or the runner is closed.
    ///
    /// In the main thread, if SIGINT's disposition is SIG_DFL, SIGINT is
    /// handled while it runs, as CPython's Runner does: the first SIGINT
    /// cancels the main task, and if that ends it, run() throws
    /// KeyboardInterrupt; a second SIGINT before then restores SIG_DFL and
    /// raises SIGINT again, which ends the process. SIG_DFL comes back
    /// when run() returns.
    template <class T>
    T run(Coro<T> coro) {
        return run_in(std::move(coro), nullptr);
    }
    /// Runner.run(coro, context=context): runs `coro` in `context` instead.
    template <class T>
    T run(Coro<T> coro, const Context& context) {
        return run_in(std::move(coro), &context);
    }

    /// The runner's loop, created on first use.
    EventLoop& get_loop();

    /// Cancels the remaining tasks, waits for them, closes the loop. Also
    /// done on destruction. It does nothing on a runner that has not
    /// created its loop yet (which can still run afterwards), nor a second time.
    void close();

  private:
    enum class State { created, initialized, closed };
    /// Whether lazy_init made the loop the thread's current one, so that
    /// close() unsets it.
    enum class CurrentLoop { untouched, set };

    template <class T>
    T run_in(Coro<T> coro, const Context* context) {
        if (const char* refusal = refuse_run()) {
            coro.close();
            throw RuntimeError(refusal);
        }
        Task<T> task = loop_->create_task(std::move(coro),
                                          {.context = context != nullptr ? *context : *context_});
        Task<> main = task;
        struct SigintScope {
            Runner& runner;
            ~SigintScope() { runner.uninstall_sigint(); }
        } sigint{*this};
        install_sigint(main);
        try {
            return loop_->run_until_complete(std::move(task));
        } catch (const CancelledError&) {
            if (interrupted(main)) throw KeyboardInterrupt();
            throw;
        }
    }

    void lazy_init();
    /// Why run() cannot start now, or nullptr (after creating the loop).
    const char* refuse_run();
    void cancel_all_tasks();
    /// Runner.run's SIGINT handling (see run): installed only in the main
    /// thread and only if SIGINT's disposition is SIG_DFL.
    void install_sigint(Task<> main);
    void uninstall_sigint() noexcept;
    /// Whether the main task ended cancelled by SIGINT: then run() throws
    /// KeyboardInterrupt instead of CancelledError.
    bool interrupted(Task<>& main) noexcept;

    RunOptions opts_;
    std::unique_ptr<EventLoop> loop_;
    std::optional<Context> context_;  // copy_context() when the loop is created
    State state_ = State::created;
    CurrentLoop current_loop_ = CurrentLoop::untouched;
    int interrupt_count_ = 0;
};

/// asyncio.run: runs `main` in a new Runner and returns its result.
/// RuntimeError if called while a loop is running in this thread.
template <class T>
T run(Coro<T> main, RunOptions opts = {}) {
    if (detail::running_loop() != nullptr) {
        main.close();
        throw RuntimeError("asyncio.run() cannot be called from a running event loop");
    }
    Runner runner(opts);
    return runner.run(std::move(main));
}

}  // namespace asyncio
