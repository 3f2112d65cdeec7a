// The event loop: BaseEventLoop's run machinery (Lib/asyncio/base_events.py).
#include "asyncio/loop.hpp"

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <system_error>
#include <unordered_set>

#include "asyncio/log.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/threads.hpp"
#include "internal.hpp"

namespace asyncio {

namespace detail {

namespace {

// Loops that exist; consulted only when a future outlives its loop.
std::mutex registry_mutex;
std::unordered_set<const LoopCore*>& live_loops() {
    static auto* loops = new std::unordered_set<const LoopCore*>;
    return *loops;
}

std::string describe_handle(const HandleState& handle) {
    const std::source_location where = handle.where();
    return fmt::format("<{} created at {}:{} in {}>", handle.is_timer() ? "TimerHandle" : "Handle",
                       where.file_name(), where.line(), where.function_name());
}

}  // namespace

// flatten: the callback's run, as when this was inline in the header (a
// call to run() costs each callback about 20 instructions); the exception
// report it would otherwise pull in stays out of line.
[[gnu::flatten]] void HandleState::from_queue(ReadyNode& node, Action action) noexcept {
    auto& self = node_cast<HandleState>(node);
    if (action == Action::run && !self.cancelled()) self.run();
    self.destroy_callable();
    self.release();
}

LoopCore::LoopCore() {
    std::lock_guard lock(registry_mutex);
    live_loops().insert(this);
}

LoopCore::~LoopCore() {
    std::lock_guard lock(registry_mutex);
    live_loops().erase(this);
}

bool LoopCore::alive(const LoopCore* core) noexcept {
    std::lock_guard lock(registry_mutex);
    return live_loops().count(core) != 0;
}

EventLoop& LoopCore::owner() noexcept {
    return static_cast<EventLoop&>(*this);
}

void LoopCore::check_closed() const {
    if (closed_) throw RuntimeError("Event loop is closed");
}

void LoopCore::check_thread() const {
    const auto running_on = static_cast<const EventLoop*>(this)->thread_id_.load();
    if (running_on == std::thread::id{}) return;
    if (running_on != std::this_thread::get_id()) {
        throw RuntimeError(
            "Non-thread-safe operation invoked on an event loop other than the current one");
    }
}

void LoopCore::report(const ExceptionContext& context) noexcept {
    owner().call_exception_handler(context);
}

[[gnu::noinline]] void LoopCore::report_callback_exception(HandleState& handle,
                                                           std::exception_ptr error) noexcept {
    try {
        ExceptionContext context;
        context.message = "Exception in callback " + describe_handle(handle);
        context.exception = std::move(error);
        handle.add_ref();
        context.handle = Handle(&handle);
        context.source = handle.where();
        report(context);
    } catch (...) {
        log_message(LogLevel::error, "Exception in callback (and in reporting it)");
    }
}

void LoopCore::register_task(TaskBase& task) noexcept {
    task.add_ref();
    tasks_.push_back(task);
}

void LoopCore::unregister_task(TaskBase& task) noexcept {
    task.Hook<AllTasksTag>::unlink();
    task.release();
}

ASYNCIO_DEFINE_PER_THREAD(LoopCore*, running_loop);

LoopCore& current_loop_core() {
    if (running_loop() != nullptr) return *running_loop();
    return get_event_loop();
}

}  // namespace detail

// -- add_reader / add_writer, process and signal watches -----------------------------

/// An operation that calls a callback each time it completes (its fd is
/// ready, its process exited, its signal arrived) and then waits again,
/// until removed.
struct EventLoop::Watch final : IoOp, detail::Recycled {
    Watch(EventLoop& loop, Watching watching, int key, detail::HandleState* callback) noexcept
        : IoOp(&on_ready), loop(&loop), watching(watching), key(key), callback(callback) {
        switch (watching) {
            case Watching::reads:
                kind = Kind::poll_readable;
                fd = key;
                break;
            case Watching::writes:
                kind = Kind::poll_writable;
                fd = key;
                break;
            case Watching::exits:
                kind = Kind::process_exit;
                pid = key;
                break;
            case Watching::signals:
                kind = Kind::signal;
                sig = key;
                break;
        }
    }
    /// The call a watch comes from and what it watches, for its errors.
    struct Names {
        const char* call;
        const char* target;
    };
    static Names names(Watching watching) noexcept {
        switch (watching) {
            case Watching::reads:
                return {"add_reader", "fd"};
            case Watching::writes:
                return {"add_writer", "fd"};
            case Watching::exits:
                return {"add_process_watch", "process"};
            case Watching::signals:
                break;
        }
        return {"add_signal_handler", "signal"};
    }

    ~Watch() {
        // A signal stays counted between submissions until abandoned.
        if (attached()) loop->backend_->abandon(*this);
        callback->release();
    }

    void replace(detail::HandleState* next) noexcept {
        callback->cancel();
        callback->release();
        callback = next;
    }

    static void on_ready(detail::ReadyNode& node, Action action) noexcept {
        Watch* self = &detail::node_cast<Watch>(node);
        if (action == Action::drop || self->removed) {
            delete self;
            return;
        }
        if (self->result >= 0) {
            detail::HandleState* callback = self->callback;
            callback->add_ref();  // the callback may replace itself while it runs
            self->running = true;
            // A signal watch completes with the number of deliveries: one call each.
            std::int64_t calls = self->kind == Kind::signal ? self->result : 1;
            for (; calls > 0 && !self->removed && !callback->cancelled(); --calls)
                callback->run();
            self->running = false;
            callback->release();
            if (self->removed) {
                delete self;
                return;
            }
        }
        self->rearm();
    }

    void rearm() noexcept {
        EventLoop& owner = *loop;
        if (!owner.backend_->submit(*this)) return;  // waiting again
        if (result >= 0) {
            owner.schedule(*this);
            return;
        }
        // The fd went bad under us (closed without remove_reader, say).
        // The failure is the backend's (epoll_ctl, a poll(2) entry, an
        // io_uring poll request): name the backend, not one of them.
        const Names name = names(watching);
        ExceptionContext context;
        context.message =
            fmt::format("{}: {} {} cannot be watched any more: {}", name.call, name.target, key,
                        std::system_category().message(static_cast<int>(-result)));
        context.exception = detail::result_error(
            result, fmt::format("{}: re-arming {}", owner.backend_name(), name.call));
        owner.watches(watching).erase(key);
        owner.call_exception_handler(context);
        delete this;
    }

    EventLoop* loop;
    Watching watching;
    int key;  ///< the fd, the process id or the signal number
    detail::HandleState* callback;
    bool removed = false;
    bool running = false;
};

std::unordered_map<int, EventLoop::Watch*>& EventLoop::watches(Watching watching) noexcept {
    switch (watching) {
        case Watching::reads:
            return readers_;
        case Watching::writes:
            return writers_;
        case Watching::exits:
            return process_watches_;
        case Watching::signals:
            break;
    }
    return signal_watches_;
}

void EventLoop::add_watch(int key, Watching watching, detail::HandleState* callback, int pidfd) {
    const bool on_fd = watching == Watching::reads || watching == Watching::writes;
    if (on_fd && !backend_->watches_readiness()) {
        callback->release();
        throw NotImplementedError(fmt::format("{}() is not supported by the {} backend",
                                              Watch::names(watching).call, backend_->name()));
    }
    if (key < 0) {
        callback->release();
        throw std::invalid_argument(fmt::format("Invalid file descriptor: {}", key));
    }
    auto& map = watches(watching);
    if (auto it = map.find(key); it != map.end()) {
        it->second->replace(callback);
        return;
    }
    auto* watch = new Watch(*this, watching, key, callback);
    if (watching == Watching::exits) watch->fd = pidfd;
    if (backend_->submit(*watch)) {
        if (watch->result < 0) {
            const int error = static_cast<int>(-watch->result);
            delete watch;
            throw detail::os_error(error, Watch::names(watching).call);
        }
        schedule(*watch);
    }
    map.emplace(key, watch);
}

void EventLoop::add_process_watch(detail::LibraryKey, int pid, int pidfd,
                                  std::function<void()> fn) {
    check_closed();
    add_watch(pid, Watching::exits,
              detail::HandleState::create(*this, std::move(fn), detail::HandleKind::call_soon,
                                          std::source_location::current()),
              pidfd);
}

void EventLoop::remove_process_watch(detail::LibraryKey, int pid) noexcept {
    auto it = process_watches_.find(pid);
    if (it == process_watches_.end()) return;
    const int pidfd = it->second->fd;
    remove_watch(pid, Watching::exits);
    if (pidfd >= 0) backend_->forget_fd(pidfd);
}

void EventLoop::ensure_fd_no_transport(int fd) const {
    auto it = fd_owners_.find(fd);
    if (it == fd_owners_.end() || !it->second->fd_in_use()) return;
    throw RuntimeError(fmt::format("File descriptor {} is used by transport {}", fd,
                                   it->second->describe_owner()));
}

void EventLoop::register_fd_owner(detail::LibraryKey, int fd, detail::FdOwner& owner) {
    fd_owners_[fd] = &owner;
}

void EventLoop::unregister_fd_owner(detail::LibraryKey, int fd,
                                    const detail::FdOwner& owner) noexcept {
    // Only its own entry: the number may already belong to a newer transport.
    if (auto it = fd_owners_.find(fd); it != fd_owners_.end() && it->second == &owner)
        fd_owners_.erase(it);
}

bool EventLoop::remove_watch(int key, Watching watching) {
    if (debug_) check_thread();
    auto& map = watches(watching);
    auto it = map.find(key);
    if (it == map.end()) return false;
    Watch* watch = it->second;
    map.erase(it);
    // Waiting, queued or running: on_ready deletes it once its poll has
    // completed, so no backend refers to it any more.
    watch->removed = true;
    if (watch->in_flight) backend_->cancel(*watch);
    return true;
}

// -- construction ---------------------------------------------------------------------

namespace {
bool debug_from_environment() {
    const char* value = std::getenv("ASYNCIO_DEBUG");
    return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}
}  // namespace

EventLoop::EventLoop() {
    backend_ = make_default_backend(*this, &backend_note_);
    gate_->loop = this;
    set_debug(debug_from_environment());
}

EventLoop::EventLoop(Backend backend) {
    backend_ = make_backend(backend, *this);
    gate_->loop = this;
    set_debug(debug_from_environment());
}

void EventLoop::set_debug(bool enabled) noexcept {
    debug_ = enabled;
    if (!enabled || backend_logged_) return;
    // CPython's selector loop logs "Using selector: EpollSelector".
    backend_logged_ = true;
    if (backend_note_.empty()) {
        log(LogLevel::debug, "Using backend: {}", backend_->name());
    } else {
        log(LogLevel::debug, "Using backend: {} (refused: {})", backend_->name(), backend_note_);
    }
}

EventLoop::~EventLoop() {
    if (running_) {
        log_message(LogLevel::critical, "an EventLoop was destroyed while running");
        std::terminate();
    }
    close();
    std::lock_guard lock(gate_->mutex);
    gate_->loop = nullptr;
}

std::int64_t EventLoop::monotonic_ns() noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

void EventLoop::set_clock(TestClock* clock) {
    if (running_) throw RuntimeError("Cannot change the clock of a running event loop");
    if (!timers_.empty()) {
        throw RuntimeError("Cannot change the clock of an event loop with timers scheduled");
    }
    clock_ = clock;
}

void TestClock::advance_time(double seconds) {
    if (std::isnan(seconds) || seconds < 0) {
        throw std::invalid_argument("advance_time: seconds must be zero or more");
    }
    // Capped so that a deadline kNeverNs past the clock still fits.
    constexpr auto kMaxNs = EventLoop::kNeverNs;
    const double ns = std::min(seconds * 1e9, static_cast<double>(kMaxNs));
    now_ns_ = std::min(kMaxNs, now_ns_ + static_cast<std::int64_t>(std::llround(ns)));
}

// -- running ----------------------------------------------------------------------------

void EventLoop::check_running() const {
    if (running_) throw RuntimeError("This event loop is already running");
    if (detail::running_loop() != nullptr) {
        throw RuntimeError("Cannot run the event loop while another loop is running");
    }
}

void EventLoop::run_forever() {
    check_closed();
    check_running();
    running_ = true;
    thread_id_ = std::this_thread::get_id();
    detail::running_loop() = this;
    struct Restore {
        EventLoop& loop;
        ~Restore() {
            loop.stopping_ = false;
            loop.running_ = false;
            loop.thread_id_ = std::thread::id{};
            detail::running_loop() = nullptr;
        }
    } restore{*this};
    for (;;) {
        run_once();
        if (stopping_) break;
    }
}

void EventLoop::run_until_done(detail::LibraryKey, detail::FutureBase& future) {
    check_closed();
    check_running();
    // Stops the loop once `future` is done. It may still sit in the ready
    // queue when run_forever returns for another reason; it then deletes
    // itself when it is run or dropped.
    struct StopNode final : detail::Waiter, detail::Recycled {
        explicit StopNode(EventLoop& loop) noexcept : Waiter(&fire), loop(&loop) {}
        static void fire(detail::ReadyNode& node, Action action) noexcept {
            StopNode* self = &detail::node_cast<StopNode>(node);
            if (self->orphaned) {
                delete self;
                return;
            }
            self->ran = true;
            if (action == Action::run) self->loop->stop();
        }
        EventLoop* loop;
        bool ran = false;
        bool orphaned = false;
    };
    auto* node = new StopNode(*this);
    if (future.done()) {
        schedule(*node);
    } else {
        future.add_waiter(*node);
    }
    const auto release_node = [node] {
        if (node->Hook<detail::WaiterTag>::linked()) {
            node->Hook<detail::WaiterTag>::unlink();
            delete node;
        } else if (node->ran) {
            delete node;
        } else {
            node->orphaned = true;
        }
    };
    try {
        run_forever();
    } catch (...) {
        release_node();
        throw;
    }
    release_node();
    if (!future.done()) throw RuntimeError("Event loop stopped before Future completed.");
}

void EventLoop::run_once() {
    drain_before_poll();  // queued outside an iteration
    prune_timers();
    std::int64_t timeout = -1;
    if (!ready_.empty() || stopping_) {
        timeout = 0;
    } else if (!timers_.empty()) {
        timeout = std::max<std::int64_t>(0, timers_.front().when - now_ns());
    }
    // A TestClock does not move while the loop sleeps. Auto-advance polls
    // without blocking, so that I/O and wake-ups that are already there run
    // first, and jumps only if that brought nothing (tokio's paused time).
    // Work held on other threads gets the timer's distance in wall time.
    bool jump = false;
    if (clock_ != nullptr && timeout > 0) {
        jump = clock_->auto_advance_;
        if (!jump) {
            timeout = -1;
        } else if (clock_holds_ == 0) {
            timeout = 0;
        }
    }
    backend_->poll(timeout);
    drain_threadsafe();
    if (jump && ready_.empty()) clock_->now_ns_ = timers_.front().when;

    // Reading the clock is not free (a vDSO call): only when a timer may be due.
    const std::int64_t now = timers_.empty() ? 0 : now_ns();
    while (!timers_.empty() && timers_.front().when <= now) {
        std::pop_heap(timers_.begin(), timers_.end(), TimerLater{});
        detail::HandleState* handle = timers_.back().handle;
        timers_.pop_back();
        handle->scheduled_ = false;
        if (handle->cancelled()) {
            --cancelled_timers_;
            handle->destroy_callable();
            handle->release();
        } else {
            ready_.push(*handle);  // the heap's reference passes to the queue
        }
    }

    // Run only what was ready when the iteration started: callbacks scheduled
    // now wait for the next iteration.
    for (std::size_t n = ready_.size(); n != 0; --n)
        run_ready(ready_.pop());
    drain_before_poll();
}

void EventLoop::drain_before_poll() noexcept {
    while (!before_poll_.empty()) {
        detail::ReadyNode& node = before_poll_.pop();
        node.fn(node, detail::ReadyNode::Action::run);
    }
}

void EventLoop::run_ready(detail::ReadyNode& node) noexcept {
    if (!debug_) {
        node.fn(node, detail::ReadyNode::Action::run);
        return;
    }
    std::string what;
    try {
        if (node.fn == &detail::HandleState::from_queue) {
            what = detail::describe_handle(detail::node_cast<detail::HandleState>(node));
        } else if (node.fn == &detail::Waiter::resume_task) {
            what = detail::node_cast<detail::Waiter>(node).task->repr();
        } else if (node.fn == &detail::TaskBase::StepNode::run_step) {
            what = detail::node_cast<detail::TaskBase::StepNode>(node).task->repr();
        } else {
            what = "<internal callback>";
        }
    } catch (...) {
    }
    const std::int64_t start = monotonic_ns();
    node.fn(node, detail::ReadyNode::Action::run);
    const double took = static_cast<double>(monotonic_ns() - start) * 1e-9;
    if (took >= slow_callback_duration)
        log(LogLevel::warning, "Executing {} took {:.3f} seconds", what, took);
}

void EventLoop::prune_timers() noexcept {
    constexpr std::size_t kMinScheduledForCompaction = 100;  // CPython's thresholds
    if (timers_.size() > kMinScheduledForCompaction && cancelled_timers_ * 2 > timers_.size()) {
        std::erase_if(timers_, [](const TimerEntry& entry) {
            if (!entry.handle->cancelled()) return false;
            entry.handle->scheduled_ = false;
            entry.handle->destroy_callable();
            entry.handle->release();
            return true;
        });
        std::make_heap(timers_.begin(), timers_.end(), TimerLater{});
        cancelled_timers_ = 0;
        return;
    }
    while (!timers_.empty() && timers_.front().handle->cancelled()) {
        std::pop_heap(timers_.begin(), timers_.end(), TimerLater{});
        detail::HandleState* handle = timers_.back().handle;
        timers_.pop_back();
        handle->scheduled_ = false;
        --cancelled_timers_;
        handle->destroy_callable();
        handle->release();
    }
}

void EventLoop::push_timer(detail::HandleState& state, std::int64_t when_ns) {
    // push_back first: if it throws, nothing has changed yet.
    timers_.push_back(TimerEntry{when_ns, timer_seq_, &state});
    ++timer_seq_;
    state.add_ref();  // the heap's reference
    state.when_ns = when_ns;
    state.scheduled_ = true;
    std::push_heap(timers_.begin(), timers_.end(), TimerLater{});
}

// -- call_soon_threadsafe -------------------------------------------------------------

void EventLoop::push_threadsafe(detail::HandleState& state) {
    {
        std::lock_guard lock(threadsafe_mutex_);
        if (!closed_) {
            threadsafe_queue_.push(state);
            threadsafe_pending_.store(true);
        } else {
            state.destroy_callable();
            state.release();  // the queue's reference
            state.release();  // the handle's
            throw RuntimeError("Event loop is closed");
        }
    }
    if (!wake_pending_.exchange(true)) backend_->wakeup();
}

void EventLoop::drain_threadsafe() noexcept {
    // Clear the flag only if a wake-up was sent: a sequentially consistent
    // store on every iteration costs more than the whole check.
    if (wake_pending_.load()) wake_pending_.store(false);
    if (!threadsafe_pending_.load()) return;
    std::lock_guard lock(threadsafe_mutex_);
    threadsafe_pending_.store(false);
    ready_.splice(threadsafe_queue_);
}

// -- closing ------------------------------------------------------------------------------

void EventLoop::close() {
    if (running_) throw RuntimeError("Cannot close a running event loop");
    if (closed_) return;
    // Unlike CPython, wait for the default executor's threads: work still
    // running must not outlive the loop it reports to. Results it posts are
    // dropped with the rest below.
    if (default_executor_) default_executor_->shutdown(/*wait=*/true);
    {
        std::lock_guard lock(threadsafe_mutex_);
        closed_ = true;
    }
    close_signals();  // CPython's _UnixSelectorEventLoop.close
    drop_everything();
}

void EventLoop::drop_everything() noexcept {
    while (detail::LoopResource* resource = resources_.pop_front())
        resource->loop_closing();
    for (Watching watching :
         {Watching::reads, Watching::writes, Watching::exits, Watching::signals}) {
        for (auto& map = watches(watching); !map.empty();)
            remove_watch(map.begin()->first, watching);
    }
    const auto drop_ready = [this] {
        for (ready_.splice(before_poll_); !ready_.empty(); ready_.splice(before_poll_)) {
            detail::ReadyNode& node = ready_.pop();
            node.fn(node, detail::ReadyNode::Action::drop);
        }
    };
    // Freeing a task's coroutine may run destructors that schedule more work
    // or release other tasks: repeat until nothing is left.
    do {
        {
            std::lock_guard lock(threadsafe_mutex_);
            ready_.splice(threadsafe_queue_);
            threadsafe_pending_.store(false);
        }
        drop_ready();
        // What is still in flight is cancelled, and the kernel let go of it,
        // before anything it might point into is freed below.
        while (backend_->shut_down())
            drop_ready();
        for (const TimerEntry& entry : std::exchange(timers_, {})) {
            entry.handle->scheduled_ = false;
            entry.handle->destroy_callable();
            entry.handle->release();
        }
        cancelled_timers_ = 0;

        std::vector<detail::TaskBase*> pending;
        tasks_.for_each([&](detail::TaskBase& task) {
            task.add_ref();
            pending.push_back(&task);
        });
        for (detail::TaskBase* task : pending) {
            if (task->Hook<detail::AllTasksTag>::linked()) {
                if (task->log_destroy_pending()) {
                    ExceptionContext context;
                    context.message = "Task was destroyed but it is pending!";
                    task->add_ref();
                    context.task = Task<>(task, detail::AdoptRef{});
                    context.repr = task->repr();
                    context.source = task->created_at();
                    call_exception_handler(context);
                }
                task->abandon();
                // What that scheduled may live in another task's frame (a
                // lock handing itself to a waiter, say): drop it before
                // that frame is freed in turn.
                drop_ready();
            }
            task->release();
        }
    } while (!ready_.empty() || !tasks_.empty() || !timers_.empty());
    while (backend_->shut_down())
        drop_ready();
}

// -- errors ---------------------------------------------------------------------------------

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
    if (!handler_) {
        default_exception_handler(context);
        return;
    }
    try {
        handler_(*this, context);
    } catch (...) {
        try {
            ExceptionContext failure;
            failure.message = "Unhandled error in exception handler";
            failure.exception = std::current_exception();
            failure.repr = "while handling: " + context.message;
            default_exception_handler(failure);
        } catch (...) {
            log_message(LogLevel::error, "Unhandled error in exception handler");
        }
    }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) noexcept {
    try {
        std::string text =
            context.message.empty() ? "Unhandled exception in event loop" : context.message;
        if (context.exception) {
            text += "\nexception: " + detail::describe_exception(context.exception);
        }
        if (context.task) {
            text += "\ntask: " + context.task->base().repr();
        } else if (context.future) {
            text +=
                context.future->state()->is_task()
                    ? "\nfuture: " + static_cast<detail::TaskBase*>(context.future->state())->repr()
                    : std::string("\nfuture: <Future>");
        }
        if (context.handle && context.handle->state() != nullptr) {
            text += "\nhandle: " + detail::describe_handle(*context.handle->state());
        }
        if (context.socket) text += fmt::format("\nsocket: fd {}", *context.socket);
        if (!context.repr.empty() && !context.task) text += "\nobject: " + context.repr;
        if (context.source && context.source->line() != 0) {
            text += fmt::format("\nsource: {}:{} in {}", context.source->file_name(),
                                context.source->line(), context.source->function_name());
        }
        log_message(LogLevel::error, text);
    } catch (...) {
        log_message(LogLevel::error, "Exception in default exception handler");
    }
}

LoopStats EventLoop::stats() const noexcept {
    LoopStats out;
    out.ready = ready_.size();
    out.timers = timers_.size();
    out.cancelled_timers = cancelled_timers_;
    out.tasks = tasks_.size();
    return out;
}

}  // namespace asyncio
