// The kqueue backend (FreeBSD, macOS, NetBSD, DragonFly): the readiness
// core (readiness.cpp) plus registration and waiting with kevent().
//
// As on epoll, I/O operations use an fd edge-triggered: both filters are
// added once with EV_CLEAR and stay until forget_fd(), so the steady state
// makes no change at all; add_reader/add_writer get level-triggered filters
// for exactly the directions someone waits for. Changes ride on the next
// kevent() call, the one that waits, unless the core needs the answer now:
// then they are applied at once, each with EV_RECEIPT so that its error
// comes back. wakeup() triggers an EVFILT_USER event; a child's exit is
// EVFILT_PROC's NOTE_EXIT, watched by pid; each signal the loop wants is an
// EVFILT_SIGNAL filter, which counts deliveries.
//
// No BSD or macOS machine runs this project's CI: there this file is only
// compiled, against cmake/kqueue-check/sys/event.h. What it shares with
// epoll and poll (the readiness core, the process and signal watches above
// it) runs in every test on those.
// sys/types.h first: older BSDs' sys/event.h uses its types.
#include <sys/types.h>

#include <sys/event.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <system_error>
#include <utility>
#include <vector>

#include "backend/readiness.hpp"
#include "internal.hpp"

namespace asyncio::detail {
namespace {

// `kevent` names both the struct and the system call.
using Kevent = struct kevent;

/// A change for kevent(), its fields in the types every kqueue declares.
Kevent change(std::uintptr_t ident, short filter, unsigned short flags,
              unsigned int fflags = 0) noexcept {
    Kevent ev;
    EV_SET(&ev, ident, filter, flags, fflags, 0, nullptr);
    return ev;
}

/// The EVFILT_USER event wakeup() triggers.
constexpr std::uintptr_t kWakeUp = 0;

constexpr ::timespec kNoWait{};

class KqueueBackend final : public ReadinessBackend {
  public:
    explicit KqueueBackend(LoopCore& loop)
        : ReadinessBackend(loop, Trigger::edge, WakeChannel::os_part) {
        kq_ = ::kqueue();
        if (kq_ < 0) throw_errno("kqueue");
        const Kevent wake = change(kWakeUp, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_FFNOP);
        if (::kevent(kq_, &wake, 1, nullptr, 0, &kNoWait) < 0) {
            const int error = errno;
            ::close(kq_);
            throw os_error(error, "kevent");
        }
        events_.resize(64);
    }

    ~KqueueBackend() override { ::close(kq_); }

    Backend kind() const noexcept override { return Backend::kqueue; }
    bool counts_signals() const noexcept override { return true; }

    void wakeup() noexcept override {
        const Kevent trigger = change(kWakeUp, EVFILT_USER, 0, NOTE_TRIGGER);
        ::kevent(kq_, &trigger, 1, nullptr, 0, &kNoWait);
    }

  private:
    /// How a filter watches an fd.
    enum class Mode { off, level, edge };

    static Mode mode(std::uint8_t interest, std::uint8_t direction) noexcept {
        if (interest & kEdge) return Mode::edge;
        return (interest & direction) != 0 ? Mode::level : Mode::off;
    }

    int watch(int fd, std::uint8_t had, std::uint8_t want, Urgency urgency) noexcept override {
        const std::size_t first = changes_.size();
        change_filter(fd, EVFILT_READ, mode(had, kRead), mode(want, kRead));
        change_filter(fd, EVFILT_WRITE, mode(had, kWrite), mode(want, kWrite));
        if (urgency == Urgency::before_next_wait) return 0;
        return apply_now(first);
    }

    /// Queues what takes `filter` on `fd` from `from` to `to`.
    void change_filter(int fd, short filter, Mode from, Mode to) {
        if (from == to) return;
        const auto ident = static_cast<std::uintptr_t>(fd);
        // EV_ADD on a filter already there leaves its EV_CLEAR as it was.
        if (from != Mode::off) changes_.push_back(change(ident, filter, EV_DELETE));
        if (to == Mode::edge) changes_.push_back(change(ident, filter, EV_ADD | EV_CLEAR));
        if (to == Mode::level) changes_.push_back(change(ident, filter, EV_ADD));
    }

    int watch_event(IoOp::Kind kind, int id, bool watch) noexcept override {
        const auto ident = static_cast<std::uintptr_t>(id);
        const bool process = kind == IoOp::Kind::process_exit;
        const short filter = process ? EVFILT_PROC : EVFILT_SIGNAL;
        if (!watch) {
            changes_.push_back(change(ident, filter, EV_DELETE));
            return 0;
        }
        if (process) {
            changes_.push_back(change(ident, filter, EV_ADD | EV_ONESHOT, NOTE_EXIT));
        } else {
            // Disabled once it reports, a signal's filter goes on counting
            // until the next submission enables it again.
            changes_.push_back(change(ident, filter, EV_ADD | EV_ENABLE | EV_DISPATCH));
        }
        return apply_now(changes_.size() - 1);
    }

    /// Applies the queued changes now and returns the first error among
    /// those from `first` on, the caller's. The changes queued before are
    /// deletions (forget_fd, a watch stopped), whose failure only says that
    /// the kernel dropped the filter already.
    int apply_now(std::size_t first) noexcept {
        // A receipt for each change, in order; and no event is taken.
        for (Kevent& ev : changes_)
            ev.flags |= EV_RECEIPT;
        receipts_.resize(changes_.size());
        const int n = ::kevent(kq_, changes_.data(), static_cast<int>(changes_.size()),
                               receipts_.data(), static_cast<int>(receipts_.size()), &kNoWait);
        const int error = errno;
        changes_.clear();
        if (n < 0) return error;
        for (int i = static_cast<int>(first); i < n; ++i) {
            const Kevent& receipt = receipts_[static_cast<std::size_t>(i)];
            if (receipt.data == 0) continue;
            if (peer_gone(receipt)) {
                hung_up_.push_back(static_cast<int>(receipt.ident));
                continue;
            }
            return static_cast<int>(receipt.data);
        }
        return 0;
    }

    /// EVFILT_WRITE refused with EPIPE: the other end of a pipe is closed. A
    /// hang-up, not a failure: readers see EOF, writers EPIPE from their call.
    static bool peer_gone(const Kevent& receipt) noexcept {
        return receipt.filter == EVFILT_WRITE && receipt.data == EPIPE;
    }

    void wait(std::int64_t timeout_ns) override {
        ::timespec storage{};
        const ::timespec* limit = hung_up_.empty() ? wait_limit(timeout_ns, storage) : &kNoWait;
        // Room for an error per change: a change that finds none is not made.
        if (events_.size() < changes_.size()) events_.resize(changes_.size());
        const int n = ::kevent(kq_, changes_.data(), static_cast<int>(changes_.size()),
                               events_.data(), static_cast<int>(events_.size()), limit);
        const int error = errno;
        changes_.clear();  // made before the wait, even an interrupted one
        for (const int fd : std::exchange(hung_up_, {}))
            ready(fd, false, true, true);
        if (n < 0) {
            if (error == EINTR) return;
            throw os_error(error, "kevent");
        }
        for (int i = 0; i < n; ++i)
            dispatch(events_[static_cast<std::size_t>(i)]);
        if (static_cast<std::size_t>(n) == events_.size() && events_.size() < 4096) {
            events_.resize(events_.size() * 2);
        }
    }

    void dispatch(const Kevent& ev) noexcept {
        const int id = static_cast<int>(ev.ident);
        if ((ev.flags & EV_ERROR) != 0) {
            change_failed(ev);
            return;
        }
        const bool eof = (ev.flags & EV_EOF) != 0;
        switch (ev.filter) {
            case EVFILT_READ:
                ready(id, true, false, eof);
                break;
            case EVFILT_WRITE:
                ready(id, false, true, eof);
                break;
            case EVFILT_PROC:
                event(IoOp::Kind::process_exit, id, 1);
                break;
            case EVFILT_SIGNAL:
                event(IoOp::Kind::signal, id, static_cast<std::int64_t>(ev.data));
                break;
            default:
                break;  // EVFILT_USER: a wakeup(), which EV_CLEAR has reset
        }
    }

    /// A change that rode on the wait failed. Failed deletions (ENOENT, and
    /// any on a process or a signal) mean the kernel dropped the filter first.
    void change_failed(const Kevent& ev) noexcept {
        const bool on_fd = ev.filter == EVFILT_READ || ev.filter == EVFILT_WRITE;
        if (!on_fd || ev.data == ENOENT) return;
        const int fd = static_cast<int>(ev.ident);
        if (peer_gone(ev)) {
            ready(fd, false, true, true);
        } else {
            fail_fd(fd, static_cast<int>(ev.data));
        }
    }

    int kq_ = -1;
    std::vector<Kevent> changes_;   // for the next kevent() call
    std::vector<Kevent> receipts_;  // apply_now()'s
    std::vector<Kevent> events_;
    std::vector<int> hung_up_;  // fds whose peer_gone() the next wait reports
};

}  // namespace

std::unique_ptr<IoBackend> make_kqueue_backend(LoopCore& loop) {
    return std::make_unique<KqueueBackend>(loop);
}

}  // namespace asyncio::detail
