// The epoll backend: completion-style operations on a readiness API.
//
// An operation first tries its system call; only on EAGAIN does it wait. An
// fd that operations wait on is registered once, edge-triggered for reading
// and writing, and stays registered until forget_fd(): the steady state makes
// no epoll_ctl calls. Operations wait only after EAGAIN, so the next edge is
// always reported. add_reader/add_writer need level-triggered semantics: while
// poll operations wait on an fd it is registered level-triggered with exactly
// the events someone waits for; those changes are applied lazily, just before
// epoll_wait, so re-arming after each callback costs nothing.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <memory>
#include <system_error>
#include <vector>

#include "asyncio/backend.hpp"

namespace asyncio::detail {
namespace {

constexpr std::uint32_t kEdgeEvents = EPOLLET | EPOLLIN | EPOLLOUT | EPOLLRDHUP;

bool is_read_side(IoOp::Kind kind) noexcept {
    switch (kind) {
        case IoOp::Kind::read:
        case IoOp::Kind::recv:
        case IoOp::Kind::recvmsg:
        case IoOp::Kind::accept:
        case IoOp::Kind::poll_readable:
            return true;
        default:
            return false;
    }
}

bool is_poll(IoOp::Kind kind) noexcept {
    return kind == IoOp::Kind::poll_readable || kind == IoOp::Kind::poll_writable;
}

std::int64_t syscall_result(long r) noexcept {
    return r >= 0 ? r : -static_cast<std::int64_t>(errno);
}

/// Runs `op`'s system call once, retrying EINTR. -EAGAIN means "wait".
std::int64_t perform(IoOp& op) noexcept {
    for (;;) {
        long r = 0;
        switch (op.kind) {
            case IoOp::Kind::read:
                r = ::read(op.fd, op.buf, op.len);
                break;
            case IoOp::Kind::write:
                r = ::write(op.fd, op.buf, op.len);
                break;
            case IoOp::Kind::recv:
                r = ::recv(op.fd, op.buf, op.len, op.flags);
                break;
            case IoOp::Kind::send:
                r = ::send(op.fd, op.buf, op.len, op.flags | MSG_NOSIGNAL);
                break;
            case IoOp::Kind::recvmsg:
                r = ::recvmsg(op.fd, op.msg, op.flags);
                break;
            case IoOp::Kind::sendmsg:
                r = ::sendmsg(op.fd, op.msg, op.flags | MSG_NOSIGNAL);
                break;
            case IoOp::Kind::accept:
                r = ::accept4(op.fd, op.addr, op.addr != nullptr ? &op.addrlen : nullptr,
                              SOCK_NONBLOCK | SOCK_CLOEXEC);
                break;
            case IoOp::Kind::connect:
                if (op.backend_state == 0) {
                    r = ::connect(op.fd, op.addr, op.addrlen);
                    if (r < 0 && errno == EINPROGRESS) {
                        op.backend_state = 1;  // now wait for writability, then read SO_ERROR
                        return -EAGAIN;
                    }
                } else {
                    int error = 0;
                    socklen_t size = sizeof(error);
                    if (::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &error, &size) < 0) {
                        error = errno;
                    }
                    return error == 0 ? 0 : -static_cast<std::int64_t>(error);
                }
                break;
            case IoOp::Kind::sendfile: {
                off_t offset = static_cast<off_t>(op.offset);
                r = ::sendfile(op.fd, op.in_fd, &offset, op.len);
                break;
            }
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::poll_writable:
                return -EAGAIN;
        }
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return syscall_result(r);
    }
}

class EpollBackend final : public IoBackend {
  public:
    explicit EpollBackend(LoopCore& loop) : IoBackend(loop) {
        epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wake_fd_ < 0) {
            const int error = errno;
            ::close(epoll_fd_);
            throw std::system_error(error, std::system_category(), "eventfd");
        }
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = wake_fd_;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) < 0) {
            const int error = errno;
            ::close(wake_fd_);
            ::close(epoll_fd_);
            throw std::system_error(error, std::system_category(), "epoll_ctl(eventfd)");
        }
        events_.resize(64);
    }

    ~EpollBackend() override {
        // The loop has closed: every awaiter is gone, so only unlink.
        for (auto& state : fds_) {
            if (!state) continue;
            for (auto* list : {&state->readers, &state->writers}) {
                while (IoOp* op = list->pop_front())
                    op->in_flight = false;
            }
        }
        ::close(wake_fd_);
        ::close(epoll_fd_);
    }

    Backend kind() const noexcept override { return Backend::epoll; }
    bool completes_inline() const noexcept override { return true; }

    bool submit(IoOp& op) noexcept override {
        if (op.fd < 0) {
            op.result = -EBADF;
            return true;
        }
        FdState& fd = state(op.fd);
        const bool reading = is_read_side(op.kind);
        auto& waiting = reading ? fd.readers : fd.writers;
        if (is_poll(op.kind)) {
            enqueue(waiting, op);
            op.in_flight = true;
            ++fd.poll_ops;
            // Applied now so that a bad fd fails here (add_reader throws);
            // removals are left to flush() so re-arming is free.
            if (const int error = apply(op.fd, fd, /*now=*/true); error != 0) {
                dequeue(op);
                op.in_flight = false;
                --fd.poll_ops;
                op.result = -error;
                return true;
            }
            return false;
        }
        op.backend_state = 0;
        // FIFO: behind others, wait your turn. After a short read, wait for
        // the next edge without a doomed attempt, unless an edge came while
        // nobody waited (it will not be reported again) or the peer hung up
        // (a pending EOF raises no further edge); registering, if needed,
        // reports data that is already there.
        if (waiting.empty() && (!op.wait_first || (reading && (fd.read_edge || fd.hung_up)))) {
            if (reading) fd.read_edge = false;
            const std::int64_t r = perform(op);
            if (r != -EAGAIN) {
                op.result = r;
                return true;
            }
        }
        enqueue(waiting, op);
        op.in_flight = true;
        fd.edge_sticky = true;
        if (const int error = apply(op.fd, fd, /*now=*/fd.registered == 0); error != 0) {
            dequeue(op);
            op.in_flight = false;
            op.result = -error;
            return true;
        }
        return false;
    }

    bool cancel(IoOp& op) noexcept override {
        if (!op.in_flight) return false;
        detach(op);
        complete(op, -ECANCELED);
        return true;
    }

    void discard(IoOp& op) noexcept override {
        if (!op.in_flight) return;
        detach(op);
        op.in_flight = false;
    }

    void forget_fd(int fd) noexcept override {
        if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size() || !fds_[fd]) return;
        FdState& state = *fds_[fd];
        fail_all(state, -EBADF);
        if (state.registered != 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        state.registered = 0;
        state.edge_sticky = false;
        state.read_edge = false;
        state.hung_up = false;
    }

    void wakeup() noexcept override {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    }

    void poll(std::int64_t timeout_ns) override {
        // Nothing can complete: skip the system call (wake-ups from other
        // threads are seen by the loop without it).
        if (timeout_ns == 0 && waiting_ == 0 && dirty_.empty()) return;
        flush();
        const int n = wait(timeout_ns);
        if (n < 0) {
            if (errno == EINTR) return;
            throw std::system_error(errno, std::system_category(), "epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const epoll_event& event = events_[i];
            const int fd = event.data.fd;
            if (fd == wake_fd_) {
                std::uint64_t count;
                [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof(count));
                continue;
            }
            if (static_cast<std::size_t>(fd) >= fds_.size() || !fds_[fd]) continue;
            FdState& state = *fds_[fd];
            if (event.events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                state.read_edge = true;
                if (event.events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) state.hung_up = true;
                run_waiting(fd, state, state.readers);
            }
            if (event.events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                run_waiting(fd, state, state.writers);
            }
        }
        if (static_cast<std::size_t>(n) == events_.size() && events_.size() < 4096) {
            events_.resize(events_.size() * 2);
        }
    }

  private:
    struct FdState {
        IntrusiveList<IoOp, WaiterTag> readers;
        IntrusiveList<IoOp, WaiterTag> writers;
        std::uint32_t registered = 0;  // events the kernel has for this fd; 0 = none
        std::uint32_t poll_ops = 0;    // waiting poll operations: level-triggered mode
        bool edge_sticky = false;      // I/O operations used it: keep it registered
        bool read_edge = false;        // readable reported since the last read attempt
        bool hung_up = false;          // the peer's EOF or an error was reported
        bool dirty = false;
    };

    FdState& state(int fd) {
        if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(fd + 1);
        if (!fds_[fd]) fds_[fd] = std::make_unique<FdState>();
        return *fds_[fd];
    }

    static std::uint32_t desired(const FdState& state) noexcept {
        if (state.poll_ops > 0) {
            std::uint32_t events = 0;
            if (!state.readers.empty()) events |= EPOLLIN | EPOLLRDHUP;
            if (!state.writers.empty()) events |= EPOLLOUT;
            return events;
        }
        return state.edge_sticky ? kEdgeEvents : 0;
    }

    /// Brings the kernel's registration of `fd` in line with desired(), at
    /// once if `now`, else before the next epoll_wait. Returns an errno.
    int apply(int fd, FdState& state, bool now) noexcept {
        const std::uint32_t want = desired(state);
        if (want == state.registered) return 0;
        if (!now) {
            if (!state.dirty) {
                state.dirty = true;
                dirty_.push_back(fd);
            }
            return 0;
        }
        int op = state.registered == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
        epoll_event event{};
        event.events = want;
        event.data.fd = fd;
        int r = ::epoll_ctl(epoll_fd_, op, fd, &event);
        if (r < 0 && errno == EEXIST && op == EPOLL_CTL_ADD) {
            r = ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
        } else if (r < 0 && errno == ENOENT && op == EPOLL_CTL_MOD) {
            r = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
        } else if (r < 0 && errno == ENOENT && op == EPOLL_CTL_DEL) {
            r = 0;
        }
        if (r < 0) return errno;
        state.registered = want;
        return 0;
    }

    void flush() noexcept {
        for (std::size_t i = 0; i < dirty_.size(); ++i) {
            const int fd = dirty_[i];
            if (static_cast<std::size_t>(fd) >= fds_.size() || !fds_[fd]) continue;
            FdState& state = *fds_[fd];
            state.dirty = false;
            if (const int error = apply(fd, state, /*now=*/true); error != 0) {
                fail_all(state, -error);
                state.registered = 0;
                state.edge_sticky = false;
            }
        }
        dirty_.clear();
    }

    int wait(std::int64_t timeout_ns) noexcept {
#ifdef SYS_epoll_pwait2
        if (use_pwait2_) {
            timespec ts{};
            timespec* limit = nullptr;
            if (timeout_ns >= 0) {
                ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
                ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
                limit = &ts;
            }
            const long n = ::syscall(SYS_epoll_pwait2, epoll_fd_, events_.data(),
                                     static_cast<int>(events_.size()), limit, nullptr, 0);
            if (n >= 0 || errno != ENOSYS) return static_cast<int>(n);
            use_pwait2_ = false;
        }
#endif
        int ms = -1;
        if (timeout_ns >= 0) {  // round up, as CPython does, so a timer is never early
            const std::int64_t rounded = (timeout_ns + 999'999) / 1'000'000;
            ms = rounded > INT_MAX ? INT_MAX : static_cast<int>(rounded);
        }
        return ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()), ms);
    }

    /// The fd is ready in this direction: complete poll operations, and run
    /// I/O operations in order until one would block.
    void run_waiting(int fd, FdState& state, IntrusiveList<IoOp, WaiterTag>& waiting) noexcept {
        bool blocked = false;
        waiting.for_each([&](IoOp& op) {
            std::int64_t r = 0;
            if (is_poll(op.kind)) {
                --state.poll_ops;
            } else {
                if (blocked) return;
                if (&waiting == &state.readers) state.read_edge = false;
                r = perform(op);
                if (r == -EAGAIN) {
                    blocked = true;
                    return;
                }
            }
            dequeue(op);
            complete(op, r);
        });
        apply(fd, state, /*now=*/false);
    }

    void detach(IoOp& op) noexcept {
        dequeue(op);
        if (is_poll(op.kind)) {
            FdState& fd = *fds_[op.fd];
            --fd.poll_ops;
            apply(op.fd, fd, /*now=*/false);
        }
    }

    void enqueue(IntrusiveList<IoOp, WaiterTag>& list, IoOp& op) noexcept {
        list.push_back(op);
        ++waiting_;
    }
    void dequeue(IoOp& op) noexcept {
        static_cast<Hook<WaiterTag>&>(op).unlink();
        --waiting_;
    }

    void fail_all(FdState& state, std::int64_t error) noexcept {
        for (auto* list : {&state.readers, &state.writers}) {
            while (IoOp* op = list->pop_front()) {
                --waiting_;
                complete(*op, error);
            }
        }
        state.poll_ops = 0;
    }

    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    bool use_pwait2_ = true;
    std::size_t waiting_ = 0;  // operations queued on some fd
    std::vector<std::unique_ptr<FdState>> fds_;
    std::vector<int> dirty_;
    std::vector<epoll_event> events_;
};

}  // namespace

bool epoll_available() noexcept {
    return true;
}

std::unique_ptr<IoBackend> make_epoll_backend(LoopCore& loop) {
    return std::make_unique<EpollBackend>(loop);
}

}  // namespace asyncio::detail
