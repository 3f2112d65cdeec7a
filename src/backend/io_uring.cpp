// The io_uring backend: operations go to the kernel and come back through
// the completion queue.
//
// - submit() only fills submission entries; poll() submits them and waits
//   in one io_uring_enter per loop iteration.
// - Every request carries a Record (pooled, at a stable address) as its
//   user_data, never the op itself: an op abandoned in flight leaves its
//   record behind for the completion to find, holding what the owner handed
//   over (Keepalive) until the kernel is done with it (backend.hpp's
//   ownership rule).
// - It uses what the kernel offers and falls back feature by feature:
//   SINGLE_ISSUER with DEFER_TASKRUN (else COOP_TASKRUN, else neither);
//   multishot accept and multishot recv into a provided-buffer ring (else
//   one-shot requests, and reads into backend buffers when the ring runs
//   dry); a registered ring fd; synchronous cancellation (else cancel and
//   wait). A kernel without fast poll or the network operations is refused,
//   and the loop falls back to epoll.

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

#include "asyncio/backend.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/log.hpp"
#include "backend/buffer_pool.hpp"
#include "internal.hpp"

namespace asyncio::detail {
namespace {

constexpr unsigned kSqEntries = 512;
constexpr unsigned kCqEntries = 8192;
constexpr unsigned kRingBuffers = 256;  // provided buffers in the kernel's ring
constexpr int kFixedFiles = 4096;       // registered file slots (5.19's sparse table)
constexpr std::size_t kBufferSize = ProvidedBuffers::kSize;
constexpr std::uint16_t kBufferGroup = 0;
/// Completions a multishot request may queue for an owner that has not
/// asked for them (a paused transport): then it is stopped, so that TCP's
/// flow control, not our memory, holds back a peer nobody reads.
constexpr std::size_t kMaxPending = 4;
/// A multishot recv stopped because the ring ran dry is armed again only
/// once this many buffers are back; until then its reads use pool buffers.
constexpr unsigned kRearmBuffers = kRingBuffers / 8;

bool is_provided(IoOp::Kind kind) noexcept {
    return kind == IoOp::Kind::read_provided || kind == IoOp::Kind::recv_provided;
}

bool is_write_side(IoOp::Kind kind) noexcept {
    switch (kind) {
        case IoOp::Kind::write:
        case IoOp::Kind::send:
        case IoOp::Kind::sendmsg:
        case IoOp::Kind::connect:
        case IoOp::Kind::sendfile:
        case IoOp::Kind::poll_writable:
            return true;
        default:
            return false;
    }
}

/// sendfile(2) on the loop thread, as the readiness backends do: io_uring
/// has no sendfile, and splice needs a pipe per transfer.
std::int64_t perform_sendfile(const IoOp& op) noexcept {
    for (;;) {
        off_t offset = static_cast<off_t>(op.offset);
        const ssize_t r = ::sendfile(op.fd, op.in_fd, &offset, op.len);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -static_cast<std::int64_t>(errno);
    }
}

struct RecordTag;

/// One request's bookkeeping (see the top of the file).
struct Record : Hook<RecordTag> {
    enum class Mode : std::uint8_t {
        single,     // one request, one completion, then the record is freed
        multishot,  // bound to its op across submissions (accept, recv_provided)
    };
    enum class Phase : std::uint8_t {
        op,         // the op's own request
        ready,      // POLL_ADD: wait until the fd is ready, then retry `retry`
        pool_read,  // a one-shot read into a backend buffer (the ring ran dry)
    };
    struct Pending {
        std::int64_t result;
        std::int32_t buffer;
    };

    IoOp* op = nullptr;  // the owner's op; null once abandoned
    IoOp::Kind kind = IoOp::Kind::read;
    Keepalive keep;  // what an abandoned op lent the kernel
    Record* next_free = nullptr;
    io_uring_sqe* sqe = nullptr;  // its entry, and the entry's index in the submission queue
    unsigned sq_index = 0;
    int fd = -1;
    std::uint32_t epoch = 0;  // the fd's epoch when the request went in (forget_fd)
    Mode mode = Mode::single;
    Phase phase = Phase::op;
    Phase retry = Phase::op;
    bool in_kernel = false;   // a request is queued or in the kernel, its final CQE to come
    bool queued = false;      // waiting in the backlog for a submission entry
    bool cancelling = false;  // a cancel was sent (the owner's, or back-pressure)
    bool delivered = false;   // a multishot has produced a completion
    bool starved = false;     // the buffer ring ran dry under this multishot recv
    std::int32_t pool_buffer = -1;
    std::vector<Pending> pending;  // multishot completions nobody asked for yet
    std::size_t pending_head = 0;

    bool has_pending() const noexcept { return pending_head < pending.size(); }
};

class UringBackend final : public IoBackend {
  public:
    explicit UringBackend(LoopCore& loop) : IoBackend(loop) {
        setup_ring();
        wake_fd_ = ::eventfd(0, EFD_CLOEXEC);  // blocking: io_uring then polls it
        if (wake_fd_ < 0) {
            const int error = errno;
            ::io_uring_queue_exit(&ring_);
            throw os_error(error, "eventfd");
        }
        wake_.kind = IoOp::Kind::read;
        wake_.fd = wake_fd_;
    }

    ~UringBackend() override {
        while (backlog_.pop_front() != nullptr) {
        }
        while (cancels_.pop_front() != nullptr) {
        }
        if (active_ == 0) {
            if (buffer_ring_ != nullptr) {
                ::io_uring_unregister_buf_ring(&ring_, kBufferGroup);
            }
            ::io_uring_queue_exit(&ring_);
            release_buffer_memory();
        } else {
            // Requests the kernel may still run (a loop closed from a thread
            // that could not cancel them): their memory stays, the ring goes.
            for (auto& chunk : chunks_)
                static_cast<void>(chunk.release());
            ::io_uring_queue_exit(&ring_);
        }
        ::close(wake_fd_);
    }

    Backend kind() const noexcept override { return Backend::io_uring; }

    bool submit(IoOp& op) noexcept override {
        if (op.buffer_id >= 0) recycle_op_buffer(op);
        if (op.backend_data != nullptr) {
            if (continues_multishot(op)) return submit_multishot(op);
            abandon(op, {});  // asked for something else: what it had pending is dropped
        }
        if (op.fd < 0) {
            // A process is watched through its pidfd: there is no way to
            // watch a pid or to count a signal here.
            const bool by_number =
                op.kind == IoOp::Kind::process_exit || op.kind == IoOp::Kind::signal;
            op.result = by_number ? -ENOSYS : -EBADF;
            return true;
        }
        switch (op.kind) {
            case IoOp::Kind::recv_provided:
                if (buffer_ring_ != nullptr && multishot_recv_) return submit_multishot(op);
                break;
            case IoOp::Kind::accept:
                if (op.addr == nullptr && multishot_accept_) return submit_multishot(op);
                break;
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::poll_writable:
                // add_reader on a bad fd fails at the call, as on epoll.
                if (::fcntl(op.fd, F_GETFD) < 0) {
                    op.result = -errno;
                    return true;
                }
                break;
            case IoOp::Kind::signal:
                op.result = -ENOSYS;
                return true;
            case IoOp::Kind::sendfile:
                if (const std::int64_t r = perform_sendfile(op); r != -EAGAIN) {
                    op.result = r;
                    return true;
                }
                break;
            default:
                break;
        }
        Record* r = new_record(op, Record::Mode::single);
        if (r == nullptr) {
            op.result = -ENOMEM;
            return true;
        }
        op.in_flight = true;
        if (op.kind == IoOp::Kind::sendfile) {
            wait_ready(*r, Record::Phase::op);
        } else if (is_provided(op.kind) && buffer_ring_ == nullptr) {
            start_pool_read(*r);
        } else {
            start(*r, Record::Phase::op);
        }
        return false;
    }

    /// Whether `op`, holding a multishot record, asks for more of the same.
    static bool continues_multishot(const IoOp& op) noexcept {
        const auto& r = *static_cast<const Record*>(op.backend_data);
        return r.kind == op.kind && r.fd == op.fd &&
               (op.kind == IoOp::Kind::recv_provided ||
                (op.kind == IoOp::Kind::accept && op.addr == nullptr));
    }

    bool cancel(IoOp& op) noexcept override {
        if (!op.in_flight) return false;
        Record& r = *static_cast<Record*>(op.backend_data);
        if (r.mode == Record::Mode::multishot) {
            // Only the owner's wait ends: what the request receives next is
            // kept for the next submission.
            complete(op, -ECANCELED);
            return true;
        }
        cancel_request(r);
        return true;
    }

    void abandon(IoOp& op, Keepalive keep) noexcept override {
        if (op.buffer_id >= 0) recycle_op_buffer(op);
        auto* r = static_cast<Record*>(op.backend_data);
        op.backend_data = nullptr;
        op.in_flight = false;
        if (r == nullptr) return;
        r->op = nullptr;
        drop_pending(*r);
        if (!r->in_kernel) {
            release_record(*r);
            return;
        }
        if (!lends_memory(*r)) {
            cancel_request(*r);
        } else if (keep) {
            r->keep = std::move(keep);
            cancel_request(*r);
        } else {
            wait_for_kernel(*r);
        }
    }

    void forget_fd(int fd) noexcept override {
        if (fd < 0 || static_cast<std::size_t>(fd) >= fd_ops_.size()) return;
        ++fd_epoch_[fd];  // what is cancelled below completes with -EBADF
        if (fd_ops_[fd] == 0 && fixed_slot_[fd] < 0) return;
        if (!may_enter()) {
            // Nothing reached the kernel yet (or this thread may not talk
            // to it): take back what can be taken back.
            for_each_record([&](Record& r) {
                if (r.fd == fd && r.in_kernel && withdraw(r)) on_completion(r, -EBADF, 0);
            });
            return;
        }
        if (fd_ops_[fd] > 0) {
            // Everything goes to the kernel, then everything on the fd is
            // cancelled, before the caller closes it: a later cancel by fd
            // could hit another file that took its number.
            backlog_.for_each([&](Record& r) {
                if (r.fd == fd && withdraw(r)) on_completion(r, -EBADF, 0);
            });
            if (::io_uring_sq_ready(&ring_) > 0) submit_now();
            cancel_fd(fd);
        }
        if (fixed_slot_[fd] >= 0) unregister_fixed(fd);
        // A cancelled request (and a fixed-file slot) lets go of the file
        // when its completion is run, which DEFER_TASKRUN leaves for the
        // next enter: run it now, so that closing the fd closes the socket
        // (a listener refuses at once).
        ::io_uring_get_events(&ring_);
    }

    void cancel_fd(int fd) noexcept {
        io_uring_sync_cancel_reg reg{};
        reg.fd = fd;
        reg.flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
        reg.timeout.tv_sec = -1;
        reg.timeout.tv_nsec = -1;
        if (sync_cancel_) {
            if (::io_uring_register_sync_cancel(&ring_, &reg) != -EINVAL) return;
            sync_cancel_ = false;
        }
        // Before 6.0 (and cancel by fd, 5.19): one cancel per request.
        for_each_record([&](Record& r) {
            if (r.fd == fd && r.in_kernel) cancel_request(r);
        });
        submit_now();
    }

    void wakeup() noexcept override {
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    }

    void poll(std::int64_t timeout_ns) override {
        if (!enabled_) {
            enable();
        } else if (single_issuer_ && std::this_thread::get_id() != submitter_) {
            throw RuntimeError(
                "an io_uring loop runs on the thread that first ran it "
                "(IORING_SETUP_SINGLE_ISSUER); use one loop per thread");
        }
        flush_backlog();
        if (pending_adds_ != 0) {
            ::io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(pending_adds_));
            ring_available_ += pending_adds_;
            pending_adds_ = 0;
        }
        // Nothing can complete: skip the system call (wake-ups from other
        // threads are seen by the loop without it).
        if (timeout_ns == 0 && active_ == 0 && ::io_uring_sq_ready(&ring_) == 0) return;
        for (;;) {
            int ret;
            if (timeout_ns == 0) {
                ret = ::io_uring_submit_and_get_events(&ring_);
            } else {
                __kernel_timespec ts{};
                __kernel_timespec* limit = nullptr;
                if (timeout_ns > 0) {
                    ts.tv_sec = timeout_ns / 1'000'000'000;
                    ts.tv_nsec = timeout_ns % 1'000'000'000;
                    limit = &ts;
                }
                io_uring_cqe* cqe = nullptr;
                ret = ::io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, limit, nullptr);
            }
            if (ret == -EBUSY || ret == -EAGAIN) {
                // The completion queue is full (older kernels): make room first.
                reap();
                timeout_ns = 0;
                continue;
            }
            if (ret < 0 && ret != -ETIME && ret != -EINTR) {
                throw_result(ret, "io_uring_enter");
            }
            break;
        }
        reap();
        destroy_dead_keeps();
    }

    bool shut_down() noexcept override {
        shutting_down_ = true;
        bool completed = false;
        if (!enabled_) {
            // Nothing ever reached the kernel: take every request back.
            for_each_record([&](Record& r) {
                if (r.in_kernel && withdraw(r)) {
                    completed = completed || r.op != nullptr;
                    on_completion(r, -ECANCELED, 0);
                }
            });
        } else if (may_enter()) {
            flush_backlog();
            cancel_everything();
            flush_backlog();
            // A request the kernel cannot cancel (a blocking read in a worker
            // thread) is waited for; one that never ends is given up on,
            // with its memory, after a minute.
            int idle_seconds = 0;
            while ((active_ > 0 || wake_.in_kernel) && idle_seconds < 60) {
                __kernel_timespec second{1, 0};
                io_uring_cqe* cqe = nullptr;
                const int ret =
                    ::io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &second, nullptr);
                if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY) break;
                idle_seconds = ::io_uring_cq_ready(&ring_) == 0 ? idle_seconds + 1 : 0;
                completed = reap() || completed;
                flush_backlog();
            }
            if (active_ > 0) {
                log(LogLevel::error,
                    "io_uring: {} operations did not end at close: their memory is kept", active_);
            }
        } else {
            // Closed from a thread the ring refuses (SINGLE_ISSUER): if the
            // thread that ran the loop has ended, the kernel cancelled its
            // requests and their completions are in the queue already.
            completed = reap();
            if (active_ > 0) {
                log(LogLevel::error,
                    "io_uring loop closed from another thread with {} operations in "
                    "flight: their memory is kept",
                    active_);
            }
        }
        // Owners still waiting in multishot records are told now.
        for_each_record([&](Record& r) {
            if (r.op != nullptr && r.op->in_flight && r.mode == Record::Mode::multishot &&
                !r.in_kernel) {
                complete(*r.op, -ECANCELED);
                completed = true;
            }
        });
        destroy_dead_keeps();
        return completed;
    }

  private:
    // -- setup -----------------------------------------------------------------------------

    void setup_ring() {
        const unsigned attempts[] = {
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
                IORING_SETUP_SUBMIT_ALL,
            IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
            0,
        };
        int ret = -EINVAL;
        io_uring_params params{};
        for (unsigned flags : attempts) {
            params = {};
            params.flags = flags | IORING_SETUP_CQSIZE;
            params.cq_entries = kCqEntries;
            ret = ::io_uring_queue_init_params(kSqEntries, &ring_, &params);
            if (ret != -EINVAL) break;
        }
        if (ret < 0) throw_result(ret, "io_uring_setup");
        if (!has_what_we_need(ring_, params)) {
            ::io_uring_queue_exit(&ring_);
            throw os_error(ENOSYS, "io_uring: the kernel lacks fast poll or network operations");
        }
        single_issuer_ = (params.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
        disabled_ = (params.flags & IORING_SETUP_R_DISABLED) != 0;
        cqe_skip_ = (params.features & IORING_FEAT_CQE_SKIP) != 0;
    }

  public:
    /// Fast poll (5.7) makes socket operations wait in the kernel instead of
    /// a worker thread; NODROP keeps completions that overflow the queue.
    static bool has_what_we_need(io_uring& ring, const io_uring_params& params) noexcept {
        if ((params.features & IORING_FEAT_FAST_POLL) == 0) return false;
        if ((params.features & IORING_FEAT_NODROP) == 0) return false;
        // 5.11: a wait's timeout is an argument of the enter; before that
        // liburing submits a timeout request of its own per wait.
        if ((params.features & IORING_FEAT_EXT_ARG) == 0) return false;
        io_uring_probe* probe = ::io_uring_get_probe_ring(&ring);
        if (probe == nullptr) return false;
        bool ok = true;
        for (int opcode :
             {IORING_OP_READ, IORING_OP_WRITE, IORING_OP_SEND, IORING_OP_RECV, IORING_OP_SENDMSG,
              IORING_OP_RECVMSG, IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_POLL_ADD,
              IORING_OP_ASYNC_CANCEL, IORING_OP_NOP}) {
            ok = ok && ::io_uring_opcode_supported(probe, opcode);
        }
        ::io_uring_free_probe(probe);
        return ok;
    }

  private:
    /// The first poll(), on the thread that runs the loop: a SINGLE_ISSUER
    /// ring belongs to the thread that enables it, so a loop made on one
    /// thread may run on another.
    void enable() {
        if (disabled_) {
            // liburing 2.3 declares io_uring_enable_rings() but does not
            // export it (https://github.com/axboe/liburing/issues/773).
            if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                          nullptr, 0) < 0) {
                throw_errno("io_uring_register");
            }
        }
        submitter_ = std::this_thread::get_id();
        enabled_ = true;
        ::io_uring_register_ring_fd(&ring_);  // saves a file lookup per enter where supported
        if (::io_uring_register_files_sparse(&ring_, kFixedFiles) == 0) {
            free_slots_.reserve(kFixedFiles);
            for (int slot = kFixedFiles; slot-- > 0;)
                free_slots_.push_back(slot);
        }
        setup_buffer_ring();
        arm_wake();
    }

    void setup_buffer_ring() noexcept {
        const std::size_t ring_bytes = kRingBuffers * sizeof(io_uring_buf);
        void* ring_memory =
            ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (ring_memory == MAP_FAILED) return;
        void* buffers = ::mmap(nullptr, kRingBuffers * kBufferSize, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (buffers == MAP_FAILED) {
            ::munmap(ring_memory, ring_bytes);
            return;
        }
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uint64_t>(ring_memory);
        reg.ring_entries = kRingBuffers;
        reg.bgid = kBufferGroup;
        if (::io_uring_register_buf_ring(&ring_, &reg, 0) < 0) {
            // Before 5.19: provided reads use backend buffers; no multishot.
            ::munmap(buffers, kRingBuffers * kBufferSize);
            ::munmap(ring_memory, ring_bytes);
            multishot_accept_ = false;
            return;
        }
        buffer_ring_ = static_cast<io_uring_buf_ring*>(ring_memory);
        ring_buffers_ = static_cast<char*>(buffers);
        ::io_uring_buf_ring_init(buffer_ring_);
        const int mask = ::io_uring_buf_ring_mask(kRingBuffers);
        for (unsigned i = 0; i < kRingBuffers; ++i) {
            ::io_uring_buf_ring_add(buffer_ring_, ring_buffers_ + i * kBufferSize, kBufferSize,
                                    static_cast<unsigned short>(i), mask, static_cast<int>(i));
        }
        ::io_uring_buf_ring_advance(buffer_ring_, kRingBuffers);
        ring_available_ = kRingBuffers;
    }

    void release_buffer_memory() noexcept {
        if (buffer_ring_ == nullptr) return;
        ::munmap(buffer_ring_, kRingBuffers * sizeof(io_uring_buf));
        ::munmap(ring_buffers_, kRingBuffers * kBufferSize);
        buffer_ring_ = nullptr;
    }

    void arm_wake() noexcept {
        wake_.in_kernel = true;
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {  // the queue is full: the next poll() arms it
            wake_.in_kernel = false;
            wake_pending_arm_ = true;
            return;
        }
        ::io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof wake_value_, 0);
        ::io_uring_sqe_set_data(sqe, &wake_);
    }

    /// Whether this thread may talk to the kernel about the ring.
    bool may_enter() const noexcept {
        return enabled_ && (!single_issuer_ || std::this_thread::get_id() == submitter_);
    }

    // -- records ---------------------------------------------------------------------------

    static constexpr std::size_t kChunk = 256;  // records allocated at a time

    Record* new_record(IoOp& op, Record::Mode mode) noexcept {
        if (free_ == nullptr) {
            try {
                chunks_.push_back(std::make_unique<Record[]>(kChunk));
                Record* chunk = chunks_.back().get();
                for (std::size_t i = kChunk; i-- > 0;) {
                    chunk[i].next_free = free_;
                    free_ = &chunk[i];
                }
            } catch (const std::bad_alloc&) {
                return nullptr;
            }
        }
        Record* r = free_;
        free_ = r->next_free;
        r->next_free = nullptr;
        r->op = &op;
        r->kind = op.kind;
        r->fd = op.fd;
        r->mode = mode;
        op.backend_data = r;
        return r;
    }

    void release_record(Record& r) noexcept {
        r.Hook<RecordTag>::unlink();  // a cancel still waiting to be sent is moot
        r.queued = false;
        if (r.keep) dead_keeps_.push_back(std::move(r.keep));  // destroyed outside the reaping
        if (r.pool_buffer >= 0) pool_.give(r.pool_buffer);
        r.pool_buffer = -1;
        if (&r == awaited_) awaited_ = nullptr;
        r.op = nullptr;
        r.sqe = nullptr;
        r.phase = r.retry = Record::Phase::op;
        r.cancelling = r.delivered = r.starved = false;
        r.pending.clear();
        r.pending_head = 0;
        r.next_free = free_;
        free_ = &r;
    }

    template <class Fn>
    void for_each_record(Fn&& fn) {
        for (auto& chunk : chunks_) {
            for (std::size_t i = 0; i < kChunk; ++i)
                fn(chunk[i]);
        }
    }

    /// Whether the request of `r` points at the owner's memory (rather than
    /// at nothing, or at the backend's buffers).
    static bool lends_memory(const Record& r) noexcept {
        if (r.mode == Record::Mode::multishot || r.phase != Record::Phase::op) return false;
        switch (r.kind) {
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::poll_writable:
            case IoOp::Kind::process_exit:
            case IoOp::Kind::read_provided:
            case IoOp::Kind::recv_provided:
            case IoOp::Kind::sendfile:
                return false;
            default:
                return true;
        }
    }

    std::uint32_t& fd_ops(int fd) {
        if (static_cast<std::size_t>(fd) >= fd_ops_.size()) {
            fd_ops_.resize(fd + 1, 0);
            fd_epoch_.resize(fd + 1, 0);
            fixed_slot_.resize(fd + 1, -1);
        }
        return fd_ops_[fd];
    }

    // -- registered files --------------------------------------------------------------------

    /// A connection that gets a multishot request lives long: its fd goes
    /// into the registered file table, so that its requests skip the file
    /// lookup and reference count. forget_fd() takes it out again.
    void register_fixed(int fd) noexcept {
        if (free_slots_.empty() || !may_enter()) return;
        try {
            fd_ops(fd);  // sizes the per-fd tables
        } catch (const std::bad_alloc&) {
            return;
        }
        if (fixed_slot_[fd] >= 0) return;
        const int slot = free_slots_.back();
        if (::io_uring_register_files_update(&ring_, static_cast<unsigned>(slot), &fd, 1) != 1) {
            return;
        }
        free_slots_.pop_back();
        fixed_slot_[fd] = slot;
    }

    void unregister_fixed(int fd) noexcept {
        const int slot = fixed_slot_[fd];
        int none = -1;
        ::io_uring_register_files_update(&ring_, static_cast<unsigned>(slot), &none, 1);
        fixed_slot_[fd] = -1;
        free_slots_.push_back(slot);  // capacity reserved for every slot
    }

    // -- requests --------------------------------------------------------------------------

    /// Puts the request for `phase` of `r` into the submission queue (or the
    /// backlog when it is full).
    void start(Record& r, Record::Phase phase) noexcept {
        r.phase = phase;
        try {
            ++fd_ops(r.fd);
        } catch (const std::bad_alloc&) {
            deliver_last(r, -ENOMEM);
            return;
        }
        r.epoch = fd_epoch_[r.fd];
        r.in_kernel = true;
        ++active_;
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
            r.queued = true;
            backlog_.push_back(r);
            return;
        }
        prepare(r, sqe);
    }

    void prepare(Record& r, io_uring_sqe* sqe) noexcept {
        IoOp& op = *r.op;
        const int fd = r.fd;
        switch (r.phase) {
            case Record::Phase::ready:
                ::io_uring_prep_poll_add(sqe, fd, is_write_side(op.kind) ? POLLOUT : POLLIN);
                break;
            case Record::Phase::pool_read: {
                char* data = pool_.data(r.pool_buffer);
                if (op.kind == IoOp::Kind::read_provided) {
                    ::io_uring_prep_read(sqe, fd, data, kBufferSize, static_cast<__u64>(-1));
                } else {
                    ::io_uring_prep_recv(sqe, fd, data, kBufferSize, op.flags);
                }
                break;
            }
            case Record::Phase::op:
                prepare_op(r, op, sqe);
                break;
        }
        if (const int slot = fixed_slot_[fd]; slot >= 0) {
            sqe->fd = slot;
            sqe->flags |= IOSQE_FIXED_FILE;
        }
        ::io_uring_sqe_set_data(sqe, &r);
        r.sqe = sqe;
        r.sq_index = ring_.sq.sqe_tail - 1;  // io_uring_get_sqe just took this one
    }

    void prepare_op(Record& r, IoOp& op, io_uring_sqe* sqe) noexcept {
        const int fd = op.fd;
        const bool multishot = r.mode == Record::Mode::multishot;
        switch (op.kind) {
            case IoOp::Kind::read:
                ::io_uring_prep_read(sqe, fd, op.buf, static_cast<unsigned>(op.len),
                                     static_cast<__u64>(-1));
                break;
            case IoOp::Kind::write:
                ::io_uring_prep_write(sqe, fd, op.buf, static_cast<unsigned>(op.len),
                                      static_cast<__u64>(-1));
                break;
            case IoOp::Kind::recv:
                ::io_uring_prep_recv(sqe, fd, op.buf, op.len, op.flags);
                break;
            case IoOp::Kind::send:
                ::io_uring_prep_send(sqe, fd, op.buf, op.len, op.flags | MSG_NOSIGNAL);
                break;
            case IoOp::Kind::recvmsg:
                ::io_uring_prep_recvmsg(sqe, fd, op.msg, static_cast<unsigned>(op.flags));
                break;
            case IoOp::Kind::sendmsg:
                ::io_uring_prep_sendmsg(sqe, fd, op.msg,
                                        static_cast<unsigned>(op.flags | MSG_NOSIGNAL));
                break;
            case IoOp::Kind::accept:
                if (multishot) {
                    ::io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr,
                                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
                } else {
                    ::io_uring_prep_accept(sqe, fd, op.addr,
                                           op.addr != nullptr ? &op.addrlen : nullptr,
                                           SOCK_NONBLOCK | SOCK_CLOEXEC);
                }
                break;
            case IoOp::Kind::connect:
                ::io_uring_prep_connect(sqe, fd, op.addr, op.addrlen);
                break;
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::process_exit:  // a pidfd is readable once its process exited
                ::io_uring_prep_poll_add(sqe, fd, POLLIN);
                break;
            case IoOp::Kind::signal:  // refused by submit()
                break;
            case IoOp::Kind::poll_writable:
            case IoOp::Kind::sendfile:  // only waits for writability (Phase::ready)
                ::io_uring_prep_poll_add(sqe, fd, POLLOUT);
                break;
            case IoOp::Kind::read_provided:
                ::io_uring_prep_read(sqe, fd, nullptr, kBufferSize, static_cast<__u64>(-1));
                sqe->flags |= IOSQE_BUFFER_SELECT;
                sqe->buf_group = kBufferGroup;
                break;
            case IoOp::Kind::recv_provided:
                if (multishot) {
                    ::io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, op.flags);
                } else {
                    ::io_uring_prep_recv(sqe, fd, nullptr, kBufferSize, op.flags);
                }
                sqe->flags |= IOSQE_BUFFER_SELECT;
                sqe->buf_group = kBufferGroup;
                break;
        }
    }

    /// Takes back a request that has not reached the kernel (still in the
    /// backlog, or in the submission queue since the last enter).
    bool withdraw(Record& r) noexcept {
        if (r.queued) {
            r.Hook<RecordTag>::unlink();
            r.queued = false;
        } else if (r.sqe != nullptr && !consumed(r)) {
            ::io_uring_prep_nop(r.sqe);
            ::io_uring_sqe_set_data64(r.sqe, 0);
        } else {
            return false;
        }
        r.sqe = nullptr;
        return true;
    }

    /// Ends the request of `r` early; its completion still comes.
    void cancel_request(Record& r) noexcept {
        if (r.cancelling) return;
        r.cancelling = true;
        if (withdraw(r)) {
            on_completion(r, -ECANCELED, 0);
            return;
        }
        io_uring_sqe* sqe = sqe_for_cancel();
        if (sqe == nullptr) {
            cancels_.push_back(r);  // sent by the next poll()
            return;
        }
        prepare_cancel(r, sqe);
    }

    void prepare_cancel(Record& r, io_uring_sqe* sqe) noexcept {
        ::io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(&r), 0);
        ::io_uring_sqe_set_data64(sqe, 0);
        if (cqe_skip_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }

    io_uring_sqe* sqe_for_cancel() noexcept {
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        if (sqe == nullptr && may_enter()) {
            submit_now();
            sqe = ::io_uring_get_sqe(&ring_);
        }
        return sqe;
    }

    void submit_now() noexcept { ::io_uring_submit(&ring_); }

    /// Whether the kernel has taken the submission entry of `r`: it advances
    /// the queue's head past each entry it consumes (also when an enter
    /// submits only part of the queue).
    bool consumed(const Record& r) const noexcept {
        const unsigned head = io_uring_smp_load_acquire(ring_.sq.khead);
        return r.sq_index - head >= ring_.sq.sqe_tail - head;
    }

    void flush_backlog() noexcept {
        if (wake_pending_arm_) {
            wake_pending_arm_ = false;
            arm_wake();
        }
        while (!backlog_.empty()) {
            io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
            if (sqe == nullptr) {
                submit_now();
                sqe = ::io_uring_get_sqe(&ring_);
                if (sqe == nullptr) break;
            }
            Record* r = backlog_.pop_front();
            r->queued = false;
            prepare(*r, sqe);
        }
        while (!cancels_.empty()) {
            io_uring_sqe* sqe = sqe_for_cancel();
            if (sqe == nullptr) break;
            prepare_cancel(*cancels_.pop_front(), sqe);
        }
    }

    void cancel_everything() noexcept {
        for_each_record([&](Record& r) {
            if (r.in_kernel) cancel_request(r);
        });
        if (wake_.in_kernel) {
            if (io_uring_sqe* sqe = sqe_for_cancel()) prepare_cancel(wake_, sqe);
        }
    }

    /// The owner's memory dies when abandon() returns: wait until the kernel
    /// has let go of it.
    void wait_for_kernel(Record& r) noexcept {
        if (withdraw(r)) {  // it never reached the kernel
            on_completion(r, -ECANCELED, 0);
            return;
        }
        if (!may_enter()) {
            // Another thread: it cannot be cancelled from here. The kernel
            // cancels what a thread submitted when that thread ends.
            log(LogLevel::error,
                "io_uring: an operation was abandoned in flight on another thread");
            return;
        }
        if (sync_cancel_) {
            io_uring_sync_cancel_reg reg{};
            reg.addr = reinterpret_cast<std::uint64_t>(&r);
            reg.timeout.tv_sec = -1;
            reg.timeout.tv_nsec = -1;
            const int ret = ::io_uring_register_sync_cancel(&ring_, &reg);
            // 0: cancelled; -ENOENT: it had completed. Either way the kernel
            // is done with the memory; the record awaits its completion.
            if (ret == 0 || ret == -ENOENT) {
                r.cancelling = true;
                return;
            }
            if (ret == -EINVAL) sync_cancel_ = false;
        }
        awaited_ = &r;  // cleared when the record is released
        cancel_request(r);
        while (awaited_ != nullptr) {
            const int ret = ::io_uring_submit_and_wait(&ring_, 1);
            if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY) break;
            reap();
        }
    }

    // -- completions -----------------------------------------------------------------------

    /// Handles every completion in the queue; true if any op was completed.
    bool reap() noexcept {
        bool completed = false;
        for (;;) {
            unsigned head;
            unsigned count = 0;
            io_uring_cqe* cqe;
            const std::size_t scheduled = scheduled_;
            io_uring_for_each_cqe(&ring_, head, cqe) {
                ++count;
                const std::uint64_t data = ::io_uring_cqe_get_data64(cqe);
                if (data == 0 || data == LIBURING_UDATA_TIMEOUT) continue;  // not an op's
                on_completion(*reinterpret_cast<Record*>(data), cqe->res, cqe->flags);
            }
            ::io_uring_cq_advance(&ring_, count);
            completed = completed || scheduled_ != scheduled;
            if (!::io_uring_cq_has_overflow(&ring_)) break;
            // Completions the queue had no room for wait in the kernel.
            ::io_uring_get_events(&ring_);
        }
        return completed;
    }

    void on_completion(Record& r, int res, unsigned flags) noexcept {
        if (&r == &wake_) {
            wake_.in_kernel = false;
            if (!shutting_down_) arm_wake();
            return;
        }
        const bool more = (flags & IORING_CQE_F_MORE) != 0;
        std::int32_t buffer = -1;
        if (flags & IORING_CQE_F_BUFFER) {
            buffer = static_cast<std::int32_t>(flags >> IORING_CQE_BUFFER_SHIFT);
            --ring_available_;
        }
        if (!more) {
            r.Hook<RecordTag>::unlink();  // a cancel still waiting to be sent is moot
            r.in_kernel = false;
            r.sqe = nullptr;
            --active_;
            --fd_ops_[r.fd];
        }
        if (res == -ECANCELED && fd_epoch_[r.fd] != r.epoch) res = -EBADF;  // forget_fd
        if (r.op == nullptr) {
            // Abandoned: release what the completion brought.
            if (buffer >= 0) recycle(buffer);
            if (r.kind == IoOp::Kind::accept && r.phase == Record::Phase::op && res >= 0) {
                ::close(res);
            }
            if (!more) release_record(r);
            return;
        }
        switch (r.phase) {
            case Record::Phase::ready:
                on_ready(r, res);
                return;
            case Record::Phase::pool_read: {
                const std::int32_t id = r.pool_buffer;
                r.pool_buffer = -1;
                r.phase = Record::Phase::op;
                if (res == -EAGAIN && !r.cancelling) {
                    pool_.give(id);
                    wait_ready(r, Record::Phase::pool_read);
                    return;
                }
                if (res == -EAGAIN) res = -ECANCELED;
                if (res > 0) {
                    buffer = static_cast<std::int32_t>(kRingBuffers) + id;
                } else {
                    pool_.give(id);
                }
                deliver(r, res, buffer, more);
                return;
            }
            case Record::Phase::op:
                break;
        }
        if (r.mode == Record::Mode::multishot) {
            on_multishot(r, res, buffer, more);
            return;
        }
        const bool ring_dry = res == -ENOBUFS && buffer < 0 && is_provided(r.kind);
        const bool retry = res == -EAGAIN || res == -EINTR || ring_dry;
        if (retry && r.cancelling) {
            res = -ECANCELED;  // nothing happened, and the owner asked to stop
        } else if (ring_dry) {
            start_pool_read(r);  // the ring ran dry
            return;
        } else if (retry) {
            // A non-blocking fd io_uring does not wait on (O_NONBLOCK pipes
            // on some kernels): wait for readiness, then try again.
            wait_ready(r, Record::Phase::op);
            return;
        }
        deliver(r, res, buffer, more);
    }

    void on_ready(Record& r, int res) noexcept {
        if (res < 0 || r.cancelling) {
            deliver_last(r, res < 0 ? res : -ECANCELED);
            return;
        }
        if (r.kind == IoOp::Kind::sendfile) {
            const std::int64_t sent = perform_sendfile(*r.op);
            if (sent == -EAGAIN) {
                wait_ready(r, Record::Phase::op);
            } else {
                deliver_last(r, sent);
            }
            return;
        }
        if (r.retry == Record::Phase::pool_read) {
            start_pool_read(r);
        } else {
            start(r, r.retry);
        }
    }

    void on_multishot(Record& r, int res, std::int32_t buffer, bool more) noexcept {
        // A multishot is only ever cancelled by us, for back-pressure (the
        // owner's cancel() ends its wait, not the request).
        if (!more && r.cancelling) {
            r.cancelling = false;
            if (res == -ECANCELED) {
                resume_multishot(r);
                return;
            }
        }
        if (res == -ENOBUFS && buffer < 0 && r.kind == IoOp::Kind::recv_provided) {
            // The ring ran dry: the request ended.
            r.starved = true;
            resume_multishot(r);
            return;
        }
        if (res == -EINVAL && !more && !r.delivered) {
            // The kernel has no multishot for it (recv before 6.0): one-shot
            // requests from now on.
            (r.kind == IoOp::Kind::accept ? multishot_accept_ : multishot_recv_) = false;
            r.mode = Record::Mode::single;
            if (r.op->in_flight) {
                start(r, Record::Phase::op);
            } else {
                r.op->backend_data = nullptr;
                drop_pending(r);
                release_record(r);
            }
            return;
        }
        r.delivered = true;
        deliver(r, res, buffer, more);
    }

    /// A multishot request ended without a result for the owner: if the
    /// owner waits, ask the kernel again.
    void resume_multishot(Record& r) noexcept {
        if (r.op->in_flight && !r.has_pending() && !r.in_kernel) arm_multishot(r);
    }

    void arm_multishot(Record& r) noexcept {
        if (shutting_down_) {  // the loop is closing: no new requests
            if (r.op->in_flight) deliver_last(r, -ECANCELED);
            return;
        }
        register_fixed(r.fd);
        if (r.kind == IoOp::Kind::recv_provided && r.starved) {
            if (ring_available_ + pending_adds_ < kRearmBuffers) {
                start_pool_read(r);
                return;
            }
            r.starved = false;
        }
        start(r, Record::Phase::op);
    }

    bool submit_multishot(IoOp& op) noexcept {
        auto* r = static_cast<Record*>(op.backend_data);
        if (r != nullptr && r->has_pending()) {
            const Record::Pending next = r->pending[r->pending_head++];
            if (!r->has_pending()) {
                r->pending.clear();
                r->pending_head = 0;
            }
            give_result(op, next.result, next.buffer);
            op.result = next.result;
            return true;
        }
        if (r == nullptr) {
            r = new_record(op, Record::Mode::multishot);
            if (r == nullptr) {
                op.result = -ENOMEM;
                return true;
            }
        }
        op.in_flight = true;
        if (!r->in_kernel) arm_multishot(*r);
        return false;
    }

    void start_pool_read(Record& r) noexcept {
        try {
            r.pool_buffer = pool_.take();
        } catch (const std::bad_alloc&) {
            deliver_last(r, -ENOMEM);
            return;
        }
        start(r, Record::Phase::pool_read);
    }

    void wait_ready(Record& r, Record::Phase retry) noexcept {
        r.retry = retry;
        start(r, Record::Phase::ready);
    }

    /// deliver() of a result the backend made itself rather than read from
    /// a completion: no buffer, and nothing more to follow (a failure, a
    /// cancellation, a sendfile's byte count).
    void deliver_last(Record& r, std::int64_t res) noexcept { deliver(r, res, -1, /*more=*/false); }

    /// Hands `res` (and `buffer`) to the owner: completes the op if it
    /// waits, else (a multishot between submissions) keeps it for later.
    /// `more` is the completion's IORING_CQE_F_MORE.
    void deliver(Record& r, std::int64_t res, std::int32_t buffer, bool more) noexcept {
        IoOp& op = *r.op;
        if (r.mode == Record::Mode::single) {
            op.backend_data = nullptr;
            release_record(r);
            give_result(op, res, buffer);
            finish(op, res);
            return;
        }
        if (op.in_flight) {
            give_result(op, res, buffer);
            finish(op, res);
            return;
        }
        try {
            r.pending.push_back({res, buffer});
        } catch (const std::bad_alloc&) {
            if (buffer >= 0) recycle(buffer);
            if (r.kind == IoOp::Kind::accept && res >= 0) ::close(static_cast<int>(res));
        }
        if (more && r.pending.size() - r.pending_head >= kMaxPending && !r.cancelling) {
            cancel_request(r);
        }
    }

    /// What abandoned ops handed over goes now, outside the reaping: a
    /// transport's destructor closes its socket, which calls forget_fd().
    void destroy_dead_keeps() noexcept {
        while (!dead_keeps_.empty()) {
            std::vector<Keepalive> keeps = std::move(dead_keeps_);
            dead_keeps_.clear();
        }
    }

    void finish(IoOp& op, std::int64_t res) noexcept {
        ++scheduled_;
        complete(op, res);
    }

    void give_result(IoOp& op, std::int64_t res, std::int32_t buffer) noexcept {
        if (buffer < 0) return;
        if (res <= 0) {
            recycle(buffer);
            return;
        }
        op.buffer_id = buffer;
        op.buf = buffer_data(buffer);
        op.len = kBufferSize;
    }

    void drop_pending(Record& r) noexcept {
        for (std::size_t i = r.pending_head; i < r.pending.size(); ++i) {
            const Record::Pending& p = r.pending[i];
            if (p.buffer >= 0) recycle(p.buffer);
            if (r.kind == IoOp::Kind::accept && p.result >= 0) ::close(static_cast<int>(p.result));
        }
        r.pending.clear();
        r.pending_head = 0;
    }

    // -- buffers ---------------------------------------------------------------------------

    // Buffer ids: [0, kRingBuffers) are the ring's, the rest the pool's.
    char* buffer_data(std::int32_t id) noexcept {
        if (id < static_cast<std::int32_t>(kRingBuffers)) return ring_buffers_ + id * kBufferSize;
        return pool_.data(id - static_cast<std::int32_t>(kRingBuffers));
    }

    void recycle(std::int32_t id) noexcept {
        if (id >= static_cast<std::int32_t>(kRingBuffers)) {
            pool_.give(id - static_cast<std::int32_t>(kRingBuffers));
            return;
        }
        // Back in the ring; the kernel sees it after the next advance.
        ::io_uring_buf_ring_add(buffer_ring_, ring_buffers_ + id * kBufferSize, kBufferSize,
                                static_cast<unsigned short>(id),
                                ::io_uring_buf_ring_mask(kRingBuffers),
                                static_cast<int>(pending_adds_));
        ++pending_adds_;
    }

    void recycle_op_buffer(IoOp& op) noexcept {
        // `buf` is left alone: submit() recycles after the owner set up the
        // next op, which may read into a buffer of its own.
        recycle(op.buffer_id);
        op.buffer_id = -1;
    }

    io_uring ring_{};
    bool single_issuer_ = false;
    bool disabled_ = false;  // created IORING_SETUP_R_DISABLED: enable() on the loop's thread
    bool enabled_ = false;
    bool cqe_skip_ = false;
    bool sync_cancel_ = true;
    bool multishot_accept_ = true;
    bool multishot_recv_ = true;
    bool shutting_down_ = false;
    std::thread::id submitter_;
    std::size_t active_ = 0;     // requests in the kernel or the backlog, but the wake-up's
    std::size_t scheduled_ = 0;  // ops completed, ever
    std::vector<std::unique_ptr<Record[]>> chunks_;
    Record* free_ = nullptr;
    IntrusiveList<Record, RecordTag> backlog_;  // requests waiting for a submission entry
    IntrusiveList<Record, RecordTag> cancels_;  // cancels waiting for one
    Record* awaited_ = nullptr;                 // wait_for_kernel()'s record
    std::vector<std::uint32_t> fd_ops_;         // requests in the kernel, per fd
    std::vector<std::uint32_t> fd_epoch_;       // bumped by forget_fd
    std::vector<int> fixed_slot_;               // fd -> its registered file slot, or -1
    std::vector<int> free_slots_;               // registered file slots not in use
    std::vector<Keepalive> dead_keeps_;

    io_uring_buf_ring* buffer_ring_ = nullptr;
    char* ring_buffers_ = nullptr;
    unsigned ring_available_ = 0;  // buffers the kernel can pick
    unsigned pending_adds_ = 0;    // recycled buffers not yet advanced into the ring
    ProvidedBuffers pool_;

    int wake_fd_ = -1;
    std::uint64_t wake_value_ = 0;
    Record wake_;
    bool wake_pending_arm_ = false;
};

}  // namespace

bool io_uring_available() noexcept {
    io_uring ring{};
    io_uring_params params{};
    if (::io_uring_queue_init_params(4, &ring, &params) < 0) return false;
    const bool ok = UringBackend::has_what_we_need(ring, params);
    ::io_uring_queue_exit(&ring);
    return ok;
}

std::unique_ptr<IoBackend> make_io_uring_backend(LoopCore& loop) {
    return std::make_unique<UringBackend>(loop);
}

}  // namespace asyncio::detail
