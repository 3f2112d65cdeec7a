// base_subprocess.py's BaseSubprocessTransport: a child process, the pipe
// transports to its stdio, and the watch on its exit (ChildProcess: the
// part that unix_events and windows_events each do their way).
#include "transport.hpp"

#include <array>
#include <cerrno>
#include <csignal>
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
#include "child.hpp"
#include "spawn.hpp"

namespace asyncio::detail {
namespace {

class BaseSubprocessTransport;

/// base_subprocess.WriteSubprocessPipeProto and ReadSubprocessPipeProto: the
/// protocol of one pipe transport, reporting to the subprocess transport.
class SubprocessPipeProtocol final : public Protocol {
  public:
    SubprocessPipeProtocol(BaseSubprocessTransport& process, int fd) noexcept
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
    BaseSubprocessTransport* process_;  // outlives the pipes: see self_ below
    int fd_;
};

class BaseSubprocessTransport final : public SubprocessTransport, public LoopResource {
  public:
    BaseSubprocessTransport(EventLoop& loop, std::shared_ptr<BaseProtocol> protocol,
                            const SpawnedChild& child)
        : loop_(&loop), protocol_(std::move(protocol)), child_(child) {
        for (int fd = 0; fd < 3; ++fd)
            wants_pipe_[fd] = static_cast<bool>(child.pipes[fd]);
    }

    /// Makes the transport live until connection_lost (or the loop closes)
    /// and starts watching for the child's exit.
    void start(std::shared_ptr<BaseSubprocessTransport> self) {
        self_ = std::move(self);
        loop_->register_resource(*this);
        child_.watch(*loop_, [this] { on_child_exit(); });
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
        if (name == "subprocess") return child_.pid();
        return {};
    }

    // SubprocessTransport
    int get_pid() const override { return child_.pid(); }
    std::optional<int> get_returncode() const override { return returncode_; }
    BaseTransport* get_pipe_transport(int fd) const override {
        if (fd < 0 || fd > 2 || !pipes_[fd]) return nullptr;
        return pipes_[fd]->pipe.get();
    }
    void send_signal(int sig) override;
    void terminate() override { send_signal(ChildProcess::terminate_signal); }
    void kill() override { send_signal(ChildProcess::kill_signal); }

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

  public:
    /// Lets go of everything without calling the protocol: the loop is
    /// closing, or the start failed after the child was reaped.
    void abandon() noexcept;

  private:
    EventLoop* loop_;
    std::shared_ptr<BaseProtocol> protocol_;
    ChildProcess child_;
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
    std::shared_ptr<BaseSubprocessTransport> self_;
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

void BaseSubprocessTransport::close() {
    if (closed_) return;
    closed_ = true;
    for (const auto& pipe : pipes_) {
        if (pipe && pipe->pipe) pipe->pipe->close();
    }
    // CPython 3.13 kills a child still running when its transport closes.
    if (!returncode_ && !finished_) {
        if (loop_->get_debug())
            log(LogLevel::warning, "Close running child process: kill {}", child_.pid());
        child_.kill_quietly();
    }
}

void BaseSubprocessTransport::send_signal(int sig) {
    if (lost_) {
        throw std::system_error(std::make_error_code(std::errc::no_such_process),
                                "ProcessLookupError");
    }
    if (returncode_) return;  // Popen.send_signal: nothing for a child known to have exited
    child_.send_signal(sig);
}

void BaseSubprocessTransport::on_child_exit() {
    const std::optional<int> returncode = child_.exit_status();
    if (!returncode) return;  // not yet: the watch stays
    child_.stop_watching();
    process_exited(*returncode);
}

void BaseSubprocessTransport::process_exited(int returncode) {
    returncode_ = returncode;
    call([this] { subprocess_protocol().process_exited(); });
    try_finish();
}

void BaseSubprocessTransport::try_finish() {
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

void BaseSubprocessTransport::call_connection_lost() {
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
    std::shared_ptr<BaseSubprocessTransport> last = std::move(self_);
    // The call that runs this holds the transport too (see call()).
    if (failure) std::rethrow_exception(failure);
}

void BaseSubprocessTransport::loop_closing() noexcept {
    abandon();
}

void BaseSubprocessTransport::abandon() noexcept {
    if (returncode_) {
        child_.stop_watching();
    } else {
        child_.release();  // never a zombie
    }
    finished_ = true;
    lost_ = true;
    protocol_.reset();
    pipes_ = {};
    pending_calls_.reset();  // they hold the transport
    exit_waiters_.clear();
    unregister_resource();
    std::shared_ptr<BaseSubprocessTransport> last = std::move(self_);  // may free *this
}

Coro<int> BaseSubprocessTransport::wait() {
    if (returncode_) co_return *returncode_;
    Future<int> waiter = loop_->create_future<int>();
    exit_waiters_.push_back(waiter);
    co_return co_await waiter;
}

/// Connects the pipe transports for the child's descriptors that are pipes.
Coro<void> connect_pipes(EventLoop& loop, std::shared_ptr<BaseSubprocessTransport> transport,
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
    auto& base_transport = dynamic_cast<BaseSubprocessTransport&>(*transport);
    co_return co_await base_transport.wait();
}

std::vector<std::string> shell_argv(std::string cmd) {
#ifdef _WIN32
    // Popen(shell=True) on Windows: COMSPEC, else cmd.exe, with /c.
    const char* comspec = std::getenv("COMSPEC");
    return {comspec != nullptr ? comspec : "cmd.exe", "/c", std::move(cmd)};
#else
    return {"/bin/sh", "-c", std::move(cmd)};
#endif
}

Coro<OpenedTransport> open_subprocess(EventLoop& loop, ErasedProtocolFactory factory,
                                      std::vector<std::string> argv, SubprocessOptions opts) {
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    if (dynamic_cast<SubprocessProtocol*>(protocol.get()) == nullptr)
        throw std::invalid_argument("the protocol of a subprocess must be a SubprocessProtocol");
    SpawnedChild child = spawn_child(argv, opts);
    auto transport = std::make_shared<BaseSubprocessTransport>(loop, protocol, child);
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
