// asyncio.Runner (Lib/asyncio/runners.py).
#include "asyncio/runners.hpp"

#include "asyncio/log.hpp"

#include "asyncio/policy.hpp"
#include "asyncio/tasks.hpp"

namespace asyncio {

Runner::Runner(RunOptions opts) : opts_(opts) {}

Runner::~Runner() {
    try {
        close();
    } catch (...) {
        log_message(LogLevel::error, "asyncio.Runner: error while closing");
    }
}

void Runner::lazy_init() {
    if (state_ == State::closed) throw RuntimeError("Runner is closed");
    if (state_ == State::initialized) return;
    if (opts_.backend) {
        // CPython's loop_factory: the loop is the caller's choice and does
        // not become the thread's current loop.
        loop_ = std::make_unique<EventLoop>(*opts_.backend);
    } else {
        loop_ = new_event_loop();
        set_event_loop(loop_.get());
        current_loop_ = CurrentLoop::set;
    }
    if (opts_.debug) loop_->set_debug(true);
    if (opts_.clock != nullptr) loop_->set_clock(opts_.clock);
    context_ = copy_context();
    state_ = State::initialized;
}

const char* Runner::refuse_run() {
    if (detail::running_loop() != nullptr) {
        return "Runner.run() cannot be called from a running event loop";
    }
    if (state_ == State::closed) return "Runner is closed";
    lazy_init();
    return nullptr;
}

EventLoop& Runner::get_loop() {
    lazy_init();
    return *loop_;
}

void Runner::close() {
    // CPython's Runner.close() returns unless initialized: a runner that
    // never made its loop stays usable.
    if (state_ != State::initialized) return;
    if (loop_->is_running())
        throw RuntimeError("Runner.close() cannot be called while its loop runs");
    struct Finally {
        Runner& runner;
        ~Finally() {
            if (runner.current_loop_ == CurrentLoop::set) set_event_loop(nullptr);
            runner.loop_->close();
            runner.loop_.reset();
            runner.state_ = State::closed;
        }
    } finally{*this};
    cancel_all_tasks();
    loop_->run_until_complete(loop_->shutdown_asyncgens());
    loop_->run_until_complete(loop_->shutdown_default_executor());
}

void Runner::install_sigint(Task<> main) {
    interrupt_count_ = 0;
    // Runner._on_sigint: the first SIGINT cancels the main task; the second
    // is the C handler's (it interrupts the process), since this one runs
    // in the loop, which a stuck callback keeps from running it.
    try {
        loop_->install_runner_sigint(detail::library_key, [this, main]() mutable {
            ++interrupt_count_;
            if (interrupt_count_ == 1 && !main.done()) main.cancel();
        });
    } catch (const std::exception& error) {
        // CPython runs on without its handler when signal.signal refuses.
        log(LogLevel::warning, "asyncio.Runner: cannot handle SIGINT: {}", error.what());
    }
}

void Runner::uninstall_sigint() noexcept {
    if (loop_) loop_->uninstall_runner_sigint(detail::library_key);
}

bool Runner::interrupted(Task<>& main) noexcept {
    return interrupt_count_ > 0 && main.uncancel() == 0;
}

void Runner::cancel_all_tasks() {
    std::vector<Task<>> to_cancel = all_tasks(*loop_);
    if (to_cancel.empty()) return;
    for (Task<>& task : to_cancel)
        task.cancel();
    // gather(*to_cancel, return_exceptions=True): wait for each in turn.
    for (Task<>& task : to_cancel) {
        if (!task.done()) loop_->run_until_done(detail::library_key, *task.state());
    }
    for (Task<>& task : to_cancel) {
        if (task.cancelled()) continue;
        if (std::exception_ptr error = task.exception()) {
            ExceptionContext context;
            context.message = "unhandled exception during asyncio.run() shutdown";
            context.exception = error;
            context.task = task;
            loop_->call_exception_handler(context);
        }
    }
}

}  // namespace asyncio
