// Windows' part of the loop's signal API (Lib/asyncio/windows_events.py):
// CPython's ProactorEventLoop has no add_signal_handler, and neither has
// this loop on Windows; only the Runner's Ctrl-C handling is there, through
// SetConsoleCtrlHandler, as CPython's Runner gets it from the C runtime's
// SIGINT emulation.
#include "asyncio/detail/native.hpp"  // winsock2.h, then windows.h

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "asyncio/loop.hpp"
#include "internal.hpp"

namespace asyncio {
namespace detail {

struct SignalState {
    std::shared_ptr<std::function<void()>> runner_sigint;
};

namespace {

constexpr const char* kNoSignals =
    "add_signal_handler() and remove_signal_handler() are not supported on Windows";

/// The thread that ran static initialisation: the main thread (Python's
/// threading.main_thread()), the only one whose Runner handles Ctrl-C.
const DWORD main_thread_id = ::GetCurrentThreadId();

// The console calls its handlers on a thread of its own: this is what that
// thread sees, under `console_mutex`.
std::mutex console_mutex;
EventLoop* console_loop = nullptr;
std::shared_ptr<std::function<void()>> console_on_first;
std::atomic<int> ctrl_c_count{0};

BOOL WINAPI on_console_event(DWORD event) {
    if (event != CTRL_C_EVENT && event != CTRL_BREAK_EVENT) return FALSE;
    std::lock_guard lock(console_mutex);
    if (console_loop == nullptr) return FALSE;
    // The second Ctrl-C: what the console does without us (ExitProcess),
    // as the second SIGINT restores SIG_DFL on POSIX.
    if (ctrl_c_count.fetch_add(1) >= 1) return FALSE;
    try {
        console_loop->call_soon_threadsafe([on_first = console_on_first] { (*on_first)(); });
    } catch (...) {
        return FALSE;  // the loop is closed: let the console end the process
    }
    return TRUE;
}

}  // namespace
}  // namespace detail

detail::SignalState& EventLoop::signal_state() {
    if (signals_ == nullptr) signals_ = new detail::SignalState;
    return *signals_;
}

void EventLoop::set_signal_handler(int, std::shared_ptr<detail::SignalCallback>,
                                   std::source_location) {
    throw NotImplementedError(detail::kNoSignals);
}

bool EventLoop::remove_signal_handler(int) {
    throw NotImplementedError(detail::kNoSignals);
}

void EventLoop::add_signal_watch(detail::LibraryKey, int, std::function<void()>) {
    throw NotImplementedError("signal watches are not supported on Windows");
}

void EventLoop::remove_signal_watch(detail::LibraryKey, int) noexcept {}

bool EventLoop::install_runner_sigint(detail::LibraryKey, std::function<void()> on_first) {
    if (::GetCurrentThreadId() != detail::main_thread_id) return false;
    auto callback = std::make_shared<std::function<void()>>(std::move(on_first));
    std::lock_guard lock(detail::console_mutex);
    if (detail::console_loop != nullptr) return false;
    if (!::SetConsoleCtrlHandler(&detail::on_console_event, TRUE)) return false;
    signal_state().runner_sigint = callback;
    detail::console_loop = this;
    detail::console_on_first = std::move(callback);
    detail::ctrl_c_count.store(0);
    return true;
}

void EventLoop::uninstall_runner_sigint(detail::LibraryKey) noexcept {
    std::lock_guard lock(detail::console_mutex);
    if (detail::console_loop != this) return;
    ::SetConsoleCtrlHandler(&detail::on_console_event, FALSE);
    detail::console_loop = nullptr;
    detail::console_on_first.reset();
    signals_->runner_sigint.reset();
}

void EventLoop::close_signals() noexcept {
    uninstall_runner_sigint(detail::library_key);
    delete std::exchange(signals_, nullptr);
}

}  // namespace asyncio
