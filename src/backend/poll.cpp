// The poll(2) backend: the readiness core (readiness.cpp) plus a pollfd
// array. It is the last resort on any POSIX system: level-triggered only, and
// each wait costs time in proportion to the fds that someone waits on (an
// idle connection is not in the array at all).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <system_error>
#include <vector>

#include "backend/readiness.hpp"
#include "internal.hpp"

namespace asyncio::detail {
namespace {

class PollBackend final : public ReadinessBackend {
  public:
    explicit PollBackend(LoopCore& loop) : ReadinessBackend(loop, Trigger::level) {
        pollfds_.push_back(pollfd{wake_fd(), POLLIN, 0});
    }

    Backend kind() const noexcept override { return Backend::poll; }

  private:
    static short events_for(std::uint8_t interest) noexcept {
        short events = 0;
        if (interest & kRead) events |= POLLIN;
        if (interest & kWrite) events |= POLLOUT;
#ifdef POLLRDHUP
        if (interest & kRead) events |= POLLRDHUP;
#endif
        return events;
    }

    int watch(int fd, std::uint8_t had, std::uint8_t want, Urgency urgency) noexcept override {
        if (want == 0) {
            remove(fd);
            return 0;
        }
        // poll(2) reports a bad fd only when it waits (POLLNVAL); a caller
        // that must know now asks the kernel directly.
        if (had == 0 && urgency == Urgency::now && ::fcntl(fd, F_GETFD) < 0) return errno;
        if (static_cast<std::size_t>(fd) >= index_.size()) index_.resize(fd + 1, kNone);
        if (index_[fd] == kNone) {
            index_[fd] = pollfds_.size();
            pollfds_.push_back(pollfd{fd, 0, 0});
        }
        pollfds_[index_[fd]].events = events_for(want);
        return 0;
    }

    void remove(int fd) noexcept {
        if (static_cast<std::size_t>(fd) >= index_.size() || index_[fd] == kNone) return;
        const std::size_t at = index_[fd];
        index_[fd] = kNone;
        if (at != pollfds_.size() - 1) {
            pollfds_[at] = pollfds_.back();
            index_[pollfds_[at].fd] = at;
        }
        pollfds_.pop_back();
    }

    void wait(std::int64_t timeout_ns) override {
#ifdef __linux__
        timespec storage{};
        int n = ::ppoll(pollfds_.data(), pollfds_.size(), wait_limit(timeout_ns, storage), nullptr);
#else
        int n = ::poll(pollfds_.data(), pollfds_.size(), wait_limit_ms(timeout_ns));
#endif
        if (n < 0) {
            if (errno == EINTR) return;
            throw_errno("poll");
        }
        // Collect first: running the ready operations changes what is
        // watched (lazily, but forget_fd on a failing fd removes at once).
        ready_.clear();
        for (const pollfd& entry : pollfds_) {
            if (n == 0) break;
            if (entry.revents == 0) continue;
            --n;
            ready_.push_back(entry);
        }
        for (const pollfd& entry : ready_) {
            const short e = entry.revents;
            if (entry.fd == wake_fd()) {
                drain_wakeup();
                continue;
            }
            if (e & POLLNVAL) {
                fail_fd(entry.fd, EBADF);
                continue;
            }
            bool peer_closed = (e & (POLLERR | POLLHUP)) != 0;
#ifdef POLLRDHUP
            peer_closed = peer_closed || (e & POLLRDHUP) != 0;
#endif
            ready(entry.fd, (e & POLLIN) != 0, (e & (POLLOUT | POLLERR | POLLHUP)) != 0,
                  peer_closed);
        }
    }

    static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
    std::vector<pollfd> pollfds_;     // [0] is the wake-up fd
    std::vector<std::size_t> index_;  // fd -> its entry in pollfds_, or kNone
    std::vector<pollfd> ready_;
};

}  // namespace

std::unique_ptr<IoBackend> make_poll_backend(LoopCore& loop) {
    return std::make_unique<PollBackend>(loop);
}

}  // namespace asyncio::detail
