// UNIX signals: loop.add_signal_handler and remove_signal_handler
// (Lib/asyncio/unix_events.py, _UnixSelectorEventLoop).
//
// One process-wide C signal handler serves every loop. A loop that handles
// signals takes a slot in a fixed table; its bit in interest[sig] says that
// it wants `sig`. The handler, for each loop that wants the signal, counts
// the delivery in the slot and writes a byte to the slot's pipe, which the
// loop watches like any reader. The handler only reads and updates atomics
// and calls write(2): no lock, no allocation, errno preserved. Everything
// else (taking a slot, installing the C handler) is under a mutex, in the
// threads that add and remove handlers.
//
// Counting, rather than one byte per delivery as CPython's wake-up fd,
// means that no delivery is lost when the pipe is full: the loop calls the
// handler once per delivery that the kernel made. (The kernel itself merges
// a standard signal that arrives while the same one is still pending.)
//
// A backend that counts signals itself (kqueue's EVFILT_SIGNAL) needs no
// slot and no pipe: the loop watches each signal it wants through the
// backend, which reports how many times it arrived. The C handler is still
// installed, as the signal's disposition.
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>

#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "internal.hpp"

namespace asyncio {

namespace detail {

namespace {

constexpr int kSignals = NSIG;  // signal numbers are 1 .. NSIG - 1
constexpr int kSlots = 64;      // loops with signal handlers at one time

static_assert(std::atomic<int>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

/// What the C handler knows of one loop.
struct Slot {
    std::atomic<int> write_fd{-1};
    std::atomic<int> busy{0};  // handlers between reading write_fd and writing to it
    std::array<std::atomic<std::uint32_t>, kSignals> pending{};
};

std::array<Slot, kSlots> slots;
/// Bit s of interest[sig]: slot s wants `sig`.
std::array<std::atomic<std::uint64_t>, kSignals> interest{};

/// Runner's SIGINT: while armed, the second SIGINT interrupts the process.
std::atomic<bool> sigint_armed{false};
std::atomic<int> sigint_count{0};

// Under `registry_mutex`: which slots are taken, and the C handler's state
// for each signal.
std::mutex registry_mutex;
std::array<bool, kSlots> slot_taken{};
struct Disposition {
    int handlers = 0;  // loops with an add_signal_handler handler for it
    int watches = 0;   // loops with a library watch on it
    bool installed = false;
    bool user_handled = false;  // since installed: restore SIG_DFL, as CPython does
    struct sigaction previous {};
};
std::array<Disposition, kSignals> dispositions{};

extern "C" void on_signal(int sig) {
    const int saved_errno = errno;  // the interrupted code may be about to read it
    if (sig == SIGINT && sigint_armed.load() && sigint_count.fetch_add(1) >= 1) {
        // The second Ctrl-C: what the default disposition does, once this
        // handler returns and SIGINT is unblocked.
        sigint_armed.store(false);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigemptyset(&dfl.sa_mask);
        ::sigaction(SIGINT, &dfl, nullptr);
        ::raise(SIGINT);
        errno = saved_errno;
        return;
    }
    std::uint64_t wanted = interest[static_cast<std::size_t>(sig)].load();
    while (wanted != 0) {
        const int index = std::countr_zero(wanted);
        wanted &= wanted - 1;
        const std::uint64_t bit = std::uint64_t{1} << index;
        Slot& slot = slots[static_cast<std::size_t>(index)];
        slot.busy.fetch_add(1);
        // Checked again inside `busy`: release_slot waits for busy to drop
        // to zero after clearing the bit, so a slot reused by another loop
        // never counts a delivery meant for the one before.
        if ((interest[static_cast<std::size_t>(sig)].load() & bit) != 0) {
            slot.pending[static_cast<std::size_t>(sig)].fetch_add(1);
            const int fd = slot.write_fd.load();
            const char byte = static_cast<char>(sig);
            if (fd >= 0) static_cast<void>(!::write(fd, &byte, 1));  // full: already awake
        }
        slot.busy.fetch_sub(1);
    }
    errno = saved_errno;
}

bool valid_signal(int sig) noexcept {
    if (sig < 1 || sig >= kSignals) return false;
    // signal.valid_signals(): what sigfillset fills (glibc keeps two
    // real-time signals for itself).
    sigset_t all;
    ::sigfillset(&all);
    return ::sigismember(&all, sig) == 1;
}

void check_signal(int sig) {
    if (!valid_signal(sig))
        throw std::invalid_argument(fmt::format("invalid signal number {}", sig));
}

/// Installs on_signal for `sig`; under registry_mutex. The first time, keeps
/// the disposition to restore.
void install(int sig) {
    Disposition& d = dispositions[static_cast<std::size_t>(sig)];
    struct sigaction action {};
    action.sa_handler = &on_signal;
    action.sa_flags = SA_RESTART;  // CPython's siginterrupt(sig, False)
    ::sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    if (::sigaction(sig, &action, &previous) != 0) {
        const int error = errno;
        if (error == EINVAL) throw RuntimeError(fmt::format("sig {} cannot be caught", sig));
        throw os_error(error, "sigaction");
    }
    if (!d.installed) {
        d.installed = true;
        d.previous = previous;
    }
}

/// After the last handler or watch of `sig` is gone; under registry_mutex.
void uninstall(int sig) noexcept {
    Disposition& d = dispositions[static_cast<std::size_t>(sig)];
    if (d.handlers != 0 || d.watches != 0 || !d.installed) return;
    struct sigaction restore = d.previous;
    if (d.user_handled) {
        restore = {};
        restore.sa_handler = SIG_DFL;
        ::sigemptyset(&restore.sa_mask);
    }
    if (::sigaction(sig, &restore, nullptr) != 0)
        log(LogLevel::warning, "restoring the disposition of signal {} failed", sig);
    d = Disposition{};
}

/// Whether this is the process's main thread (Python's threading.main_thread()).
bool in_main_thread() noexcept {
#if defined(__linux__)
    return ::getpid() == static_cast<pid_t>(::syscall(SYS_gettid));
#elif defined(__APPLE__)
    return ::pthread_main_np() != 0;
#else
    return false;  // unknown: leave SIGINT alone
#endif
}

/// The C handler's own pipe for a loop: guarded as a transport's fd is, so
/// that remove_reader cannot take the loop's wake-up away.
class SignalPipe final : public FdOwner {
  public:
    bool fd_in_use() const noexcept override { return true; }
    std::string describe_owner() const override { return "<signal wake-up pipe>"; }
};

}  // namespace

struct SignalState {
    struct Entry {
        std::shared_ptr<SignalCallback> handler;
        std::source_location where;
        std::shared_ptr<std::function<void()>> watch;
    };
    int slot = -1;
    int read_fd = -1;
    int write_fd = -1;
    SignalPipe pipe_owner;
    std::array<Entry, kSignals> entries{};
    const SignalCallback* runner_sigint = nullptr;

    std::uint64_t bit() const noexcept { return std::uint64_t{1} << slot; }
};

}  // namespace detail

// -- the loop's side ----------------------------------------------------------------

detail::SignalState& EventLoop::signal_state() {
    if (signals_ != nullptr) return *signals_;
    auto state = std::make_unique<detail::SignalState>();
    // kqueue counts; the C handler stays the disposition (SIG_DFL kills, SIG_IGN hides SIGCHLD).
    if (backend_->counts_signals()) {
        signals_ = state.release();
        return *signals_;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) detail::throw_errno("pipe2");
    state->read_fd = fds[0];
    state->write_fd = fds[1];
    const auto close_pipe = [&] {
        ::close(fds[0]);
        ::close(fds[1]);
    };
    {
        std::lock_guard lock(detail::registry_mutex);
        for (int i = 0; i < detail::kSlots; ++i) {
            if (!detail::slot_taken[static_cast<std::size_t>(i)]) {
                detail::slot_taken[static_cast<std::size_t>(i)] = true;
                state->slot = i;
                break;
            }
        }
    }
    if (state->slot < 0) {
        close_pipe();
        throw RuntimeError(fmt::format(
            "add_signal_handler: more than {} event loops handle signals", detail::kSlots));
    }
    detail::Slot& slot = detail::slots[static_cast<std::size_t>(state->slot)];
    for (auto& count : slot.pending)
        count.store(0);
    slot.write_fd.store(state->write_fd);
    try {
        add_watch(state->read_fd, Watching::reads,
                  detail::HandleState::create(
                      *this, [this] { dispatch_signals(); }, detail::HandleKind::call_soon,
                      std::source_location::current()));
    } catch (...) {
        slot.write_fd.store(-1);
        while (slot.busy.load() != 0)
            std::this_thread::yield();
        std::lock_guard lock(detail::registry_mutex);
        detail::slot_taken[static_cast<std::size_t>(state->slot)] = false;
        close_pipe();
        throw;
    }
    fd_owners_[state->read_fd] = &state->pipe_owner;
    signals_ = state.release();
    return *signals_;
}

void EventLoop::set_signal_handler(int sig, std::shared_ptr<detail::SignalCallback> fn,
                                   std::source_location where) {
    detail::check_signal(sig);
    check_closed();
    if (debug_) check_thread();
    detail::SignalState& state = signal_state();
    auto& entry = state.entries[static_cast<std::size_t>(sig)];
    {
        std::lock_guard lock(detail::registry_mutex);
        detail::install(sig);  // throws before anything changed
        auto& disposition = detail::dispositions[static_cast<std::size_t>(sig)];
        if (!entry.handler) ++disposition.handlers;
        disposition.user_handled = true;
        if (sig == SIGINT) detail::sigint_armed.store(false);  // a handler replaced the Runner's
    }
    entry.handler = std::move(fn);
    entry.where = where;
    try {
        update_signal_interest(sig);
    } catch (...) {
        remove_signal_handler(sig);
        throw;
    }
}

bool EventLoop::remove_signal_handler(int sig) {
    detail::check_signal(sig);
    if (debug_) check_thread();
    if (signals_ == nullptr) return false;
    auto& entry = signals_->entries[static_cast<std::size_t>(sig)];
    if (!entry.handler) return false;
    entry.handler.reset();
    update_signal_interest(sig);
    std::lock_guard lock(detail::registry_mutex);
    if (sig == SIGINT) detail::sigint_armed.store(false);
    auto& disposition = detail::dispositions[static_cast<std::size_t>(sig)];
    --disposition.handlers;
    detail::uninstall(sig);
    return true;
}

void EventLoop::add_signal_watch(detail::LibraryKey, int sig, std::function<void()> fn) {
    detail::check_signal(sig);
    check_closed();
    detail::SignalState& state = signal_state();
    auto& entry = state.entries[static_cast<std::size_t>(sig)];
    if (!entry.watch) {
        std::lock_guard lock(detail::registry_mutex);
        auto& disposition = detail::dispositions[static_cast<std::size_t>(sig)];
        // A handler already there (this loop's or another's) is ours: keep it.
        if (!disposition.installed) detail::install(sig);
        ++disposition.watches;
    }
    entry.watch = std::make_shared<std::function<void()>>(std::move(fn));
    try {
        update_signal_interest(sig);
    } catch (...) {
        remove_signal_watch(detail::library_key, sig);
        throw;
    }
}

void EventLoop::remove_signal_watch(detail::LibraryKey, int sig) noexcept {
    if (signals_ == nullptr || !detail::valid_signal(sig)) return;
    auto& entry = signals_->entries[static_cast<std::size_t>(sig)];
    if (!entry.watch) return;
    entry.watch.reset();
    update_signal_interest(sig);
    std::lock_guard lock(detail::registry_mutex);
    --detail::dispositions[static_cast<std::size_t>(sig)].watches;
    detail::uninstall(sig);
}

bool EventLoop::install_runner_sigint(detail::LibraryKey, std::function<void()> on_first) {
    // CPython: only in the main thread, and only if SIGINT is still
    // default_int_handler (C++: SIG_DFL), so a program's own choice stands.
    if (!detail::in_main_thread()) return false;
    struct sigaction current {};
    if (::sigaction(SIGINT, nullptr, &current) != 0) return false;
    if ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != SIG_DFL) return false;
    auto callback =
        std::make_shared<detail::SignalCallbackFor<std::function<void()>>>(std::move(on_first));
    const detail::SignalCallback* installed = callback.get();
    set_signal_handler(SIGINT, std::move(callback), std::source_location::current());
    signals_->runner_sigint = installed;
    detail::sigint_count.store(0);
    detail::sigint_armed.store(true);
    return true;
}

void EventLoop::uninstall_runner_sigint(detail::LibraryKey) noexcept {
    if (signals_ == nullptr || signals_->runner_sigint == nullptr) return;
    const bool still_ours = signals_->entries[SIGINT].handler.get() == signals_->runner_sigint;
    signals_->runner_sigint = nullptr;
    if (!still_ours) return;
    detail::sigint_armed.store(false);
    try {
        remove_signal_handler(SIGINT);  // back to SIG_DFL
    } catch (...) {
        log_message(LogLevel::error, "Runner: restoring SIGINT failed");
    }
}

void EventLoop::update_signal_interest(int sig) {
    detail::SignalState& state = *signals_;
    const auto& entry = state.entries[static_cast<std::size_t>(sig)];
    const bool wanted = entry.handler || entry.watch;
    if (state.slot >= 0) {
        auto& wanting = detail::interest[static_cast<std::size_t>(sig)];
        if (wanted) {
            wanting.fetch_or(state.bit());
        } else {
            wanting.fetch_and(~state.bit());
        }
    } else if (!wanted) {
        remove_watch(sig, Watching::signals);
    } else if (!signal_watches_.contains(sig)) {
        add_watch(sig, Watching::signals,
                  detail::HandleState::create(
                      *this, [this, sig] { deliver_signal(sig); }, detail::HandleKind::call_soon,
                      std::source_location::current()));
    }
}

void EventLoop::dispatch_signals() noexcept {
    detail::SignalState& state = *signals_;
    char buffer[256];
    while (::read(state.read_fd, buffer, sizeof buffer) > 0) {
    }
    detail::Slot& slot = detail::slots[static_cast<std::size_t>(state.slot)];
    for (int sig = 1; sig < detail::kSignals; ++sig) {
        std::uint32_t count = slot.pending[static_cast<std::size_t>(sig)].exchange(0);
        for (; count != 0; --count)
            deliver_signal(sig);
    }
}

void EventLoop::deliver_signal(int sig) noexcept {
    // Looked up for each delivery: a handler may remove or replace itself.
    if (signals_ == nullptr) return;  // a watch closed the loop (!)
    auto& entry = signals_->entries[static_cast<std::size_t>(sig)];
    if (std::shared_ptr<std::function<void()>> watch = entry.watch) {
        try {
            (*watch)();
        } catch (...) {
            ExceptionContext context;
            context.message = fmt::format("Exception in the watch of signal {}", sig);
            context.exception = std::current_exception();
            call_exception_handler(context);
        }
    }
    if (entry.handler) {
        try {
            call_soon([handler = entry.handler] { (*handler)(); }, entry.where);
        } catch (...) {
            ExceptionContext context;
            context.message = fmt::format("Cannot schedule the handler of signal {}", sig);
            context.exception = std::current_exception();
            call_exception_handler(context);
        }
    }
}

void EventLoop::close_signals() noexcept {
    if (signals_ == nullptr) return;
    for (int sig = 1; sig < detail::kSignals; ++sig) {
        if (signals_->entries[static_cast<std::size_t>(sig)].handler) {
            try {
                remove_signal_handler(sig);
            } catch (...) {
            }
        }
        remove_signal_watch(detail::library_key, sig);
    }
    std::unique_ptr<detail::SignalState> state(std::exchange(signals_, nullptr));
    if (state->slot < 0) return;  // the backend counted them: no slot, no pipe
    fd_owners_.erase(state->read_fd);
    remove_watch(state->read_fd, Watching::reads);
    detail::Slot& slot = detail::slots[static_cast<std::size_t>(state->slot)];
    slot.write_fd.store(-1);
    // A handler that read the old descriptor writes to it before the
    // number can be reused.
    while (slot.busy.load() != 0)
        std::this_thread::yield();
    {
        std::lock_guard lock(detail::registry_mutex);
        detail::slot_taken[static_cast<std::size_t>(state->slot)] = false;
    }
    ::close(state->read_fd);
    ::close(state->write_fd);
}

}  // namespace asyncio
