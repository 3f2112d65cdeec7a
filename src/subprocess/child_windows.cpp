// ChildProcess on Windows (windows_events' _WindowsSubprocessTransport):
// the exit is watched by a wait registered on the process handle, whose
// thread-pool callback wakes the loop; the status is the exit code.
#include "asyncio/detail/native.hpp"  // winsock2.h, then windows.h

#include <csignal>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "../internal.hpp"
#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "child.hpp"

namespace asyncio::detail {

// Windows has no SIGKILL; CPython's Popen.kill() is terminate() there.
const int ChildProcess::terminate_signal = SIGTERM;
const int ChildProcess::kill_signal = SIGTERM;

namespace {

/// What the wait's callback needs; it outlives the callback (stop_watching
/// waits for a running one) but not the loop thread's look at `watching`.
struct ExitWatch {
    EventLoop* loop;
    std::shared_ptr<bool> watching;
    std::function<void()>* on_exit;
};

void CALLBACK on_process_signalled(void* context, BOOLEAN) {
    auto* watch = static_cast<ExitWatch*>(context);
    try {
        watch->loop->call_soon_threadsafe([watching = watch->watching, on_exit = watch->on_exit] {
            if (*watching) (*on_exit)();
        });
    } catch (...) {
        // The loop closed: its transports let go of their children.
    }
}

}  // namespace

ChildProcess::ChildProcess(const SpawnedChild& spawned) noexcept
    : pid_(spawned.pid), process_(spawned.process) {}

ChildProcess::~ChildProcess() {
    stop_watching();
    if (process_ != nullptr) ::CloseHandle(process_);
}

void ChildProcess::watch(EventLoop& loop, std::function<void()> on_exit) {
    loop_ = &loop;
    on_exit_ = std::move(on_exit);
    watching_ = std::make_shared<bool>(true);
    auto* context = new ExitWatch{&loop, watching_, &on_exit_};
    HANDLE wait = nullptr;
    if (!::RegisterWaitForSingleObject(&wait, process_, &on_process_signalled, context, INFINITE,
                                       WT_EXECUTEONLYONCE)) {
        const int error = errno_from_windows(::GetLastError());
        delete context;
        throw os_error(error, "RegisterWaitForSingleObject");
    }
    wait_ = wait;
    context_ = context;
}

void ChildProcess::stop_watching() noexcept {
    if (wait_ == nullptr) return;
    *watching_ = false;
    // INVALID_HANDLE_VALUE: returns once a callback that started has ended.
    ::UnregisterWaitEx(wait_, INVALID_HANDLE_VALUE);
    wait_ = nullptr;
    delete static_cast<ExitWatch*>(context_);
    context_ = nullptr;
}

std::optional<int> ChildProcess::exit_status() {
    if (returncode_) return returncode_;
    if (::WaitForSingleObject(process_, 0) != WAIT_OBJECT_0) return std::nullopt;
    DWORD code = 0;
    if (!::GetExitCodeProcess(process_, &code)) {
        log(LogLevel::warning, "cannot read the exit code of child process pid {}", pid_);
        code = 255;
    }
    returncode_ = static_cast<int>(code);
    return returncode_;
}

void ChildProcess::send_signal(int sig) {
    if (sig == SIGTERM) {
        // Popen.terminate: an access error from a child that already
        // exited is no error.
        if (!::TerminateProcess(process_, 1)) {
            const DWORD error = ::GetLastError();
            if (error == ERROR_ACCESS_DENIED && ::WaitForSingleObject(process_, 0) == WAIT_OBJECT_0)
                return;
            throw os_error(errno_from_windows(error), fmt::format("TerminateProcess({})", pid_));
        }
        return;
    }
    if (sig == CTRL_C_EVENT || sig == CTRL_BREAK_EVENT) {
        if (!::GenerateConsoleCtrlEvent(static_cast<DWORD>(sig), static_cast<DWORD>(pid_))) {
            throw os_error(errno_from_windows(::GetLastError()),
                           fmt::format("GenerateConsoleCtrlEvent({}, {})", sig, pid_));
        }
        return;
    }
    throw std::invalid_argument(fmt::format("Unsupported signal: {}", sig));
}

void ChildProcess::kill_quietly() noexcept {
    ::TerminateProcess(process_, 1);
}

void ChildProcess::release() noexcept {
    // No zombies on Windows: closing the handle (the destructor) is all.
    stop_watching();
}

}  // namespace asyncio::detail
