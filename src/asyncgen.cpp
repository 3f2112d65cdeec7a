// Async generator lifetime: registry, aclose, finalization, and the loop's
// shutdown_asyncgens (base_events._asyncgen_finalizer_hook and friends).
#include "asyncio/asyncgen.hpp"

#include "asyncio/log.hpp"
#include "asyncio/tasks.hpp"

namespace asyncio {
namespace detail {

void LoopCore::register_asyncgen(AsyncGenBase& generator) noexcept {
    asyncgens_.push_back(generator);
}

void DriveAwaiter::first_iteration(AsyncGenBase& g) noexcept {
    // Python's firstiter hook: the running loop learns about the generator.
    LoopCore* loop = running_loop();
    if (loop == nullptr || g.loop != nullptr) return;
    g.loop = loop;
    if (loop->asyncgens_shutdown_called()) {
        log(LogLevel::warning,
            "asynchronous generator '{}' was scheduled after loop.shutdown_asyncgens() call",
            g.where.function_name());
    }
    loop->register_asyncgen(g);
}

Coro<void> close_asyncgen(AsyncGenBase& g) {
    if (g.state == AsyncGenBase::State::running) {
        throw RuntimeError("aclose(): asynchronous generator is already running");
    }
    if (g.state != AsyncGenBase::State::suspended) {  // never started, or done: nothing to run
        if (g.state == AsyncGenBase::State::created) {
            g.state = AsyncGenBase::State::finished;
            g.Hook<AsyncGenTag>::unlink();
        }
        co_return;
    }
    AsyncGenRef keep(g);
    g.closing = true;
    std::exception_ptr error;
    {
        DriveAwaiter drive(g);  // gone before the checks below, as a temporary would be
        Outcome<bool> closed = co_await try_await(drive);
        error = closed.exception();
    }
    // One GeneratorExit per aclose(): a generator that ignored it and
    // yielded again resumes normally at its next next().
    g.closing = false;
    // GeneratorExit is the generator closing as asked, not an error.
    if (error && !holds_exception<GeneratorExit>(error)) std::rethrow_exception(error);
    if (g.state != AsyncGenBase::State::finished) {
        throw RuntimeError("async generator ignored GeneratorExit");
    }
}

namespace {

void report_close_error(LoopCore& loop, const AsyncGenBase& g, std::exception_ptr error) noexcept {
    ExceptionContext context;
    context.message = "an error occurred during closing of asynchronous generator";
    context.exception = std::move(error);
    try {
        context.repr = fmt::format("<async_generator object {}>", g.where.function_name());
    } catch (...) {
    }
    context.source = g.where;
    loop.report(context);
}

/// Owns one reference to a generator, even in a coroutine that never starts.
class AdoptedRef {
  public:
    explicit AdoptedRef(AsyncGenBase* generator) noexcept : generator_(generator) {}
    AdoptedRef(AdoptedRef&& other) noexcept
        : generator_(std::exchange(other.generator_, nullptr)) {}
    AdoptedRef& operator=(AdoptedRef&&) = delete;
    ~AdoptedRef() {
        if (generator_ != nullptr) generator_->release();
    }
    AsyncGenBase& operator*() const noexcept { return *generator_; }

  private:
    AsyncGenBase* generator_;
};

Coro<void> close_dropped(AdoptedRef generator) {
    AsyncGenBase& g = *generator;
    try {
        co_await close_asyncgen(g);
    } catch (...) {
        report_close_error(*g.loop, g, std::current_exception());
    }
}

}  // namespace

void AsyncGenBase::finalize() noexcept {
    // Python finalizes a generator once: one that survives its closing task
    // (it ignored GeneratorExit) is freed when that task lets go of it.
    if (state == State::suspended && !finalizing && loop != nullptr && running_loop() == loop &&
        !loop->closed()) {
        finalizing = true;
        // Python's finalizer hook discards the generator from the loop's set
        // first: shutdown_asyncgens must not close it a second time.
        Hook<AsyncGenTag>::unlink();
        ++refs;  // adopted by close_dropped's frame
        try {
            loop->owner().create_task(close_dropped(AdoptedRef(this)));
        } catch (...) {
            // The task was not created; its frame released the reference and
            // freed the generator.
        }
        return;
    }
    Hook<AsyncGenTag>::unlink();
    self.destroy();
}

}  // namespace detail

Coro<void> EventLoop::shutdown_asyncgens() {
    asyncgens_shutdown_called_ = true;
    std::vector<detail::AsyncGenBase*> closing;
    std::vector<std::unique_ptr<detail::AsyncGenRef>> keep;  // released even if we are abandoned
    while (detail::AsyncGenBase* g = asyncgens_.pop_front()) {
        keep.push_back(std::make_unique<detail::AsyncGenRef>(*g));
        closing.push_back(g);
    }
    if (closing.empty()) co_return;
    std::vector<Task<void>> tasks;
    for (detail::AsyncGenBase* g : closing)
        tasks.push_back(create_task(detail::close_asyncgen(*g)));
    auto outcomes = co_await gather(return_exceptions, tasks);
    for (std::size_t i = 0; i < closing.size(); ++i) {
        if (std::exception_ptr error = outcomes[i].exception()) {
            bool cancelled = false;
            try {
                std::rethrow_exception(error);
            } catch (const CancelledError&) {
                cancelled = true;
            } catch (...) {
            }
            if (!cancelled) detail::report_close_error(*this, *closing[i], error);
        }
    }
}

}  // namespace asyncio
