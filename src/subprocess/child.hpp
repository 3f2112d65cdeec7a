// A started child as the OS knows it: how its exit is watched and its
// status read, and how it is signalled (unix_events' child watchers;
// windows_events' wait on the process handle and Popen's terminate).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "spawn.hpp"

namespace asyncio {
class EventLoop;
}

namespace asyncio::detail {

class ChildProcess {
  public:
    explicit ChildProcess(const SpawnedChild& spawned) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;
    ~ChildProcess();

    int pid() const noexcept { return pid_; }

    /// Calls `on_exit` in `loop`'s thread once the child may have exited
    /// (exit_status() tells), until stop_watching().
    void watch(EventLoop& loop, std::function<void()> on_exit);
    void stop_watching() noexcept;
    /// The child's returncode once it exited (it is reaped then): its exit
    /// code, or on POSIX minus the signal that ended it; nullopt while it runs.
    std::optional<int> exit_status();
    /// Popen.send_signal. On Windows, as CPython: SIGTERM (and SIGKILL)
    /// terminate the child, CTRL_C_EVENT and CTRL_BREAK_EVENT go to its
    /// console process group, any other signal is std::invalid_argument.
    void send_signal(int sig);
    /// Ends a child that is still running (close() of its transport); no
    /// error if it is already gone.
    void kill_quietly() noexcept;
    /// Its transport lets go before it exited: it must not stay a zombie.
    void release() noexcept;

    /// The signals terminate() and kill() send.
    static const int terminate_signal;
    static const int kill_signal;

  private:
    int pid_;
    EventLoop* loop_ = nullptr;
    std::function<void()> on_exit_;
#ifdef _WIN32
    void* process_ = nullptr;  // the process HANDLE
    void* wait_ = nullptr;     // RegisterWaitForSingleObject's
    void* context_ = nullptr;  // what the wait's callback reads
    /// Shared with the wait's callback: false once the watch stopped, so a
    /// wake-up already on its way to the loop does nothing.
    std::shared_ptr<bool> watching_;
    std::optional<int> returncode_;
#else
    friend class SigchldChildren;
    /// CPython's _PidfdChildWatcher, on the loop's backend: a pidfd where
    /// there are pidfds, the pid itself with kqueue. False if it has neither.
    bool watch_through_backend();

    int pidfd_ = -1;
    bool process_watched_ = false;  // by the loop's backend
    bool sigchld_watched_ = false;  // by SigchldChildren, where the backend cannot
#endif
};

}  // namespace asyncio::detail
