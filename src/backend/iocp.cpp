// The IOCP backend (Windows): operations are overlapped calls whose
// completions arrive on one I/O completion port, as in CPython's
// ProactorEventLoop (Lib/asyncio/windows_events.py, Modules/overlapped.c).
//
// The operations are the library's IoOp, POSIX-shaped, translated here: an
// `int fd` carries the SOCKET or HANDLE (as CPython's fileno() does), an
// msghdr's iovecs become WSABUFs, errors become errno values. Each op gets
// a record holding its OVERLAPPED and what the call needs beside the op's
// own memory (WSABUFs, flags, the accepted socket); the record stays with
// the op across submissions, so steady-state I/O allocates nothing.
//
// Ownership. Windows writes an op's buffers and its OVERLAPPED until the
// completion packet is dequeued, whatever happens to the owner; so a record
// is freed only when its packet has been dequeued (or, for an op abandoned
// without a keepalive, once HasOverlappedIoCompleted says the kernel has let
// go of the owner's memory, the record itself still waiting for its packet).
//
// What Windows cannot do here: poll_readable/poll_writable (add_reader and
// add_writer raise NotImplementedError, as CPython's proactor does).
// sendfile is TransmitFile, as in CPython's proactor; a source that is not
// a disk file gets -EINVAL, and the library reads and sends instead.
#include "asyncio/detail/native.hpp"  // winsock2.h before mswsock.h

#include <io.h>
#include <mswsock.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <new>
#include <system_error>
#include <unordered_set>
#include <vector>

#include "asyncio/backend.hpp"
#include "backend/buffer_pool.hpp"
#include "backend/readiness.hpp"
#include "internal.hpp"

namespace asyncio::detail {
namespace {

/// The winsock extensions that are reached through WSAIoctl.
struct Extensions {
    LPFN_ACCEPTEX accept_ex = nullptr;
    LPFN_GETACCEPTEXSOCKADDRS get_accept_ex_sockaddrs = nullptr;
    LPFN_CONNECTEX connect_ex = nullptr;
    LPFN_TRANSMITFILE transmit_file = nullptr;
};

const Extensions& extensions() {
    static const Extensions loaded = [] {
        ensure_winsock();
        Extensions out;
        const SOCKET probe = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0,
                                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (probe == INVALID_SOCKET) throw_socket_error("socket");
        const auto load = [probe](GUID guid, auto& function) {
            DWORD bytes = 0;
            if (::WSAIoctl(probe, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &function,
                           sizeof function, &bytes, nullptr, nullptr) != 0) {
                const int error = socket_error();
                ::closesocket(probe);
                throw os_error(error, "WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)");
            }
        };
        load(WSAID_ACCEPTEX, out.accept_ex);
        load(WSAID_GETACCEPTEXSOCKADDRS, out.get_accept_ex_sockaddrs);
        load(WSAID_CONNECTEX, out.connect_ex);
        load(WSAID_TRANSMITFILE, out.transmit_file);
        ::closesocket(probe);
        return out;
    }();
    return loaded;
}

constexpr DWORD kAcceptAddressSize = sizeof(::sockaddr_storage) + 16;  // AcceptEx's rule
constexpr std::size_t kMaxBuffers = 64;  // the stream transport's gathering limit

/// A record per op: what Windows holds while the op is in flight.
struct Record {
    OVERLAPPED overlapped{};  // first: the packet's OVERLAPPED* is the record
    IoOp* op = nullptr;       // null once abandoned
    Keepalive keep;           // what an abandoned op lent
    Record* prev = nullptr;   // the backend's list of records in flight
    Record* next = nullptr;
    bool in_flight = false;
    bool is_socket = true;
    bool forgotten = false;  // its fd was closed under it: report EBADF
    DWORD flags = 0;
    INT name_length = 0;
    SOCKET accepted = INVALID_SOCKET;
    std::int32_t buffer_id = -1;  // the provided buffer being read into
    WSABUF buffers[kMaxBuffers]{};
    char accept_addresses[2 * kAcceptAddressSize];

    static Record& of(OVERLAPPED* overlapped) noexcept {
        return *reinterpret_cast<Record*>(overlapped);
    }
    HANDLE handle() const noexcept {
        return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(op_fd));
    }
    int op_fd = -1;
};
static_assert(offsetof(Record, overlapped) == 0);

class IocpBackend final : public IoBackend {
  public:
    explicit IocpBackend(LoopCore& loop) : IoBackend(loop) {
        ensure_winsock();
        static_cast<void>(extensions());  // fail here, not at the first accept
        port_ = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
        if (port_ == nullptr)
            throw os_error(errno_from_windows(::GetLastError()), "CreateIoCompletionPort");
    }

    ~IocpBackend() override {
        // shut_down() has drained what was in flight; records left are idle.
        while (in_flight_ != nullptr) {
            Record* record = in_flight_;
            unlink(*record);
            delete record;
        }
        for (Record* record : spare_)
            delete record;
        ::CloseHandle(port_);
    }

    Backend kind() const noexcept override { return Backend::iocp; }
    bool watches_readiness() const noexcept override { return false; }

    bool submit(IoOp& op) noexcept override {
        Record* record = record_for(op);
        if (record == nullptr) return finish_inline(op, -ENOMEM);
        if (record->buffer_id >= 0) {  // the previous data was consumed
            buffers_.give(record->buffer_id);
            record->buffer_id = -1;
            op.buffer_id = -1;
        }
        if (op.fd < 0) return finish_inline(op, -EBADF);
        record->op_fd = op.fd;
        record->forgotten = false;
        record->overlapped = OVERLAPPED{};
        const std::int64_t started = start(op, *record);
        if (started != kPending) return finish_inline(op, started);
        record->in_flight = true;
        link(*record);
        op.in_flight = true;
        return false;
    }

    bool cancel(IoOp& op) noexcept override {
        auto* record = static_cast<Record*>(op.backend_data);
        if (!op.in_flight || record == nullptr) return false;
        ::CancelIoEx(record->handle(), &record->overlapped);
        return true;
    }

    void abandon(IoOp& op, Keepalive keep) noexcept override {
        auto* record = static_cast<Record*>(op.backend_data);
        op.backend_data = nullptr;
        op.buffer_id = -1;
        if (record == nullptr) return;
        if (!op.in_flight) {
            destroy(record);
            return;
        }
        op.in_flight = false;
        record->op = nullptr;
        ::CancelIoEx(record->handle(), &record->overlapped);
        if (keep) {
            record->keep = std::move(keep);
            return;
        }
        // No keepalive: the owner's memory goes when we return, so wait
        // until the kernel has finished with it. The packet still comes;
        // the record waits for it.
        while (!HasOverlappedIoCompleted(&record->overlapped))
            ::SwitchToThread();
    }

    void poll(std::int64_t timeout_ns) override { dequeue(wait_limit_ms(timeout_ns)); }

    void wakeup() noexcept override {
        if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
            ::PostQueuedCompletionStatus(port_, 0, 0, nullptr);
        }
    }

    void forget_fd(int fd) noexcept override {
        associated_.erase(fd);
        // The contract says the ops still in flight complete with EBADF:
        // cancelled now, they report it when their packets come.
        for (Record* record = in_flight_; record != nullptr; record = record->next) {
            if (record->op_fd != fd) continue;
            record->forgotten = true;
            ::CancelIoEx(record->handle(), &record->overlapped);
        }
    }

    bool shut_down() noexcept override {
        if (in_flight_ == nullptr) return false;
        for (Record* record = in_flight_; record != nullptr; record = record->next) {
            ::CancelIoEx(record->handle(), &record->overlapped);
        }
        const std::size_t before = completed_;
        while (in_flight_ != nullptr) {
            try {
                dequeue(-1);
            } catch (const std::system_error&) {
                break;  // the port itself failed: nothing more will come
            }
        }
        return completed_ != before;
    }

  private:
    static constexpr std::int64_t kPending = INT64_MIN;
    static constexpr std::size_t kSpareRecords = 256;

    Record* record_for(IoOp& op) noexcept {
        auto* record = static_cast<Record*>(op.backend_data);
        if (record == nullptr) {
            if (!spare_.empty()) {
                record = spare_.back();
                spare_.pop_back();
            } else {
                record = new (std::nothrow) Record;
                if (record == nullptr) return nullptr;
            }
            op.backend_data = record;
        }
        record->op = &op;
        return record;
    }

    bool finish_inline(IoOp& op, std::int64_t result) noexcept {
        op.result = result;
        op.in_flight = false;
        return true;
    }

    /// Ties `fd` to the port before its first overlapped call; an error
    /// (a handle tied to another loop's port, say) or 0.
    int associate(int fd) noexcept {
        if (associated_.count(fd) != 0) return 0;
        const auto handle = reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd));
        if (::CreateIoCompletionPort(handle, port_, 0, 0) == nullptr) {
            return errno_from_windows(::GetLastError());
        }
        try {
            associated_.insert(fd);
        } catch (const std::bad_alloc&) {
            return ENOMEM;
        }
        return 0;
    }

    /// Starts the overlapped call: kPending, or the result of a call that
    /// failed (or finished) without queuing a packet.
    std::int64_t start(IoOp& op, Record& record) noexcept {
        const bool is_socket = op.kind != IoOp::Kind::read && op.kind != IoOp::Kind::write &&
                               op.kind != IoOp::Kind::read_provided;
        record.is_socket = is_socket;
        switch (op.kind) {
            case IoOp::Kind::poll_readable:
            case IoOp::Kind::poll_writable:
                return -EOPNOTSUPP;
            default:
                break;
        }
        if (const int error = associate(op.fd); error != 0) return -error;
        const auto sock = static_cast<SOCKET>(op.fd);
        int rc = 0;
        record.flags = 0;
        switch (op.kind) {
            case IoOp::Kind::recv:
            case IoOp::Kind::recv_provided:
            case IoOp::Kind::read:
            case IoOp::Kind::read_provided: {
                char* into = static_cast<char*>(op.buf);
                std::size_t size = op.len;
                if (op.kind == IoOp::Kind::recv_provided || op.kind == IoOp::Kind::read_provided) {
                    try {
                        record.buffer_id = buffers_.take();
                    } catch (const std::bad_alloc&) {
                        return -ENOMEM;
                    }
                    into = buffers_.data(record.buffer_id);
                    size = ProvidedBuffers::kSize;
                }
                if (!is_socket) {
                    const BOOL ok =
                        ::ReadFile(record.handle(), into, clamp(size), nullptr, &record.overlapped);
                    return pending_or_error(ok ? 0 : -1, record, /*eof_is_zero=*/true);
                }
                record.buffers[0] = WSABUF{clamp(size), into};
                record.flags = static_cast<DWORD>(op.flags);
                rc = ::WSARecv(sock, record.buffers, 1, nullptr, &record.flags, &record.overlapped,
                               nullptr);
                return pending_or_error(rc, record, /*eof_is_zero=*/true);
            }
            case IoOp::Kind::write: {
                const BOOL ok = ::WriteFile(record.handle(), op.buf, clamp(op.len), nullptr,
                                            &record.overlapped);
                return pending_or_error(ok ? 0 : -1, record, /*eof_is_zero=*/false);
            }
            case IoOp::Kind::send:
                record.buffers[0] = WSABUF{clamp(op.len), static_cast<char*>(op.buf)};
                rc = ::WSASend(sock, record.buffers, 1, nullptr, static_cast<DWORD>(op.flags),
                               &record.overlapped, nullptr);
                return pending_or_error(rc, record, /*eof_is_zero=*/false);
            case IoOp::Kind::sendmsg:
            case IoOp::Kind::recvmsg: {
                const msghdr& msg = *op.msg;
                const std::size_t count =
                    msg.msg_iovlen < kMaxBuffers ? msg.msg_iovlen : kMaxBuffers;
                for (std::size_t i = 0; i < count; ++i) {
                    record.buffers[i] = WSABUF{clamp(msg.msg_iov[i].iov_len),
                                               static_cast<char*>(msg.msg_iov[i].iov_base)};
                }
                const auto n = static_cast<DWORD>(count);
                if (op.kind == IoOp::Kind::sendmsg) {
                    rc = ::WSASendTo(sock, record.buffers, n, nullptr, static_cast<DWORD>(op.flags),
                                     static_cast<const ::sockaddr*>(msg.msg_name),
                                     msg.msg_name != nullptr ? msg.msg_namelen : 0,
                                     &record.overlapped, nullptr);
                } else {
                    record.flags = static_cast<DWORD>(op.flags);
                    record.name_length = msg.msg_namelen;
                    rc = ::WSARecvFrom(sock, record.buffers, n, nullptr, &record.flags,
                                       static_cast<::sockaddr*>(msg.msg_name),
                                       msg.msg_name != nullptr ? &record.name_length : nullptr,
                                       &record.overlapped, nullptr);
                }
                return pending_or_error(rc, record, /*eof_is_zero=*/false);
            }
            case IoOp::Kind::accept:
                return start_accept(sock, record);
            case IoOp::Kind::connect:
                return start_connect(op, sock, record);
            case IoOp::Kind::sendfile:
                return start_transmit_file(op, sock, record);
            default:
                return -EOPNOTSUPP;
        }
    }

    std::int64_t start_accept(SOCKET listener, Record& record) noexcept {
        WSAPROTOCOL_INFOW info{};
        int length = sizeof info;
        if (::getsockopt(listener, SOL_SOCKET, SO_PROTOCOL_INFOW, reinterpret_cast<char*>(&info),
                         &length) != 0) {
            return -socket_error();
        }
        record.accepted = ::WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO,
                                       &info, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (record.accepted == INVALID_SOCKET) return -socket_error();
        DWORD bytes = 0;
        if (!extensions().accept_ex(listener, record.accepted, record.accept_addresses, 0,
                                    kAcceptAddressSize, kAcceptAddressSize, &bytes,
                                    &record.overlapped) &&
            ::WSAGetLastError() != ERROR_IO_PENDING) {
            const int error = socket_error();
            ::closesocket(std::exchange(record.accepted, INVALID_SOCKET));
            return -error;
        }
        return kPending;
    }

    std::int64_t start_connect(IoOp& op, SOCKET sock, Record& record) noexcept {
        int type = 0;
        int length = sizeof type;
        ::getsockopt(sock, SOL_SOCKET, SO_TYPE, reinterpret_cast<char*>(&type), &length);
        if (type != SOCK_STREAM || op.addr->sa_family == AF_UNIX) {
            // ConnectEx is for TCP only. A datagram socket's connect only
            // sets its peer, and an AF_UNIX one connects locally: at once.
            if (::connect(sock, op.addr, op.addrlen) == 0) return 0;
            return -socket_error();
        }
        // ConnectEx wants a bound socket.
        ::sockaddr_storage local{};
        int local_length = sizeof local;
        if (::getsockname(sock, reinterpret_cast<::sockaddr*>(&local), &local_length) != 0) {
            local = {};
            local.ss_family = op.addr->sa_family;
            local_length =
                op.addr->sa_family == AF_INET6 ? sizeof(::sockaddr_in6) : sizeof(::sockaddr_in);
            if (::bind(sock, reinterpret_cast<::sockaddr*>(&local), local_length) != 0) {
                return -socket_error();
            }
        }
        if (!extensions().connect_ex(sock, op.addr, op.addrlen, nullptr, 0, nullptr,
                                     &record.overlapped) &&
            ::WSAGetLastError() != ERROR_IO_PENDING) {
            return -socket_error();
        }
        return kPending;
    }

    /// TransmitFile reads the file itself, from the OVERLAPPED's offset, so
    /// the file's own position is left alone, as sendfile(2) with an offset.
    std::int64_t start_transmit_file(IoOp& op, SOCKET sock, Record& record) noexcept {
        const auto file = reinterpret_cast<HANDLE>(::_get_osfhandle(op.in_fd));
        if (file == INVALID_HANDLE_VALUE) return -EBADF;
        if (::GetFileType(file) != FILE_TYPE_DISK) return -EINVAL;  // not available: fall back
        const auto offset = static_cast<std::uint64_t>(op.offset);
        record.overlapped.Offset = static_cast<DWORD>(offset);
        record.overlapped.OffsetHigh = static_cast<DWORD>(offset >> 32);
        // At most 2^31 - 2 bytes per call, by TransmitFile's documentation.
        const DWORD count = op.len > 0x7ffffffe ? 0x7ffffffe : static_cast<DWORD>(op.len);
        const BOOL ok =
            extensions().transmit_file(sock, file, count, 0, &record.overlapped, nullptr, 0);
        return pending_or_error(ok ? 0 : -1, record, /*eof_is_zero=*/false);
    }

    static DWORD clamp(std::size_t size) noexcept {
        return size > 0x7fffffff ? 0x7fffffff : static_cast<DWORD>(size);
    }

    /// After an overlapped call returned `rc` (0: done, its packet queued;
    /// else failed or pending).
    std::int64_t pending_or_error(int rc, Record& record, bool eof_is_zero) noexcept {
        if (rc == 0) return kPending;
        const DWORD error =
            record.is_socket ? static_cast<DWORD>(::WSAGetLastError()) : ::GetLastError();
        if (error == ERROR_IO_PENDING) return kPending;
        if (record.buffer_id >= 0) {
            buffers_.give(record.buffer_id);
            record.buffer_id = -1;
        }
        if (eof_is_zero && (error == ERROR_HANDLE_EOF || error == ERROR_BROKEN_PIPE)) return 0;
        return -errno_from_windows(error);
    }

    /// Dequeues completion packets (waiting up to `timeout_ms`, -1: no
    /// limit) and schedules the ops they finish.
    void dequeue(int timeout_ms) {
        OVERLAPPED_ENTRY entries[64];
        ULONG count = 0;
        const DWORD wait = timeout_ms < 0 ? INFINITE : static_cast<DWORD>(timeout_ms);
        if (!::GetQueuedCompletionStatusEx(port_, entries, 64, &count, wait, FALSE)) {
            const DWORD error = ::GetLastError();
            if (error == WAIT_TIMEOUT) return;
            throw os_error(errno_from_windows(error), "GetQueuedCompletionStatusEx");
        }
        for (ULONG i = 0; i < count; ++i) {
            if (entries[i].lpOverlapped == nullptr) {
                wake_pending_.store(false, std::memory_order_release);
                continue;
            }
            finish(Record::of(entries[i].lpOverlapped), entries[i].dwNumberOfBytesTransferred);
        }
    }

    void finish(Record& record, DWORD bytes) noexcept {
        unlink(record);
        record.in_flight = false;
        std::int64_t result = bytes;
        DWORD transferred = 0;
        BOOL ok;
        if (record.is_socket) {
            DWORD flags = 0;
            ok = ::WSAGetOverlappedResult(static_cast<SOCKET>(record.op_fd), &record.overlapped,
                                          &transferred, FALSE, &flags);
        } else {
            ok = ::GetOverlappedResult(record.handle(), &record.overlapped, &transferred, FALSE);
        }
        if (!ok) {
            const DWORD error =
                record.is_socket ? static_cast<DWORD>(::WSAGetLastError()) : ::GetLastError();
            if (!record.is_socket && (error == ERROR_HANDLE_EOF || error == ERROR_BROKEN_PIPE)) {
                result = 0;  // a pipe's writer is gone: end of file
            } else {
                result = -errno_from_windows(error);
                if (record.forgotten && result == -ECANCELED) result = -EBADF;
            }
        }
        IoOp* op = record.op;
        if (op == nullptr) {  // abandoned: only the record is left to free
            destroy(&record);
            return;
        }
        deliver(*op, record, result);
        ++completed_;
        complete(*op, result);
    }

    /// Fills in what the op's owner reads besides the result.
    void deliver(IoOp& op, Record& record, std::int64_t& result) noexcept {
        switch (op.kind) {
            case IoOp::Kind::recv_provided:
            case IoOp::Kind::read_provided:
                if (result > 0) {
                    op.buffer_id = record.buffer_id;
                    op.buf = buffers_.data(record.buffer_id);
                    op.len = ProvidedBuffers::kSize;
                } else {
                    buffers_.give(record.buffer_id);
                    record.buffer_id = -1;
                }
                break;
            case IoOp::Kind::recvmsg:
                if (result >= 0) {
                    op.msg->msg_namelen = record.name_length;
                    op.msg->msg_flags = 0;
                }
                break;
            case IoOp::Kind::accept:
                result = finish_accept(op, record, result);
                break;
            case IoOp::Kind::connect:
                if (result == 0) {
                    ::setsockopt(static_cast<SOCKET>(op.fd), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT,
                                 nullptr, 0);
                }
                break;
            default:
                break;
        }
    }

    std::int64_t finish_accept(IoOp& op, Record& record, std::int64_t result) noexcept {
        const SOCKET accepted = std::exchange(record.accepted, INVALID_SOCKET);
        if (result < 0) {
            ::closesocket(accepted);
            return result;
        }
        auto listener = static_cast<SOCKET>(op.fd);
        if (::setsockopt(accepted, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                         reinterpret_cast<const char*>(&listener), sizeof listener) != 0) {
            const int error = socket_error();
            ::closesocket(accepted);
            return -error;
        }
        u_long on = 1;
        ::ioctlsocket(accepted, FIONBIO, &on);
        if (op.addr != nullptr) {
            ::sockaddr* local = nullptr;
            ::sockaddr* remote = nullptr;
            INT local_length = 0;
            INT remote_length = 0;
            extensions().get_accept_ex_sockaddrs(record.accept_addresses, 0, kAcceptAddressSize,
                                                 kAcceptAddressSize, &local, &local_length, &remote,
                                                 &remote_length);
            const INT copied = remote_length < op.addrlen ? remote_length : op.addrlen;
            if (remote != nullptr && copied > 0)
                std::memcpy(op.addr, remote, static_cast<std::size_t>(copied));
            op.addrlen = remote_length;
        }
        return static_cast<std::int64_t>(accepted);
    }

    /// Done with `record`: kept for the next op (an awaiter's op lives only
    /// for one operation), up to a bound.
    void destroy(Record* record) noexcept {
        if (record->buffer_id >= 0) buffers_.give(record->buffer_id);
        if (record->accepted != INVALID_SOCKET) ::closesocket(record->accepted);
        record->buffer_id = -1;
        record->accepted = INVALID_SOCKET;
        record->op = nullptr;
        record->keep.reset();
        if (spare_.size() < kSpareRecords) {
            try {
                spare_.push_back(record);
                return;
            } catch (const std::bad_alloc&) {
            }
        }
        delete record;
    }

    void link(Record& record) noexcept {
        record.prev = nullptr;
        record.next = in_flight_;
        if (in_flight_ != nullptr) in_flight_->prev = &record;
        in_flight_ = &record;
    }

    void unlink(Record& record) noexcept {
        if (record.prev != nullptr) {
            record.prev->next = record.next;
        } else if (in_flight_ == &record) {
            in_flight_ = record.next;
        }
        if (record.next != nullptr) record.next->prev = record.prev;
        record.prev = record.next = nullptr;
    }

    HANDLE port_ = nullptr;
    std::atomic<bool> wake_pending_{false};
    Record* in_flight_ = nullptr;
    std::size_t completed_ = 0;
    std::unordered_set<int> associated_;
    std::vector<Record*> spare_;
    ProvidedBuffers buffers_;
};

}  // namespace

std::unique_ptr<IoBackend> make_iocp_backend(LoopCore& loop) {
    return std::make_unique<IocpBackend>(loop);
}

}  // namespace asyncio::detail
