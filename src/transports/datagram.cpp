// The datagram transport and create_datagram_endpoint
// (selector_events._SelectorDatagramTransport, base_events.create_datagram_endpoint),
// on the backend's operations.
#ifndef _WIN32
#include <sys/socket.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "asyncio/log.hpp"
#include "internal.hpp"
#include "transports/base.hpp"
#include "transports/stream.hpp"

namespace asyncio::detail {

namespace {

constexpr std::size_t kMaxDatagram = 256 * 1024;  // CPython's max_size
constexpr std::size_t kHeaderSize = 8;            // CPython counts this per buffered datagram

class DatagramTransportImpl final : public TransportBase<DatagramTransport> {
  public:
    DatagramTransportImpl(EventLoop& loop, Socket sock, std::optional<Address> remote)
        : TransportBase(loop, std::move(sock), &on_read, &on_write), remote_(std::move(remote)) {
        try {
            sockname_ = sock_.getsockname();
        } catch (const std::system_error&) {
        }
    }

    static std::shared_ptr<DatagramTransportImpl> start(EventLoop& loop, Socket sock,
                                                        std::shared_ptr<BaseProtocol> protocol,
                                                        std::optional<Address> remote,
                                                        Future<> waiter) {
        auto transport =
            std::make_shared<DatagramTransportImpl>(loop, std::move(sock), std::move(remote));
        transport->launch(transport, std::move(protocol), std::move(waiter));
        return transport;
    }

    // BaseTransport
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
        protocol_ = std::move(protocol);
        datagram_protocol_ = dynamic_cast<DatagramProtocol*>(protocol_.get());
    }
    std::any get_extra_info(std::string_view name) const override {
        if (name == "peername" && remote_) return *remote_;
        if (name == "sockname" && sockname_) return *sockname_;
        if (name == "socket") return sock_.fileno();
        return {};
    }

    // DatagramTransport
    void sendto(std::string_view data, std::optional<Address> address) override {
        if (remote_ && address && !(*address == *remote_)) {
            throw std::invalid_argument("Invalid address: must be None or " + remote_->to_string());
        }
        if (drop_write_after_lost()) return;
        if (queue_.empty() && !write_op_.pending && backend().completes_inline()) {
            std::int64_t r = send_now(data, address);
            if (r >= 0) return;
            if (r != -EAGAIN && r != -ENOBUFS) {
                error_received(r, "sendto");
                return;
            }
        }
        queue_.push_back({std::string(data), std::move(address)});
        buffered_ += data.size() + kHeaderSize;
        submit_write();
        maybe_pause_protocol();
    }

  private:
    struct Datagram {
        std::string data;
        std::optional<Address> address;
    };

    /// One sendmsg on the caller's data, synchronously (readiness backends).
    std::int64_t send_now(std::string_view data, const std::optional<Address>& address) noexcept {
        fill_write(data, address);
        if (backend().submit(write_op_)) return write_op_.result;
        backend().abandon(write_op_);  // it points at the caller's data
        return -EAGAIN;
    }

    void fill_write(std::string_view data, const std::optional<Address>& address) noexcept {
        write_iov_ = {const_cast<char*>(data.data()), data.size()};
        write_msg_ = {};
        if (address && !remote_) {
            write_to_ = *address;
            write_msg_.msg_name = write_to_.data();
            write_msg_.msg_namelen = write_to_.size();
        }
        write_msg_.msg_iov = &write_iov_;
        write_msg_.msg_iovlen = 1;
        write_op_.kind = IoOp::Kind::sendmsg;
        write_op_.fd = sock_.fileno();
        write_op_.msg = &write_msg_;
    }

    void submit_write() noexcept {
        if (write_op_.pending || queue_.empty()) return;
        fill_write(queue_.front().data, queue_.front().address);
        submit(write_op_);
    }

    static void on_write(ReadyNode& node, ReadyNode::Action action) noexcept {
        auto& self = complete<DatagramTransportImpl>(node);
        self.abandoned_.clear();
        if (action == ReadyNode::Action::run) self.handle_write(self.write_op_.result);
        self.maybe_release();
    }

    void handle_write(std::int64_t result) noexcept {
        if (lost() || result == -ECANCELED) return;
        if (result == -EAGAIN || result == -ENOBUFS) {
            submit_write();
            return;
        }
        const Datagram sent = std::move(queue_.front());
        queue_.pop_front();
        buffered_ -= sent.data.size() + kHeaderSize;
        if (result < 0) {
            error_received(result, "sendto");  // UDP errors do not end the endpoint...
            if (lost()) return;                // ...but a fatal one closed it, with its error
        }
        maybe_resume_protocol();
        if (!queue_.empty()) {
            submit_write();
        } else {
            finish_closing();  // if closing
        }
    }

    void submit_read() noexcept {
        if (read_op_.pending || is_closing()) return;
        if (!read_buffer_) read_buffer_.reset(new char[kMaxDatagram]);
        read_iov_ = {read_buffer_.get(), kMaxDatagram};
        read_msg_ = {};
        read_msg_.msg_name = from_.data();
        read_msg_.msg_namelen = Address::capacity();
        read_msg_.msg_iov = &read_iov_;
        read_msg_.msg_iovlen = 1;
        read_op_.kind = IoOp::Kind::recvmsg;
        read_op_.fd = sock_.fileno();
        read_op_.msg = &read_msg_;
        submit(read_op_);
    }

    static void on_read(ReadyNode& node, ReadyNode::Action action) noexcept {
        auto& self = complete<DatagramTransportImpl>(node);
        if (action == ReadyNode::Action::run) self.handle_read(self.read_op_.result);
        self.maybe_release();
    }

    void handle_read(std::int64_t result) noexcept {
        if (is_closing() || result == -ECANCELED) return;
        if (result < 0 && result != -EAGAIN) {
            error_received(result, "recvfrom");
        } else if (result >= 0 && datagram_protocol_ != nullptr) {
            from_.set_size(library_key, read_msg_.msg_namelen);
            const Address& sender = remote_ && from_.size() == 0 ? *remote_ : from_;
            try {
                datagram_protocol_->datagram_received(
                    std::string_view(read_buffer_.get(), static_cast<std::size_t>(result)), sender);
            } catch (...) {
                fatal_error(std::current_exception(),
                            "Fatal error: protocol.datagram_received() call failed.");
                return;
            }
        }
        submit_read();
    }

    /// An error of `call` ("sendto", "recvfrom"): the protocol's
    /// error_received, unless the socket itself is gone.
    void error_received(std::int64_t result, const char* call) noexcept {
        if (result == -EBADF || result == -ENOTSOCK) {
            fatal_error(result_error(result, call), "Fatal error on datagram transport");
            return;
        }
        if (datagram_protocol_ == nullptr) return;
        try {
            datagram_protocol_->error_received(result_error(result, call));
        } catch (...) {
            report("Exception in protocol.error_received()", std::current_exception());
        }
    }

    // TransportBase
    void start_reading() noexcept override { submit_read(); }
    void drop_write_buffer(bool in_flight) noexcept override {
        // A send in flight still points into the queue's front: it goes
        // when the send's completion comes (a deque moves without moving
        // its elements).
        if (in_flight) abandoned_ = std::move(queue_);
        queue_.clear();
    }
    void connection_lost_done() noexcept override { datagram_protocol_ = nullptr; }
    void drop_references() noexcept override { datagram_protocol_ = nullptr; }

    std::optional<Address> remote_, sockname_;
    DatagramProtocol* datagram_protocol_ = nullptr;
    std::unique_ptr<char[]> read_buffer_;
    detail::iovec read_iov_{};
    detail::msghdr read_msg_{};
    Address from_;
    std::deque<Datagram> queue_;
    std::deque<Datagram> abandoned_;  // what abort() dropped while a send read it
    detail::iovec write_iov_{};
    detail::msghdr write_msg_{};
    Address write_to_;
};

/// The transport over `sock` (bound, and connected to `remote` if set),
/// once connection_made has run.
Coro<OpenedTransport> start_datagram(EventLoop& loop, ErasedProtocolFactory factory, Socket sock,
                                     std::optional<Address> remote) {
    std::shared_ptr<BaseProtocol> protocol = make_protocol(factory);
    Future<> made = loop.create_future();
    auto transport =
        DatagramTransportImpl::start(loop, std::move(sock), protocol, std::move(remote), made);
    return opened_when_made(std::move(made), std::move(transport), std::move(protocol));
}

}  // namespace

Coro<OpenedTransport> open_datagram(EventLoop& loop, ErasedProtocolFactory factory,
                                    DatagramOptions opts) {
    int family = opts.family;
    if (opts.local_addr) family = opts.local_addr->family();
    if (opts.remote_addr) {
        if (opts.local_addr && opts.remote_addr->family() != family) {
            throw std::invalid_argument("local_addr and remote_addr must be of the same family");
        }
        family = opts.remote_addr->family();
    }
    if (family == AF_UNSPEC) throw std::invalid_argument("unexpected address family");
    Socket sock(family, SOCK_DGRAM, opts.proto);
    if (opts.reuse_port) set_reuse_port(sock);
    if (opts.allow_broadcast) sock.setsockopt(SOL_SOCKET, SO_BROADCAST, 1);
    if (opts.local_addr) {
        if (family == AF_UNIX) {
            const std::string path = opts.local_addr->host();
            struct ::stat info {};
            if (!path.empty() && path.front() != '@' && ::stat(path.c_str(), &info) == 0 &&
                is_socket_file(info)) {
                ::unlink(path.c_str());  // a stale socket file
            }
        }
        sock.bind(*opts.local_addr);
    }
    std::optional<Address> remote;
    if (opts.remote_addr) {
        if (!opts.allow_broadcast) co_await loop.sock_connect(sock, *opts.remote_addr);
        remote = opts.remote_addr;
    }
    co_return co_await start_datagram(loop, std::move(factory), std::move(sock), std::move(remote));
}

Coro<OpenedTransport> open_datagram_on(EventLoop& loop, ErasedProtocolFactory factory,
                                       Socket sock) {
    if (sock.type() != SOCK_DGRAM) {
        throw std::invalid_argument("A datagram socket was expected, got fd=" +
                                    std::to_string(sock.fileno()));
    }
    co_return co_await start_datagram(loop, std::move(factory), std::move(sock), std::nullopt);
}

}  // namespace asyncio::detail
