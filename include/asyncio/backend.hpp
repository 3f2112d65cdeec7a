// The backend policy interface: how the loop waits for I/O and time.
//
// A backend runs completion-style operations (IoOp) that live inside the
// awaiter or transport waiting for them, so starting, completing or
// cancelling one allocates nothing. Readiness backends (epoll, kqueue, poll)
// try the system call first and wait for readiness only on EAGAIN;
// completion backends (io_uring, IOCP) hand the operation to the kernel.
// Either way a finished operation goes to the loop's ready queue and resumes
// its owner from there.
//
// Ownership of in-flight memory. From submit() until the op's completion has
// been delivered (its ReadyNode run, or dropped because the loop closed), the
// backend, and on a completion backend the kernel, may read and write the op
// and every byte it points to: the buffer, the msghdr with its iovecs and
// name, the sockaddr and its length. The owner gives an op up in one of two
// ways:
//   * cancel() and wait: the op still completes through the ready queue.
//     Tasks do this (a cancelled task resumes only once its op completed) and
//     so do transports on close (they count their pending ops);
//   * abandon(op, keep), when the owner cannot wait (a transport whose loop
//     closes, a coroutine frame destroyed with its op in flight). The backend
//     never schedules the op again and keeps `keep`, which owns every byte
//     the op lent, until the kernel has let go of them; only then is `keep`
//     destroyed. Without a `keep`, abandon() itself waits until the kernel
//     has let go (io_uring's synchronous cancel).
// When a loop closes, its backend cancels what is still in flight and waits
// for the kernel before anything is freed (tokio-uring's Lifecycle::Cancelled
// and its driver's drop are the model).
//
// The backend is chosen when a loop is created: RunOptions::backend, else the
// ASYNCIO_BACKEND environment variable ("epoll", "io_uring", "kqueue",
// "poll", "iocp"), else the first that this machine accepts of the ones
// built for its OS: io_uring, epoll, poll on Linux; kqueue, poll on BSD and
// macOS; IOCP on Windows.
#pragma once

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asyncio/detail/future_state.hpp"
#include "asyncio/detail/loop_core.hpp"
#include "asyncio/detail/native.hpp"
#include "asyncio/export.hpp"

namespace asyncio {

enum class Backend { epoll, io_uring, kqueue, iocp, poll };

/// "epoll", "io_uring", ...
ASYNCIO_EXPORT std::string_view to_string(Backend backend) noexcept;
/// The backend named `name`, nullopt if there is none by that name.
ASYNCIO_EXPORT std::optional<Backend> backend_from_string(std::string_view name) noexcept;
/// Whether a loop on `backend` can be created on this machine now (for
/// io_uring, whether the kernel accepts a ring: a seccomp filter or
/// kernel.io_uring_disabled may refuse it).
ASYNCIO_EXPORT bool backend_available(Backend backend) noexcept;
/// Every backend that backend_available() accepts, best first.
ASYNCIO_EXPORT std::vector<Backend> available_backends();
/// ASYNCIO_BACKEND if set (std::invalid_argument if it names no backend),
/// else the first of available_backends().
ASYNCIO_EXPORT Backend default_backend();

/// One I/O request. `kind` decides which arguments are read:
///   read, write, recv, send      fd, buf, len (flags for recv/send)
///   read_provided, recv_provided fd (flags for recv): the backend picks the
///                                buffer; on success `buf` and `result` say
///                                where the data is and `len` the buffer's
///                                size. The buffer stays the op's until it is
///                                submitted again or abandoned.
///   recvmsg, sendmsg             fd, msg, flags (recvfrom/sendto/writev go through these)
///   accept                       fd, addr/addrlen (may be null); result is the new fd,
///                                non-blocking and close-on-exec. Without addr a
///                                backend may keep accepting between submissions
///                                (io_uring's multishot accept).
/// recv_provided and accept without addr may keep receiving (accepting) into
/// the op between submissions: submitting the op for anything else, or on
/// another fd, drops what it had received and not delivered.
///   connect                      fd, addr, addrlen
///   sendfile                     fd (socket), in_fd, offset, len
///   poll_readable, poll_writable fd; completes once the fd is ready
///   process_exit                 pid, and fd: a pidfd for it, or -1 where the
///                                OS has none; completes once the process has
///                                exited (it is not reaped). With fd -1 a
///                                backend that watches processes itself
///                                (kqueue) watches pid, the others fail the
///                                op with -ENOSYS; else it waits until fd is
///                                readable.
///   signal                       sig (fd -1); completes with the number of
///                                times the signal arrived, where the backend
///                                counts_signals(), else fails with -ENOSYS.
///                                It keeps counting between submissions (the
///                                next one reports what came meanwhile) until
///                                it is abandoned.
/// A backend watches a process or a signal for one op at a time.
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
        read_provided,
        recv_provided,
        process_exit,
        signal,
    };

    IoOp() noexcept = default;
    explicit IoOp(Fn fn) noexcept : Waiter(fn) {}

    /// Whether the backend holds anything for this op (it is in flight, or
    /// keeps a provided buffer or an armed multishot for it): then the owner
    /// must abandon() it before freeing it.
    bool attached() const noexcept {
        return in_flight || buffer_id >= 0 || backend_data != nullptr;
    }

    Kind kind = Kind::read;
    bool in_flight = false;  ///< set by the backend while it owns the operation
    /// A hint: the fd was drained by the previous operation (a short read),
    /// so a readiness backend may wait without trying the call first.
    bool wait_first = false;
    std::uint8_t backend_state = 0;  ///< the backend's own use (a connect's phase, say)
    // Ordered so that no padding falls between the fields: every transport
    // holds two of these.
    int fd = -1;
    int flags = 0;
    ::socklen_t addrlen = 0;
    union {
        int in_fd = -1;  ///< sendfile's source
        int pid;         ///< process_exit's process
        int sig;         ///< signal's number
    };
    /// The provided buffer this op holds (read_provided, recv_provided); -1: none.
    std::int32_t buffer_id = -1;
    void* buf = nullptr;
    std::size_t len = 0;
    detail::msghdr* msg = nullptr;
    ::sockaddr* addr = nullptr;
    std::int64_t offset = 0;
    std::int64_t result = 0;
    /// The backend's own record for the op while it keeps one.
    void* backend_data = nullptr;
};

/// Owns the memory an abandoned op lent the kernel; the backend destroys it
/// once the kernel has let go (see "Ownership of in-flight memory" above).
using Keepalive = std::shared_ptr<const void>;

/// The interface every backend implements. One virtual call per operation.
class ASYNCIO_EXPORT IoBackend {
  public:
    explicit IoBackend(detail::LoopCore& loop) noexcept : loop_(loop) {}
    IoBackend(const IoBackend&) = delete;
    IoBackend& operator=(const IoBackend&) = delete;
    virtual ~IoBackend() = default;

    virtual Backend kind() const noexcept = 0;
    std::string_view name() const noexcept { return to_string(kind()); }
    /// Whether signal ops work: the backend counts each signal's deliveries
    /// itself (kqueue's EVFILT_SIGNAL). Elsewhere the loop's own C signal
    /// handler counts them.
    virtual bool counts_signals() const noexcept { return false; }
    /// Whether submit() may finish an operation at once, so that it may
    /// point at memory that only lives for the call (a readiness backend);
    /// false means operations must own their buffers until they complete.
    virtual bool completes_inline() const noexcept { return false; }
    /// Whether poll_readable/poll_writable work, for add_reader/add_writer:
    /// IOCP has no readiness to report (CPython's proactor has no add_reader).
    virtual bool watches_readiness() const noexcept { return true; }

    /// Starts `op`. Returns true if it finished at once (`op.result` is set
    /// and nothing is scheduled); false if it is in flight and will be
    /// scheduled on the loop's ready queue when it completes.
    virtual bool submit(IoOp& op) noexcept = 0;
    /// Asks an in-flight `op` to finish early. It still completes through the
    /// ready queue, with -ECANCELED unless it finished first. Returns false
    /// if `op` was not in flight any more.
    virtual bool cancel(IoOp& op) noexcept = 0;
    /// The owner of `op` is going away without waiting for it (see the
    /// ownership rule above). The backend never schedules `op` again, returns
    /// its provided buffer and stops what it kept armed for it. If `op` is in
    /// flight, `keep` must own the memory it lent; the backend destroys
    /// `keep` once the kernel no longer touches that memory. With no `keep`,
    /// this waits until the kernel has let go. Owners call it for any op that
    /// is attached().
    virtual void abandon(IoOp& op, Keepalive keep = {}) noexcept = 0;
    /// Waits up to `timeout_ns` (negative: no limit, 0: do not block) for
    /// completions and schedules them.
    virtual void poll(std::int64_t timeout_ns) = 0;
    /// Thread-safe: makes a concurrent or the next poll() return promptly.
    virtual void wakeup() noexcept = 0;
    /// `fd` is about to be closed; drop what the backend keeps for it.
    /// Operations still in flight on it complete with -EBADF.
    virtual void forget_fd(int fd) noexcept = 0;
    /// The loop is closing: cancel whatever is still in flight, wait until
    /// the kernel has let go of it, complete the ops that still have an
    /// owner (so that the loop drops them) and destroy what abandon() kept.
    /// Returns true if it completed any op (the loop then drops them and
    /// calls this again).
    virtual bool shut_down() noexcept { return false; }

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
ASYNCIO_EXPORT std::unique_ptr<IoBackend> make_backend(Backend kind, detail::LoopCore& loop);

/// The backend a new loop gets when none is named: ASYNCIO_BACKEND if set,
/// else the first backend, best first, that the OS accepts. When a better
/// one was refused, `fallback_reason` (if given) says why ("io_uring:
/// io_uring_setup: Operation not permitted").
ASYNCIO_EXPORT std::unique_ptr<IoBackend> make_default_backend(
    detail::LoopCore& loop, std::string* fallback_reason = nullptr);

namespace detail {

/// Awaits one IoOp from inside a task: `co_await IoAwaiter(backend, op-setup)`
/// yields the op's result (>= 0, or -errno). Cancelling the task cancels the
/// op, and the task resumes once the op has completed, so the memory it
/// points at outlives the kernel's use of it. Only a frame destroyed with the
/// op in flight (its loop closed) abandons it, and waits for the kernel.
class IoAwaiter : public IoOp {
  public:
    explicit IoAwaiter(IoBackend& backend) noexcept : backend_(&backend) {}
    IoAwaiter(const IoAwaiter&) = delete;
    IoAwaiter& operator=(const IoAwaiter&) = delete;
    ~IoAwaiter() {
        if (attached()) backend_->abandon(*this);
    }

    bool await_ready() noexcept { return backend_->submit(*this); }
    void await_suspend(std::coroutine_handle<> at) {
        TaskBase::running().suspend_on(*this, at, &cancel_op);
    }
    /// The op's result; CancelledError if the task's cancellation ended it.
    std::int64_t await_resume() {
        if (task != nullptr && (task->take_pending_cancel() || cancel_requested_)) {
            if (result < 0) throw CancelledError(task->cancel_message());
            // The op did its work before the cancellation reached it (bytes
            // read or sent, a connection accepted): keep it, so that no byte
            // and no connection is lost, and cancel the task at its next
            // suspension instead.
            task->defer_cancel();
        }
        return result;
    }

  private:
    static bool cancel_op(Waiter& waiter, const std::string&) noexcept {
        auto& self = node_cast<IoAwaiter>(waiter);
        self.cancel_requested_ = self.backend_->cancel(self);
        return self.cancel_requested_;
    }

    IoBackend* backend_;
    bool cancel_requested_ = false;
};

}  // namespace detail
}  // namespace asyncio
