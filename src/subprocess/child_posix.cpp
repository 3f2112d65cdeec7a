// ChildProcess on POSIX: the exit is watched by the loop's backend, through
// a pidfd where the kernel gives one or by pid with kqueue (CPython's
// PidfdChildWatcher), else through SIGCHLD (its SafeChildWatcher); the
// child is reaped with waitpid.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "../internal.hpp"
#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "child.hpp"

namespace asyncio::detail {

const int ChildProcess::terminate_signal = SIGTERM;
const int ChildProcess::kill_signal = SIGKILL;

namespace {

/// A descriptor that becomes readable once `pid` exits (Linux 5.3); -1 where
/// the OS, the kernel or a seccomp filter has none.
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/// Whether ASYNCIO_CHILD_WATCHER=sigchld asks for the SIGCHLD watcher, which
/// otherwise serves only where the loop's backend cannot watch a child (no
/// pidfds, and not kqueue).
bool sigchld_forced() {
    static const bool forced = [] {
        const char* chosen = std::getenv("ASYNCIO_CHILD_WATCHER");
        return chosen != nullptr && std::string_view(chosen) == "sigchld";
    }();
    return forced;
}

}  // namespace

/// The SIGCHLD watcher: one watch per loop that has such children, which on
/// each SIGCHLD tells every child of that loop to look at its status.
/// Several loops in several threads may each have their own.
class SigchldChildren {
  public:
    static void add(EventLoop& loop, ChildProcess& child);
    static void remove(EventLoop& loop, ChildProcess& child) noexcept;

  private:
    static void poll(EventLoop& loop);

    static inline std::mutex mutex_;
    static inline std::unordered_map<EventLoop*, std::vector<ChildProcess*>> children_;
};

ChildProcess::ChildProcess(const SpawnedChild& spawned) noexcept : pid_(spawned.pid) {}

ChildProcess::~ChildProcess() {
    stop_watching();
}

void ChildProcess::watch(EventLoop& loop, std::function<void()> on_exit) {
    loop_ = &loop;
    on_exit_ = std::move(on_exit);
    if (!sigchld_forced() && watch_through_backend()) return;
    SigchldChildren::add(loop, *this);
    sigchld_watched_ = true;
    // A child that exited before the watch was there sent its SIGCHLD to
    // nobody.
    on_exit_();
}

bool ChildProcess::watch_through_backend() {
    pidfd_ = open_pidfd(pid_);
    try {
        loop_->add_process_watch(library_key, pid_, pidfd_, [this] { on_exit_(); });
    } catch (const std::system_error&) {
        if (pidfd_ >= 0) ::close(pidfd_);
        pidfd_ = -1;
        return false;
    }
    process_watched_ = true;
    return true;
}

void ChildProcess::stop_watching() noexcept {
    if (sigchld_watched_) {
        SigchldChildren::remove(*loop_, *this);
        sigchld_watched_ = false;
    }
    if (process_watched_) {
        loop_->remove_process_watch(library_key, pid_);
        process_watched_ = false;
    }
    if (pidfd_ < 0) return;
    ::close(pidfd_);
    pidfd_ = -1;
}

std::optional<int> ChildProcess::exit_status() {
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped == 0) return std::nullopt;  // not yet: the watch stays
    if (reaped < 0) {
        // Reaped elsewhere (SIGCHLD ignored, a waitpid(-1) in the program).
        log(LogLevel::warning,
            "child process pid {} exit status already read: will report returncode 255", pid_);
        return 255;
    }
    return returncode_of(status);
}

void ChildProcess::send_signal(int sig) {
    if (::kill(pid_, sig) != 0) throw_errno(fmt::format("kill({}, {})", pid_, sig));
}

void ChildProcess::kill_quietly() noexcept {
    ::kill(pid_, SIGKILL);  // not reaped yet, so the pid is still the child's
}

void ChildProcess::release() noexcept {
    stop_watching();
    // Waits on a thread of its own: a child whose loop closed before it
    // exited must not stay a zombie.
    try {
        std::thread([pid = pid_] {
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }).detach();
    } catch (const std::system_error&) {
        log(LogLevel::warning, "cannot start a thread to reap child process {}", pid_);
    }
}

void SigchldChildren::add(EventLoop& loop, ChildProcess& child) {
    bool first = false;
    {
        std::lock_guard lock(mutex_);
        auto& children = children_[&loop];
        first = children.empty();
        children.push_back(&child);
    }
    if (first) loop.add_signal_watch(library_key, SIGCHLD, [&loop] { poll(loop); });
}

void SigchldChildren::remove(EventLoop& loop, ChildProcess& child) noexcept {
    bool last = false;
    {
        std::lock_guard lock(mutex_);
        auto found = children_.find(&loop);
        if (found == children_.end()) return;
        std::erase(found->second, &child);
        last = found->second.empty();
        if (last) children_.erase(found);
    }
    if (last) loop.remove_signal_watch(library_key, SIGCHLD);
}

void SigchldChildren::poll(EventLoop& loop) {
    std::vector<ChildProcess*> children;
    {
        std::lock_guard lock(mutex_);
        auto found = children_.find(&loop);
        if (found == children_.end()) return;
        children = found->second;
    }
    // A child that exited removes itself (stop_watching), not others.
    for (ChildProcess* child : children)
        child->on_exit_();
}

}  // namespace asyncio::detail
