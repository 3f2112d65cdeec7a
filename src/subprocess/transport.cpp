// base_subprocess.py and unix_events' _UnixSubprocessTransport: a child
// process, the pipe transports to its stdio, and the watch on its exit.
#include "transport.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "../internal.hpp"
#include "../transports/base.hpp"
#include "asyncio/log.hpp"
#include "asyncio/outcome.hpp"
#include "asyncio/subprocess.hpp"
#include "spawn.hpp"

namespace asyncio::detail {
namespace {

/// A descriptor that becomes readable once `pid` exits (Linux 5.3); -1 where
/// the kernel or a seccomp filter refuses it.
int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/// Waits for `pid` on a thread of its own: a child whose loop closed before
/// it exited must not stay a zombie.
void reap_in_background(pid_t pid) noexcept {
    try {
        std::thread([pid] {
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }).detach();
    } catch (const std::system_error&) {
        log(LogLevel::warning, "cannot start a thread to reap child process {}", pid);
    }
}

/// How children's exits are watched: CPython's _PidfdChildWatcher, or the
/// SIGCHLD handler that came before it, where pidfds are refused.
enum class ChildWatcher { pidfd, sigchld };

/// The watcher this process uses: ASYNCIO_CHILD_WATCHER (pidfd, sigchld) if
/// set, else pidfd if the kernel (and any seccomp filter) allows it.
ChildWatcher child_watcher() {
    static const ChildWatcher chosen = [] {
        if (const char* forced = std::getenv("ASYNCIO_CHILD_WATCHER")) {
            if (std::string_view(forced) == "sigchld") return ChildWatcher::sigchld;
            if (std::string_view(forced) == "pidfd") return ChildWatcher::pidfd;
        }
        const int probe = open_pidfd(::getpid());
        if (probe < 0) return ChildWatcher::sigchld;
        ::close(probe);
        return ChildWatcher::pidfd;
    }();
    return chosen;
}

class UnixSubprocessTransport;

/// The SIGCHLD watcher: one watch per loop that has such children, which on
/// each SIGCHLD polls every child of that loop with waitpid(WNOHANG).
/// Several loops in several threads may each have their own.
class SigchldChildren {
  public:
    static void add(EventLoop& loop, UnixSubprocessTransport& child);
    static void remove(EventLoop& loop, UnixSubprocessTransport& child) noexcept;

  private:
    static void poll(EventLoop& loop);

    static inline std::mutex mutex_;
    static inline std::unordered_map<EventLoop*, std::vector<UnixSubprocessTransport*>> children_;
};

/// base_subprocess.WriteSubprocessPipeProto and ReadSubprocessPipeProto: the
/// protocol of one pipe transport, reporting to the subprocess transport.
class SubprocessPipeProtocol final : public Protocol {
  public:
    SubprocessPipeProtocol(UnixSubprocessTransport& process, int fd) noexcept
        : process_(&process), fd_(fd) {}

    void connection_made(BaseTransport& transport) override { pipe = transport.shared_from_this(); }
    void connection_lost(std::exception_ptr error) override;
    void pause_writing() override;
    void resume_writing() override;
    void data_received(std::string_view data) override;
    bool eof_received() override { return false; }

    std::shared_ptr<BaseTransport> pipe;  // set by connection_made
    bool disconnected = false;

  private:
    UnixSubprocessTransport* process_;  // outlives the pipes: see self_ below
    int fd_;
};

class UnixSubprocessTransport final : public SubprocessTransport, public LoopResource {
  public:
    UnixSubprocessTransport(EventLoop& loop, std::shared_ptr<BaseProtocol> protocol,
                            const SpawnedChild& child)
        : loop_(&loop), protocol_(std::move(protocol)), pid_(child.pid) {
        for (int fd = 0; fd < 3; ++fd)
            wants_pipe_[fd] = static_cast<bool>(child.pipes[fd]);
    }

    /// Makes the transport live until connection_lost (or the loop closes)
    /// and starts watching for the child's exit.
    void start(std::shared_ptr<UnixSubprocessTransport> self) {
        self_ = std::move(self);
        loop_->register_resource(*this);
        if (child_watcher() == ChildWatcher::pidfd) pidfd_ = open_pidfd(pid_);
        if (pidfd_ >= 0) {
            loop_->add_reader(pidfd_, [this] { on_child_exit(); });
            return;
        }
        SigchldChildren::add(*loop_, *this);
        sigchld_watched_ = true;
        // A child that exited before the watch was there sent its SIGCHLD
        // to nobody.
        on_child_exit();
    }

    /// The SIGCHLD watcher's poll: whether the child exited (and was reaped).
    bool poll_exit() {
        on_child_exit();
        return returncode_.has_value();
    }

    /// A pipe transport for the child's `fd` is being opened.
    std::shared_ptr<SubprocessPipeProtocol> make_pipe_protocol(int fd) {
        pipes_[fd] = std::make_shared<SubprocessPipeProtocol>(*this, fd);
        return pipes_[fd];
    }

    /// Every pipe is connected: connection_made, then what the pipes and the
    /// child reported meanwhile, then `made` completes.
    void pipes_connected(Future<> made) {
        pipes_connected_ = true;
        loop_->call_soon([this, keep = self_] { subprocess_protocol().connection_made(*this); });
        for (std::function<void()>& call : *pending_calls_)
            loop_->call_soon(std::move(call));
        pending_calls_.reset();
        loop_->call_soon([made]() mutable {
            if (!made.done()) made.set_result();
        });
    }

    // BaseTransport
    void close() override;
    bool is_closing() const override { return closed_; }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
        if (dynamic_cast<SubprocessProtocol*>(protocol.get()) == nullptr)
            throw std::invalid_argument("a subprocess transport needs a SubprocessProtocol");
        protocol_ = std::move(protocol);
    }
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
    std::any get_extra_info(std::string_view name) const override {
        if (name == "subprocess") return static_cast<int>(pid_);
        return {};
    }

    // SubprocessTransport
    int get_pid() const override { return pid_; }
    std::optional<int> get_returncode() const override { return returncode_; }
    BaseTransport* get_pipe_transport(int fd) const override {
        if (fd < 0 || fd > 2 || !pipes_[fd]) return nullptr;
        return pipes_[fd]->pipe.get();
    }
    void send_signal(int sig) override;
    void terminate() override { send_signal(SIGTERM); }
    void kill() override { send_signal(SIGKILL); }

    // LoopResource
    void loop_closing() noexcept override;

    Coro<int> wait();

    // From the pipe protocols.
    void pipe_data_received(int fd, std::string_view data) {
        call([this, fd, data = std::string(data)] {
            subprocess_protocol().pipe_data_received(fd, data);
        });
    }
    void pipe_connection_lost(int fd, std::exception_ptr error) {
        call([this, fd, error] { subprocess_protocol().pipe_connection_lost(fd, error); });
        try_finish();
    }
    void pipe_pause_writing() {
        if (protocol_) protocol_->pause_writing();
    }
    void pipe_resume_writing() {
        if (protocol_) protocol_->resume_writing();
    }

  private:
    SubprocessProtocol& subprocess_protocol() const {
        return static_cast<SubprocessProtocol&>(*protocol_);
    }

    /// base_subprocess._call: protocol calls wait until connection_made ran.
    void call(std::function<void()> fn) {
        // The callback holds the transport: it may run after connection_lost.
        auto held = [keep = self_, fn = std::move(fn)] {
            if (keep && keep->protocol_) fn();
        };
        if (pending_calls_) {
            pending_calls_->push_back(std::move(held));
        } else {
            loop_->call_soon(std::move(held));
        }
    }

    void on_child_exit();
    void process_exited(int returncode);
    void try_finish();
    void call_connection_lost();
    void stop_watching() noexcept;

  public:
    /// Lets go of everything without calling the protocol: the loop is
    /// closing, or the start failed after the child was reaped.
    void abandon() noexcept;

  private:
    EventLoop* loop_;
    std::shared_ptr<BaseProtocol> protocol_;
    pid_t pid_;
    int pidfd_ = -1;
    bool sigchld_watched_ = false;  // by SigchldChildren, where pidfds are refused
    std::optional<int> returncode_;
    /// The pipes the child was given (CPython's _pipes), by its fd; null
    /// until the pipe's transport is being opened.
    std::array<std::shared_ptr<SubprocessPipeProtocol>, 3> pipes_;
    std::array<bool, 3> wants_pipe_{};
    std::optional<std::vector<std::function<void()>>> pending_calls_{std::in_place};
    std::vector<Future<int>> exit_waiters_;
    bool pipes_connected_ = false;
    bool finished_ = false;  ///< connection_lost is scheduled
    bool lost_ = false;      ///< connection_lost ran (CPython's _proc is None)
    bool closed_ = false;
    /// Alive until connection_lost ran or the loop closed; the pipe
    /// protocols and the exit watch refer to it without owning it.
    std::shared_ptr<UnixSubprocessTransport> self_;
};

void SubprocessPipeProtocol::connection_lost(std::exception_ptr error) {
    disconnected = true;
    process_->pipe_connection_lost(fd_, std::move(error));
}
void SubprocessPipeProtocol::pause_writing() {
    process_->pipe_pause_writing();
}
void SubprocessPipeProtocol::resume_writing() {
    process_->pipe_resume_writing();
}
void SubprocessPipeProtocol::data_received(std::string_view data) {
    process_->pipe_data_received(fd_, data);
}

void UnixSubprocessTransport::close() {
    if (closed_) return;
    closed_ = true;
    for (const auto& pipe : pipes_) {
        if (pipe && pipe->pipe) pipe->pipe->close();
    }
    // CPython 3.13 kills a child still running when its transport closes.
    if (!returncode_ && !finished_) {
        if (loop_->get_debug())
            log(LogLevel::warning, "Close running child process: kill {}", pid_);
        ::kill(pid_, SIGKILL);  // not reaped yet, so the pid is still the child's
    }
}

void UnixSubprocessTransport::send_signal(int sig) {
    if (lost_) {
        throw std::system_error(std::make_error_code(std::errc::no_such_process),
                                "ProcessLookupError");
    }
    if (returncode_) return;  // Popen.send_signal: nothing for a child known to have exited
    if (::kill(pid_, sig) != 0) throw_errno(fmt::format("kill({}, {})", pid_, sig));
}

void UnixSubprocessTransport::on_child_exit() {
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped == 0) return;  // not yet: the pidfd stays watched
    int returncode = 0;
    if (reaped < 0) {
        // Reaped elsewhere (SIGCHLD ignored, a waitpid(-1) in the program).
        log(LogLevel::warning,
            "child process pid {} exit status already read: will report returncode 255", pid_);
        returncode = 255;
    } else {
        returncode = returncode_of(status);
    }
    stop_watching();
    process_exited(returncode);
}

void UnixSubprocessTransport::stop_watching() noexcept {
    if (sigchld_watched_) {
        SigchldChildren::remove(*loop_, *this);
        sigchld_watched_ = false;
    }
    if (pidfd_ < 0) return;
    loop_->remove_reader(pidfd_);
    ::close(pidfd_);
    pidfd_ = -1;
}

void SigchldChildren::add(EventLoop& loop, UnixSubprocessTransport& child) {
    bool first = false;
    {
        std::lock_guard lock(mutex_);
        auto& children = children_[&loop];
        first = children.empty();
        children.push_back(&child);
    }
    if (first) loop.add_signal_watch(library_key, SIGCHLD, [&loop] { poll(loop); });
}

void SigchldChildren::remove(EventLoop& loop, UnixSubprocessTransport& child) noexcept {
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
    std::vector<UnixSubprocessTransport*> children;
    {
        std::lock_guard lock(mutex_);
        auto found = children_.find(&loop);
        if (found == children_.end()) return;
        children = found->second;
    }
    // A child that exited removes itself (stop_watching), not others.
    for (UnixSubprocessTransport* child : children)
        child->poll_exit();
}

void UnixSubprocessTransport::process_exited(int returncode) {
    returncode_ = returncode;
    call([this] { subprocess_protocol().process_exited(); });
    try_finish();
}

void UnixSubprocessTransport::try_finish() {
    if (finished_ || !returncode_) return;
    if (!pipes_connected_) {
        // The start failed or was cancelled half-way: pipes that never
        // connected will never disconnect, so wait() must not wait for them.
        for (Future<int>& waiter : exit_waiters_) {
            if (!waiter.done()) waiter.set_result(*returncode_);
        }
    }
    for (int fd = 0; fd < 3; ++fd) {
        if (wants_pipe_[fd] && (!pipes_[fd] || !pipes_[fd]->disconnected)) return;
    }
    finished_ = true;
    call([this] { call_connection_lost(); });
}

void UnixSubprocessTransport::call_connection_lost() {
    std::exception_ptr failure;
    try {
        protocol_->connection_lost(nullptr);
    } catch (...) {
        failure = std::current_exception();
    }
    for (Future<int>& waiter : exit_waiters_) {
        if (!waiter.done()) waiter.set_result(*returncode_);
    }
    exit_waiters_.clear();
    lost_ = true;
    protocol_.reset();
    unregister_resource();
    std::shared_ptr<UnixSubprocessTransport> last = std::move(self_);
    // The call that runs this holds the transport too (see call()).
    if (failure) std::rethrow_exception(failure);
}

void UnixSubprocessTransport::loop_closing() noexcept {
    abandon();
}

void UnixSubprocessTransport::abandon() noexcept {
    stop_watching();
    if (!returncode_) reap_in_background(pid_);  // never a zombie
    finished_ = true;
    lost_ = true;
    protocol_.reset();
    pipes_ = {};
    pending_calls_.reset();  // they hold the transport
    exit_waiters_.clear();
    unregister_resource();
    std::shared_ptr<UnixSubprocessTransport> last = std::move(self_);  // may free *this
}

Coro<int> UnixSubprocessTransport::wait() {
    if (returncode_) co_return *returncode_;
    Future<int> waiter = loop_->create_future<int>();
    exit_waiters_.push_back(waiter);
    co_return co_await waiter;
}

/// Connects the pipe transports for the child's descriptors that are pipes.
Coro<void> connect_pipes(EventLoop& loop, std::shared_ptr<UnixSubprocessTransport> transport,
                         std::array<OwnedFd, 3>& pipes) {
    for (int fd = 0; fd < 3; ++fd) {
        OwnedFd& pipe = pipes[fd];
        if (!pipe) continue;
        // The pipe transport owns the descriptor from the factory's call on.
        ErasedProtocolFactory factory = [&transport, &pipe, fd]() -> std::shared_ptr<BaseProtocol> {
            auto protocol = transport->make_pipe_protocol(fd);
            (void)pipe.release();
            return protocol;
        };
        const int descriptor = pipe.get();
        co_await open_pipe(loop, std::move(factory), descriptor,
                           fd == 0 ? PipeEnd::write : PipeEnd::read);
    }
}

}  // namespace

Coro<int> wait_subprocess(std::shared_ptr<SubprocessTransport> transport) {
    auto& unix_transport = dynamic_cast<UnixSubprocessTransport&>(*transport);
    co_return co_await unix_transport.wait();
}

std::vector<std::string> shell_argv(std::string cmd) {
    return {"/bin/sh", "-c", std::move(cmd)};
}

Coro<OpenedTransport> open_subprocess(EventLoop& loop, ErasedProtocolFactory factory,
                                      std::vector<std::string> argv, SubprocessOptions opts) {
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    if (dynamic_cast<SubprocessProtocol*>(protocol.get()) == nullptr)
        throw std::invalid_argument("the protocol of a subprocess must be a SubprocessProtocol");
    SpawnedChild child = spawn_child(argv, opts);
    auto transport = std::make_shared<UnixSubprocessTransport>(loop, protocol, child);
    transport->start(transport);

    Future<> made = loop.create_future();
    Outcome<void> connected = co_await try_await(connect_pipes(loop, transport, child.pipes));
    if (connected.has_value()) {
        transport->pipes_connected(made);
        connected = co_await try_await(made);
    }
    if (!connected.has_value()) {
        // unix_events._make_subprocess_transport: close, which kills the
        // child, and wait until it is reaped.
        transport->close();
        co_await try_await(wait_subprocess(transport));
        // Pipes that never connected keep connection_lost from coming:
        // nothing else would let the transport go before the loop closes.
        transport->abandon();
        std::move(connected).get();
    }
    co_return OpenedTransport{std::move(transport), std::move(protocol)};
}

}  // namespace asyncio::detail
