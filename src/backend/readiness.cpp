// The readiness core shared by the epoll, kqueue and poll backends (readiness.hpp).
#include "backend/readiness.hpp"

#include "backend/buffer_pool.hpp"
#include "internal.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#endif

#include <cerrno>
#include <system_error>

namespace asyncio::detail {

struct ReadinessBackend::FdState {
    IntrusiveList<IoOp, WaiterTag> readers;
    IntrusiveList<IoOp, WaiterTag> writers;
    std::uint8_t registered = 0;  // Interest bits the kernel has for this fd
    std::uint32_t poll_ops = 0;   // waiting poll operations: level-triggered mode
    bool edge_sticky = false;     // I/O operations used it: keep it registered
    bool read_edge = false;       // readable reported since the last read attempt
    bool hung_up = false;         // the peer's EOF or an error was reported
    bool dirty = false;
};

namespace {

bool is_read_side(IoOp::Kind kind) noexcept {
    switch (kind) {
        case IoOp::Kind::read:
        case IoOp::Kind::recv:
        case IoOp::Kind::recvmsg:
        case IoOp::Kind::accept:
        case IoOp::Kind::poll_readable:
        case IoOp::Kind::read_provided:
        case IoOp::Kind::recv_provided:
        case IoOp::Kind::process_exit:
            return true;
        default:
            return false;
    }
}

/// Whether `op` only waits for readiness, with no system call of its own: a
/// process_exit op with a pidfd waits for it to be readable.
bool is_poll(IoOp::Kind kind) noexcept {
    return kind == IoOp::Kind::poll_readable || kind == IoOp::Kind::poll_writable ||
           kind == IoOp::Kind::process_exit;
}

bool is_event(const IoOp& op) noexcept {
    return op.kind == IoOp::Kind::signal || (op.kind == IoOp::Kind::process_exit && op.fd < 0);
}

/// What the kernel knows an event op's target by.
int event_id(const IoOp& op) noexcept {
    return op.kind == IoOp::Kind::signal ? op.sig : op.pid;
}

#ifndef MSG_NOSIGNAL
constexpr int MSG_NOSIGNAL = 0;  // BSDs: SO_NOSIGPIPE on the socket instead
#endif

int accept_nonblocking(int fd, ::sockaddr* addr, ::socklen_t* len) noexcept {
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return ::accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    const int conn = ::accept(fd, addr, len);
    if (conn >= 0) {
        ::fcntl(conn, F_SETFD, FD_CLOEXEC);
        ::fcntl(conn, F_SETFL, ::fcntl(conn, F_GETFL) | O_NONBLOCK);
    }
    return conn;
#endif
}

}  // namespace

ReadinessBackend::ReadinessBackend(LoopCore& loop, Trigger trigger, WakeChannel wake)
    : IoBackend(loop), trigger_(trigger), buffers_(std::make_unique<ProvidedBuffers>()) {
    if (wake == WakeChannel::os_part) return;
#ifdef __linux__
    wake_read_fd_ = wake_write_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_read_fd_ < 0) throw_errno("eventfd");
#else
    int fds[2];
    if (::pipe(fds) < 0) throw_errno("pipe");
    for (int fd : fds) {
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    wake_read_fd_ = fds[0];
    wake_write_fd_ = fds[1];
#endif
}

ReadinessBackend::~ReadinessBackend() {
    // The loop has closed: every owner is gone, so only unlink.
    for (auto& state : fds_) {
        if (!state) continue;
        for (auto* list : {&state->readers, &state->writers}) {
            while (IoOp* op = list->pop_front())
                op->in_flight = false;
        }
    }
    while (IoOp* op = event_ops_.pop_front())
        op->in_flight = false;
    if (wake_read_fd_ < 0) return;
    ::close(wake_read_fd_);
    if (wake_write_fd_ != wake_read_fd_) ::close(wake_write_fd_);
}

// -- operations ------------------------------------------------------------------------

bool ReadinessBackend::submit(IoOp& op) noexcept {
    if (op.buffer_id >= 0) give_back_buffer(op);  // the previous data was consumed
    if (is_event(op)) [[unlikely]]
        return submit_event(op);
    if (op.fd < 0) {
        op.result = -EBADF;
        return true;
    }
    FdState& fd = state(op.fd);
    const bool reading = is_read_side(op.kind);
    auto& waiting = reading ? fd.readers : fd.writers;
    if (is_poll(op.kind)) {
        enqueue(op, waiting);
        ++fd.poll_ops;
        // Applied now so that a bad fd fails here (add_reader throws);
        // removals are left to flush() so re-arming is free.
        if (const int error = apply(op.fd, fd, Urgency::now); error != 0) {
            dequeue(op);
            --fd.poll_ops;
            op.result = -error;
            return true;
        }
        return false;
    }
    op.backend_state = 0;
    // FIFO: behind others, wait your turn. After a short read, wait for the
    // next edge without a doomed attempt, unless an edge came while nobody
    // waited (it will not be reported again) or the peer hung up (a pending
    // EOF raises no further edge); registering, if needed, reports data that
    // is already there.
    if (waiting.empty() && (!op.wait_first || (reading && (fd.read_edge || fd.hung_up)))) {
        if (reading) fd.read_edge = false;
        const std::int64_t r = perform(op);
        if (r != -EAGAIN) {
            op.result = r;
            return true;
        }
    }
    enqueue(op, waiting);
    if (trigger_ == Trigger::edge) fd.edge_sticky = true;
    // An edge-triggered fd is registered once, at once, so that an fd the OS
    // cannot watch fails here; level-triggered interest follows the queues
    // and is applied before the next wait.
    const Urgency urgency =
        trigger_ == Trigger::edge && fd.registered == 0 ? Urgency::now : Urgency::before_next_wait;
    if (const int error = apply(op.fd, fd, urgency); error != 0) {
        dequeue(op);
        op.result = -error;
        return true;
    }
    return false;
}

bool ReadinessBackend::submit_event(IoOp& op) noexcept {
    if (const int error = watch_event(op.kind, event_id(op), true); error != 0) {
        // No such process: it has exited, which is what the op waits for.
        op.result = error == ESRCH && op.kind == IoOp::Kind::process_exit ? 0 : -error;
        return true;
    }
    enqueue(op, event_ops_);
    // A signal is counted on between submissions, until abandon().
    if (op.kind == IoOp::Kind::signal) op.backend_data = this;
    return false;
}

bool ReadinessBackend::cancel(IoOp& op) noexcept {
    if (!op.in_flight) return false;
    detach(op);
    complete(op, -ECANCELED);
    return true;
}

void ReadinessBackend::abandon(IoOp& op, Keepalive) noexcept {
    // The kernel never holds an operation's memory between system calls:
    // what `keep` owns may go at once.
    if (op.in_flight) {
        detach(op);
    } else if (op.backend_data != nullptr) {
        forget_event(op);  // a signal, counted between submissions
    }
    if (op.buffer_id >= 0) give_back_buffer(op);
}

void ReadinessBackend::forget_fd(int fd) noexcept {
    FdState* state = find(fd);
    if (state == nullptr) return;
    fail_all(*state, -EBADF);
    if (state->registered != 0) watch(fd, state->registered, 0, Urgency::before_next_wait);
    state->registered = 0;
    state->edge_sticky = false;
    state->read_edge = false;
    state->hung_up = false;
}

void ReadinessBackend::wakeup() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_write_fd_, &one, sizeof(one));
}

void ReadinessBackend::drain_wakeup() noexcept {
    char sink[64];
    while (::read(wake_read_fd_, sink, sizeof sink) > 0) {
    }
}

void ReadinessBackend::poll(std::int64_t timeout_ns) {
    // Nothing can complete: skip the system call (wake-ups from other
    // threads are seen by the loop without it).
    if (timeout_ns == 0 && waiting_ == 0 && dirty_.empty()) return;
    flush();
    wait(timeout_ns);
}

// -- readiness -------------------------------------------------------------------------

void ReadinessBackend::ready(int fd, bool readable, bool writable, bool hung_up) noexcept {
    FdState* state = find(fd);
    if (state == nullptr) return;
    if (readable || hung_up) {
        state->read_edge = true;
        if (hung_up) state->hung_up = true;
        run_waiting(fd, *state, /*readers=*/true);
    }
    if (writable) run_waiting(fd, *state, /*readers=*/false);
}

void ReadinessBackend::event(IoOp::Kind kind, int id, std::int64_t count) noexcept {
    event_ops_.for_each([&](IoOp& op) {
        if (op.kind != kind || event_id(op) != id) return;
        dequeue(op);
        complete(op, kind == IoOp::Kind::signal ? count : 0);
    });
}

void ReadinessBackend::fail_fd(int fd, int error) noexcept {
    FdState* state = find(fd);
    if (state == nullptr) return;
    fail_all(*state, -error);
    if (state->registered != 0) watch(fd, state->registered, 0, Urgency::before_next_wait);
    state->registered = 0;
    state->edge_sticky = false;
}

/// The fd is ready in this direction: complete poll operations, and run
/// I/O operations in order until one would block.
void ReadinessBackend::run_waiting(int fd, FdState& state, bool readers) noexcept {
    auto& waiting = readers ? state.readers : state.writers;
    bool blocked = false;
    waiting.for_each([&](IoOp& op) {
        std::int64_t r = 0;
        if (is_poll(op.kind)) {
            --state.poll_ops;
        } else {
            if (blocked) return;
            if (readers) state.read_edge = false;
            r = perform(op);
            if (r == -EAGAIN) {
                blocked = true;
                return;
            }
        }
        dequeue(op);
        complete(op, r);
    });
    apply(fd, state, Urgency::before_next_wait);
}

// -- registration ----------------------------------------------------------------------

// The small helpers below are on every operation's path: `inline` asks the
// compiler to fold them into their callers, as one class body would.

inline ReadinessBackend::FdState& ReadinessBackend::state(int fd) {
    if (static_cast<std::size_t>(fd) < fds_.size() && fds_[fd]) [[likely]]
        return *fds_[fd];
    return new_state(fd);
}

ReadinessBackend::FdState& ReadinessBackend::new_state(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(fd + 1);
    fds_[fd] = std::make_unique<FdState>();
    return *fds_[fd];
}

inline ReadinessBackend::FdState* ReadinessBackend::find(int fd) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return nullptr;
    return fds_[fd].get();
}

inline std::uint8_t ReadinessBackend::desired(const FdState& state) const noexcept {
    // add_reader/add_writer promise level-triggered callbacks, and a level
    // backend can watch nothing else: exactly the directions someone waits for.
    if (state.poll_ops > 0 || trigger_ == Trigger::level) {
        std::uint8_t want = 0;
        if (!state.readers.empty()) want |= kRead;
        if (!state.writers.empty()) want |= kWrite;
        return want;
    }
    return state.edge_sticky ? kRead | kWrite | kEdge : 0;
}

/// Brings the kernel's interest in `fd` in line with desired(), at once or
/// before the next wait. Returns an errno.
inline int ReadinessBackend::apply(int fd, FdState& state, Urgency urgency) noexcept {
    const std::uint8_t want = desired(state);
    if (want == state.registered) return 0;
    if (urgency == Urgency::before_next_wait) {
        if (!state.dirty) {
            state.dirty = true;
            dirty_.push_back(fd);
        }
        return 0;
    }
    if (const int error = watch(fd, state.registered, want, Urgency::now); error != 0) return error;
    state.registered = want;
    return 0;
}

void ReadinessBackend::flush() noexcept {
    for (std::size_t i = 0; i < dirty_.size(); ++i) {
        const int fd = dirty_[i];
        FdState* state = find(fd);
        if (state == nullptr) continue;
        state->dirty = false;
        const std::uint8_t want = desired(*state);
        if (want == state->registered) continue;
        if (const int error = watch(fd, state->registered, want, Urgency::before_next_wait);
            error != 0) {
            fail_all(*state, -error);
            state->registered = 0;
            state->edge_sticky = false;
            continue;
        }
        state->registered = want;
    }
    dirty_.clear();
}

void ReadinessBackend::forget_event(IoOp& op) noexcept {
    watch_event(op.kind, event_id(op), false);
    op.backend_data = nullptr;
}

void ReadinessBackend::detach(IoOp& op) noexcept {
    dequeue(op);
    if (is_event(op)) {
        forget_event(op);
    } else if (is_poll(op.kind)) {
        FdState& fd = *fds_[op.fd];
        --fd.poll_ops;
        apply(op.fd, fd, Urgency::before_next_wait);
    }
}

inline void ReadinessBackend::enqueue(IoOp& op, IntrusiveList<IoOp, WaiterTag>& queue) noexcept {
    queue.push_back(op);
    op.in_flight = true;
    ++waiting_;
}

inline void ReadinessBackend::dequeue(IoOp& op) noexcept {
    static_cast<Hook<WaiterTag>&>(op).unlink();
    op.in_flight = false;
    --waiting_;
}

void ReadinessBackend::fail_all(FdState& state, std::int64_t error) noexcept {
    for (auto* list : {&state.readers, &state.writers}) {
        while (IoOp* op = list->pop_front()) {
            --waiting_;
            complete(*op, error);
        }
    }
    state.poll_ops = 0;
}

// -- system calls ----------------------------------------------------------------------

inline void ReadinessBackend::give_back_buffer(IoOp& op) noexcept {
    // `buf` is left alone: submit() gives the buffer back after the owner
    // set up the next op, which may read into a buffer of its own.
    buffers_->give(op.buffer_id);
    op.buffer_id = -1;
}

/// Runs `op`'s system call once, retrying EINTR. -EAGAIN means "wait".
std::int64_t ReadinessBackend::perform(IoOp& op) noexcept {
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
            case IoOp::Kind::read_provided:
            case IoOp::Kind::recv_provided: {
                std::int32_t id;
                try {
                    id = buffers_->take();
                } catch (const std::bad_alloc&) {
                    return -ENOMEM;
                }
                char* data = buffers_->data(id);
                r = op.kind == IoOp::Kind::read_provided
                        ? ::read(op.fd, data, ProvidedBuffers::kSize)
                        : ::recv(op.fd, data, ProvidedBuffers::kSize, op.flags);
                if (r > 0) {
                    op.buffer_id = id;
                    op.buf = data;
                    op.len = ProvidedBuffers::kSize;
                    return r;
                }
                const int error = errno;
                buffers_->give(id);
                errno = error;
                break;
            }
            case IoOp::Kind::recvmsg:
                r = ::recvmsg(op.fd, op.msg, op.flags);
                break;
            case IoOp::Kind::sendmsg:
                r = ::sendmsg(op.fd, op.msg, op.flags | MSG_NOSIGNAL);
                break;
            case IoOp::Kind::accept:
                r = accept_nonblocking(op.fd, op.addr, op.addr != nullptr ? &op.addrlen : nullptr);
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
#ifdef __linux__
                off_t offset = static_cast<off_t>(op.offset);
                r = ::sendfile(op.fd, op.in_fd, &offset, op.len);
#else
                return -ENOSYS;  // the caller falls back to read and send
#endif
                break;
            }
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::poll_writable:
            case IoOp::Kind::process_exit:
            case IoOp::Kind::signal:
                return -EAGAIN;
        }
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK || errno == EAGAIN) return -EAGAIN;
        return -static_cast<std::int64_t>(errno);
    }
}

}  // namespace asyncio::detail
