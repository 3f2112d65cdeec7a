// What every readiness backend (epoll, kqueue, poll) shares, as libuv's
// core.c is shared by linux.c, kqueue.c and posix-poll.c: completion-style
// operations on a readiness API.
//
// An operation first tries its system call; only on EAGAIN does it wait,
// queued per fd and direction so that operations on one fd complete in FIFO
// order. When the OS reports the fd ready, the waiting operations of that
// direction run in order until one would block again. The OS part only keeps
// the kernel's interest in each fd in line with what the core asks for, and
// waits.
//
// Event ops wait for what the kernel names by number rather than by fd: a
// signal op, and a process_exit op without a pidfd. Only an OS part that
// watches these itself (kqueue) takes them; elsewhere they fail with ENOSYS.
#pragma once

#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>
#include <memory>
#include <vector>

#include "asyncio/backend.hpp"

namespace asyncio::detail {

class ProvidedBuffers;

class ReadinessBackend : public IoBackend {
  public:
    ~ReadinessBackend() override;

    bool completes_inline() const noexcept final { return true; }
    bool submit(IoOp& op) noexcept final;
    bool cancel(IoOp& op) noexcept final;
    void abandon(IoOp& op, Keepalive keep) noexcept final;
    void forget_fd(int fd) noexcept final;
    /// Writes the core's wake-up fd; an OS part with a channel of its own
    /// overrides it.
    void wakeup() noexcept override;
    void poll(std::int64_t timeout_ns) final;

  protected:
    /// What the core wants the kernel to watch on an fd: a set of these bits.
    enum Interest : std::uint8_t {
        kRead = 1,
        kWrite = 2,
        /// Edge-triggered, for I/O operations: registered once and kept until
        /// forget_fd(), so the steady state makes no system call. Only asked
        /// of a backend built with Trigger::edge.
        kEdge = 4,
    };
    enum class Trigger { edge, level };
    /// When a change of interest must take effect. `now`: the caller waits
    /// for the answer (add_reader on a bad fd must fail at the call), so
    /// check what would otherwise only show at the next wait.
    enum class Urgency { now, before_next_wait };
    /// How wakeup() reaches a waiting wait(): through an eventfd (a pipe off
    /// Linux) that the core makes and the OS part watches, or through a
    /// channel of the OS part's own (kqueue's EVFILT_USER), which then
    /// overrides wakeup().
    enum class WakeChannel { core_fd, os_part };

    struct FdState;

    /// `trigger`: whether the OS part can watch edges (epoll, kqueue) or only
    /// levels (poll). Throws std::system_error if the core's wake-up channel
    /// cannot be made.
    ReadinessBackend(LoopCore& loop, Trigger trigger, WakeChannel wake = WakeChannel::core_fd);

    /// The OS part: make the kernel watch `fd` for `want` (a set of Interest
    /// bits, 0 = nothing) instead of `had`, with `urgency` (see Urgency).
    /// Returns 0 or an errno.
    virtual int watch(int fd, std::uint8_t had, std::uint8_t want, Urgency urgency) noexcept = 0;
    /// The OS part: waits up to `timeout_ns` (negative: no limit, 0: do not
    /// block) and calls ready() for each fd that is ready, and drain_wakeup()
    /// if the wake-up fd is readable. An interrupted wait just returns;
    /// other failures throw std::system_error.
    virtual void wait(std::int64_t timeout_ns) = 0;

    /// The OS part: start (`watch`) or stop watching, in the kernel, what an
    /// event op waits for: its process (`kind` process_exit, `id` the pid)
    /// or its signal (`kind` signal, `id` the signal number). Starting takes
    /// effect at once. Returns 0 or an errno; the default, ENOSYS, fails the
    /// event ops of an OS part that cannot watch them.
    virtual int watch_event(IoOp::Kind /*kind*/, int /*id*/, bool /*watch*/) noexcept {
        return ENOSYS;
    }

    /// The OS part reports `fd` ready.
    void ready(int fd, bool readable, bool writable, bool hung_up) noexcept;
    /// The OS part reports what an event op waits for: process `id` exited,
    /// or signal `id` arrived `count` times.
    void event(IoOp::Kind kind, int id, std::int64_t count) noexcept;
    /// The fd that wakeup() makes readable (WakeChannel::core_fd); the OS
    /// part watches it itself.
    int wake_fd() const noexcept { return wake_read_fd_; }
    void drain_wakeup() noexcept;
    /// Fails every operation waiting on `fd` with -`error`: its registration
    /// went bad (POLLNVAL, say).
    void fail_fd(int fd, int error) noexcept;

  private:
    FdState& state(int fd);
    FdState& new_state(int fd);
    FdState* find(int fd) noexcept;
    std::uint8_t desired(const FdState& state) const noexcept;
    int apply(int fd, FdState& state, Urgency urgency) noexcept;
    void flush() noexcept;
    void run_waiting(int fd, FdState& state, bool readers) noexcept;
    bool submit_event(IoOp& op) noexcept;
    void forget_event(IoOp& op) noexcept;
    void detach(IoOp& op) noexcept;
    void enqueue(IoOp& op, IntrusiveList<IoOp, WaiterTag>& queue) noexcept;
    void dequeue(IoOp& op) noexcept;
    void fail_all(FdState& state, std::int64_t error) noexcept;
    std::int64_t perform(IoOp& op) noexcept;
    void give_back_buffer(IoOp& op) noexcept;

    Trigger trigger_;
    int wake_read_fd_ = -1;
    int wake_write_fd_ = -1;
    std::size_t waiting_ = 0;  // operations queued on some fd
    std::vector<std::unique_ptr<FdState>> fds_;
    IntrusiveList<IoOp, WaiterTag> event_ops_;  // waiting for a process or a signal
    std::vector<int> dirty_;
    std::unique_ptr<ProvidedBuffers> buffers_;
};

/// A wait's timeout (negative: no limit) as the timespec the nanosecond
/// calls take: `storage` filled, or nullptr for no limit.
inline ::timespec* wait_limit(std::int64_t timeout_ns, ::timespec& storage) noexcept {
    if (timeout_ns < 0) return nullptr;
    storage.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    storage.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    return &storage;
}

/// The same in milliseconds (-1: no limit), rounded up as CPython does, so
/// that a timer is never early.
inline int wait_limit_ms(std::int64_t timeout_ns) noexcept {
    if (timeout_ns < 0) return -1;
    const std::int64_t rounded = (timeout_ns + 999'999) / 1'000'000;
    return rounded > INT_MAX ? INT_MAX : static_cast<int>(rounded);
}

}  // namespace asyncio::detail
