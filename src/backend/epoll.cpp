// The epoll backend: the readiness core (readiness.cpp) plus registration
// and waiting with epoll.
//
// I/O operations use an fd edge-triggered: it is registered once and stays
// registered until forget_fd(), so the steady state makes no epoll_ctl call;
// operations wait only after EAGAIN, so the next edge is always reported.
// add_reader/add_writer need level-triggered semantics: while poll operations
// wait on an fd it is registered level-triggered with exactly the events
// someone waits for; the core applies those changes lazily, just before
// epoll_wait, so re-arming after each callback costs nothing.
#include <sys/epoll.h>
#include <sys/syscall.h>
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

class EpollBackend final : public ReadinessBackend {
  public:
    explicit EpollBackend(LoopCore& loop) : ReadinessBackend(loop, Trigger::edge) {
        epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd_ < 0) throw_errno("epoll_create1");
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = wake_fd();
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd(), &event) < 0) {
            const int error = errno;
            ::close(epoll_fd_);
            throw os_error(error, "epoll_ctl");
        }
        events_.resize(64);
    }

    ~EpollBackend() override { ::close(epoll_fd_); }

    Backend kind() const noexcept override { return Backend::epoll; }

  private:
    static std::uint32_t events_for(std::uint8_t interest) noexcept {
        if (interest & kEdge) return EPOLLET | EPOLLIN | EPOLLOUT | EPOLLRDHUP;
        std::uint32_t events = 0;
        if (interest & kRead) events |= EPOLLIN | EPOLLRDHUP;
        if (interest & kWrite) events |= EPOLLOUT;
        return events;
    }

    int watch(int fd, std::uint8_t had, std::uint8_t want, Urgency) noexcept override {
        const int op = had == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
        epoll_event event{};
        event.events = events_for(want);
        event.data.fd = fd;
        int r = ::epoll_ctl(epoll_fd_, op, fd, &event);
        // The kernel may know better than we do: an fd closed and reopened
        // without forget_fd(), or one already dropped with its last file.
        if (r < 0 && errno == EEXIST && op == EPOLL_CTL_ADD) {
            r = ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event);
        } else if (r < 0 && errno == ENOENT && op == EPOLL_CTL_MOD) {
            r = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
        } else if (r < 0 && (errno == ENOENT || errno == EBADF) && op == EPOLL_CTL_DEL) {
            r = 0;
        }
        return r < 0 ? errno : 0;
    }

    void wait(std::int64_t timeout_ns) override {
        const int n = epoll_wait_ns(timeout_ns);
        if (n < 0) {
            if (errno == EINTR) return;
            throw_errno("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const epoll_event& event = events_[i];
            if (event.data.fd == wake_fd()) {
                drain_wakeup();
                continue;
            }
            const std::uint32_t e = event.events;
            ready(event.data.fd, (e & EPOLLIN) != 0, (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0,
                  (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0);
        }
        if (static_cast<std::size_t>(n) == events_.size() && events_.size() < 4096) {
            events_.resize(events_.size() * 2);
        }
    }

    int epoll_wait_ns(std::int64_t timeout_ns) noexcept {
#ifdef SYS_epoll_pwait2
        if (use_pwait2_) {
            timespec storage{};
            const long n = ::syscall(SYS_epoll_pwait2, epoll_fd_, events_.data(),
                                     static_cast<int>(events_.size()),
                                     wait_limit(timeout_ns, storage), nullptr, 0);
            if (n >= 0 || errno != ENOSYS) return static_cast<int>(n);
            use_pwait2_ = false;
        }
#endif
        return ::epoll_wait(epoll_fd_, events_.data(), static_cast<int>(events_.size()),
                            wait_limit_ms(timeout_ns));
    }

    int epoll_fd_ = -1;
    bool use_pwait2_ = true;
    std::vector<epoll_event> events_;
};

}  // namespace

std::unique_ptr<IoBackend> make_epoll_backend(LoopCore& loop) {
    return std::make_unique<EpollBackend>(loop);
}

}  // namespace asyncio::detail
