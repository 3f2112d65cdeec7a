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
    loop_ = opts_.backend ? std::make_unique<EventLoop>(*opts_.backend) : new_event_loop();
    if (opts_.debug) loop_->set_debug(true);
    if (opts_.clock != nullptr) loop_->set_clock(opts_.clock);
    set_event_loop(loop_.get());
    state_ = State::initialized;
}

const char* Runner::refuse_run() {
    if (detail::running_loop != nullptr) {
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
    if (state_ != State::initialized) {
        state_ = State::closed;
        return;
    }
    if (loop_->is_running())
        throw RuntimeError("Runner.close() cannot be called while its loop runs");
    struct Finally {
        Runner& runner;
        ~Finally() {
            set_event_loop(nullptr);
            runner.loop_->close();
            runner.loop_.reset();
            runner.state_ = State::closed;
        }
    } finally{*this};
    cancel_all_tasks();
    loop_->run_until_complete(loop_->shutdown_asyncgens());
    loop_->run_until_complete(loop_->shutdown_default_executor());
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
