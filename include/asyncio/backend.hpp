// The backend policy interface: how the loop waits for I/O and time.
//
// A backend runs completion-style operations (IoOp) that live inside the
// awaiter waiting for them, so starting, completing or cancelling one
// allocates nothing. Readiness backends (epoll, kqueue, poll) try the system
// call first and wait for readiness only on EAGAIN; completion backends
// (io_uring, IOCP) submit the operation. Either way a finished operation goes
// to the loop's ready queue and resumes its task from there.
//
// The backend is chosen when a loop is created: RunOptions::backend, else the
// ASYNCIO_BACKEND environment variable ("epoll", "io_uring", ...), else the
// best one that works on this machine.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "asyncio/detail/future_state.hpp"
#include "asyncio/detail/loop_core.hpp"

namespace asyncio {

enum class Backend { epoll, io_uring, kqueue, iocp, poll };

/// "epoll", "io_uring", ...
std::string_view to_string(Backend backend) noexcept;
/// The backend named `name`, nullopt if there is none by that name.
std::optional<Backend> backend_from_string(std::string_view name) noexcept;
/// Whether a loop on `backend` can be created on this machine now.
bool backend_available(Backend backend) noexcept;
/// Every backend that backend_available() accepts, best first.
std::vector<Backend> available_backends();
/// ASYNCIO_BACKEND if set (std::invalid_argument if it names no backend),
/// else the first of available_backends().
Backend default_backend();

/// One I/O request. `kind` decides which arguments are read:
///   read, write, recv, send      fd, buf, len (flags for recv/send)
///   recvmsg, sendmsg             fd, msg, flags (recvfrom/sendto/writev go through these)
///   accept                       fd, addr/addrlen (may be null); result is the new fd,
///                                non-blocking and close-on-exec
///   connect                      fd, addr, addrlen
///   sendfile                     fd (socket), in_fd, offset, len
///   poll_readable, poll_writable fd; completes once the fd is ready
/// `result` is >= 0 on success (bytes, or the accepted fd) and -errno on failure.
struct IoOp : detail::Waiter {
    enum class Kind : std::uint8_t {
        read,
        write,
        recv,
        send,
        recvmsg,
        sendmsg,
        accept,
        connect,
        sendfile,
        poll_readable,
        poll_writable,
    };

    IoOp() noexcept = default;
    explicit IoOp(Fn fn) noexcept : Waiter(fn) {}

    Kind kind = Kind::read;
    bool in_flight = false;  ///< set by the backend while it owns the operation
    /// A hint: the fd was drained by the previous operation (a short read),
    /// so a readiness backend may wait without trying the call first.
    bool wait_first = false;
    std::uint8_t backend_state = 0;  ///< the backend's own use (a connect's phase, say)
    int fd = -1;
    int flags = 0;
    void* buf = nullptr;
    std::size_t len = 0;
    ::msghdr* msg = nullptr;
    ::sockaddr* addr = nullptr;
    ::socklen_t addrlen = 0;
    int in_fd = -1;
    std::int64_t offset = 0;
    std::int64_t result = 0;
};

/// The interface every backend implements. One virtual call per operation.
class IoBackend {
  public:
    explicit IoBackend(detail::LoopCore& loop) noexcept : loop_(loop) {}
    IoBackend(const IoBackend&) = delete;
    IoBackend& operator=(const IoBackend&) = delete;
    virtual ~IoBackend() = default;

    virtual Backend kind() const noexcept = 0;
    std::string_view name() const noexcept { return to_string(kind()); }
    /// Whether submit() may finish an operation at once, so that it may
    /// point at memory that only lives for the call (a readiness backend);
    /// false means operations must own their buffers until they complete.
    virtual bool completes_inline() const noexcept { return false; }

    /// Starts `op`. Returns true if it finished at once (`op.result` is set
    /// and nothing is scheduled); false if it is in flight and will be
    /// scheduled on the loop's ready queue when it completes.
    virtual bool submit(IoOp& op) noexcept = 0;
    /// Asks an in-flight `op` to finish early. It still completes through the
    /// ready queue, with -ECANCELED unless it finished first. Returns false
    /// if `op` was not in flight any more.
    virtual bool cancel(IoOp& op) noexcept = 0;
    /// `op` is about to be destroyed: once this returns the backend never
    /// touches it again and does not schedule it.
    virtual void discard(IoOp& op) noexcept = 0;
    /// Waits up to `timeout_ns` (negative: no limit, 0: do not block) for
    /// completions and schedules them.
    virtual void poll(std::int64_t timeout_ns) = 0;
    /// Thread-safe: makes a concurrent or the next poll() return promptly.
    virtual void wakeup() noexcept = 0;
    /// `fd` is about to be closed; drop what the backend keeps for it.
    /// Operations still in flight on it complete with -EBADF.
    virtual void forget_fd(int fd) noexcept = 0;

  protected:
    /// Finishes `op` with `result` and schedules its waiter.
    void complete(IoOp& op, std::int64_t result) noexcept {
        op.in_flight = false;
        op.result = result;
        loop_.schedule(op);
    }

    detail::LoopCore& loop_;
};

/// Creates a backend of `kind` for `loop`; RuntimeError if it is not
/// available here, std::system_error if the OS refuses it.
std::unique_ptr<IoBackend> make_backend(Backend kind, detail::LoopCore& loop);

namespace detail {

/// Awaits one IoOp from inside a task: `co_await IoAwaiter(backend, op-setup)`
/// yields the op's result (>= 0, or -errno). Cancelling the task cancels the op.
class IoAwaiter : public IoOp {
  public:
    explicit IoAwaiter(IoBackend& backend) noexcept : backend_(&backend) {}
    IoAwaiter(const IoAwaiter&) = delete;
    IoAwaiter& operator=(const IoAwaiter&) = delete;
    ~IoAwaiter() {
        if (in_flight) backend_->discard(*this);
    }

    bool await_ready() noexcept { return backend_->submit(*this); }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase::running().suspend_on(*this, at, &cancel_op);
    }
    /// The op's result; CancelledError if the task's cancellation ended it.
    std::int64_t await_resume() {
        if (task != nullptr) {
            try {
                task->resume_point();
            } catch (...) {
                // Cancelled after the op completed: an accepted connection
                // nobody will own is closed, as Python's GC would.
                if (kind == Kind::accept && result >= 0) ::close(static_cast<int>(result));
                throw;
            }
            if (cancel_requested_ && result == -ECANCELED) {
                throw CancelledError(task->cancel_message());
            }
        }
        return result;
    }

  private:
    static bool cancel_op(Waiter& waiter, const std::string&) noexcept {
        auto& self = static_cast<IoAwaiter&>(waiter);
        self.cancel_requested_ = self.backend_->cancel(self);
        return self.cancel_requested_;
    }

    IoBackend* backend_;
    bool cancel_requested_ = false;
};

}  // namespace detail
}  // namespace asyncio
