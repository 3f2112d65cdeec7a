// The datagram transport and create_datagram_endpoint
// (selector_events._SelectorDatagramTransport, base_events.create_datagram_endpoint),
// on the backend's operations.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "asyncio/log.hpp"
#include "transports/stream.hpp"

namespace asyncio::detail {

namespace {

constexpr std::size_t kMaxDatagram = 256 * 1024;  // CPython's max_size
constexpr std::size_t kHeaderSize = 8;            // CPython counts this per buffered datagram

class DatagramTransportImpl final : public DatagramTransport, public LoopResource {
  public:
    DatagramTransportImpl(EventLoop& loop, Socket sock, std::optional<Address> remote)
        : loop_(&loop), sock_(std::move(sock)), remote_(std::move(remote)) {
        sock_.attach(loop);
        read_op_.owner = this;
        write_op_.owner = this;
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
        transport->self_ = transport;
        transport->set_protocol(std::move(protocol));
        loop.register_resource(*transport);
        loop.call_soon([transport, waiter]() mutable {
            if (transport->protocol_ && !transport->lost_delivered_) {
                try {
                    transport->protocol_->connection_made(*transport);
                } catch (...) {
                    transport->report("Exception in protocol.connection_made()",
                                      std::current_exception());
                }
                transport->submit_read();
            }
            if (!waiter.done()) waiter.set_result();
        });
        return transport;
    }

    // BaseTransport
    void close() override {
        if (closing_) return;
        closing_ = true;
        if (reading_) backend().cancel(read_op_);
        if (queue_.empty()) {
            lost_ = true;
            schedule_connection_lost(nullptr);
        }
    }
    bool is_closing() const override { return closing_; }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override {
        protocol_ = std::move(protocol);
        datagram_protocol_ = dynamic_cast<DatagramProtocol*>(protocol_.get());
    }
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
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
        if (lost_) {
            if (++sends_after_lost_ >= 5)
                log_message(LogLevel::warning, "socket.send() raised exception.");
            return;
        }
        if (queue_.empty() && !writing_ && backend().completes_inline()) {
            std::int64_t r = send_now(data, address);
            if (r >= 0) return;
            if (r != -EAGAIN && r != -ENOBUFS) {
                error_received(r);
                return;
            }
        }
        queue_.push_back({std::string(data), std::move(address)});
        buffered_ += data.size() + kHeaderSize;
        submit_write();
        maybe_pause_protocol();
    }
    void abort() override { force_close(nullptr); }
    std::size_t get_write_buffer_size() const override { return buffered_; }

    // LoopResource
    void loop_closing() noexcept override {
        // What the ops in flight point into (buffers, msghdrs, addresses) is
        // this transport: the backend keeps it until the kernel lets go.
        for (Op* op : {&read_op_, &write_op_}) {
            if (!op->in_flight) continue;
            backend().abandon(*op, self_);
            --pending_ops_;
            (op == &read_op_ ? reading_ : writing_) = false;
        }
        closing_ = lost_ = lost_delivered_ = true;
        protocol_.reset();
        datagram_protocol_ = nullptr;
        maybe_release();
    }

  private:
    struct Op : IoOp {
        explicit Op(Fn fn) noexcept : IoOp(fn) {}
        DatagramTransportImpl* owner = nullptr;
    };
    struct Datagram {
        std::string data;
        std::optional<Address> address;
    };

    IoBackend& backend() const noexcept { return loop_->backend(); }

    void report(const char* message, std::exception_ptr error) noexcept {
        ExceptionContext context;
        context.message = message;
        context.exception = std::move(error);
        loop_->call_exception_handler(context);
    }

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
        if (writing_ || queue_.empty()) return;
        fill_write(queue_.front().data, queue_.front().address);
        writing_ = true;
        ++pending_ops_;
        if (backend().submit(write_op_)) loop_->schedule(write_op_);
    }

    static void on_write(ReadyNode& node, ReadyNode::Action action) noexcept {
        auto* self = static_cast<Op&>(static_cast<IoOp&>(static_cast<Waiter&>(node))).owner;
        self->writing_ = false;
        --self->pending_ops_;
        self->abandoned_.clear();
        if (action == ReadyNode::Action::run) self->handle_write(self->write_op_.result);
        self->maybe_release();
    }

    void handle_write(std::int64_t result) noexcept {
        if (lost_ || result == -ECANCELED) return;
        if (result == -EAGAIN || result == -ENOBUFS) {
            submit_write();
            return;
        }
        const Datagram sent = std::move(queue_.front());
        queue_.pop_front();
        buffered_ -= sent.data.size() + kHeaderSize;
        if (result < 0) {
            error_received(result);  // UDP errors do not end the endpoint...
            if (lost_) return;       // ...but a fatal one closed it, with its error
        }
        maybe_resume_protocol();
        if (!queue_.empty()) {
            submit_write();
        } else if (closing_) {
            lost_ = true;
            call_connection_lost(nullptr);
        }
    }

    void submit_read() noexcept {
        if (reading_ || closing_) return;
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
        reading_ = true;
        ++pending_ops_;
        if (backend().submit(read_op_)) loop_->schedule(read_op_);
    }

    static void on_read(ReadyNode& node, ReadyNode::Action action) noexcept {
        auto* self = static_cast<Op&>(static_cast<IoOp&>(static_cast<Waiter&>(node))).owner;
        self->reading_ = false;
        --self->pending_ops_;
        if (action == ReadyNode::Action::run) self->handle_read(self->read_op_.result);
        self->maybe_release();
    }

    void handle_read(std::int64_t result) noexcept {
        if (lost_ || closing_ || result == -ECANCELED) return;
        if (result < 0 && result != -EAGAIN) {
            error_received(result);
        } else if (result >= 0 && datagram_protocol_ != nullptr) {
            from_.set_size(read_msg_.msg_namelen);
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

    void error_received(std::int64_t result) noexcept {
        if (result == -EBADF || result == -ENOTSOCK) {
            fatal_error(std::make_exception_ptr(std::system_error(
                            static_cast<int>(-result), std::system_category(), "datagram")),
                        "Fatal error on datagram transport");
            return;
        }
        if (datagram_protocol_ == nullptr) return;
        try {
            datagram_protocol_->error_received(std::make_exception_ptr(
                std::system_error(static_cast<int>(-result), std::system_category(), "datagram")));
        } catch (...) {
            report("Exception in protocol.error_received()", std::current_exception());
        }
    }

    void maybe_pause_protocol() noexcept {
        if (buffered_ <= high_ || protocol_paused_ || !protocol_) return;
        protocol_paused_ = true;
        try {
            protocol_->pause_writing();
        } catch (...) {
            report("protocol.pause_writing() failed", std::current_exception());
        }
    }

    void maybe_resume_protocol() noexcept {
        if (!protocol_paused_ || buffered_ > low_ || !protocol_) return;
        protocol_paused_ = false;
        try {
            protocol_->resume_writing();
        } catch (...) {
            report("protocol.resume_writing() failed", std::current_exception());
        }
    }

    void fatal_error(std::exception_ptr error, const char* message) noexcept {
        report(message, error);
        force_close(std::move(error));
    }

    void force_close(std::exception_ptr error) noexcept {
        if (lost_) return;
        // A send in flight still points into the queue's front: it goes
        // when the send's completion comes (a deque moves without moving
        // its elements).
        if (writing_) abandoned_ = std::move(queue_);
        queue_.clear();
        buffered_ = 0;
        if (writing_) backend().cancel(write_op_);
        if (!closing_) {
            closing_ = true;
            if (reading_) backend().cancel(read_op_);
        }
        lost_ = true;
        schedule_connection_lost(std::move(error));
    }

    void schedule_connection_lost(std::exception_ptr error) noexcept {
        if (loop_->is_closed()) {
            call_connection_lost(std::move(error));
            return;
        }
        std::shared_ptr<DatagramTransportImpl> self = self_;
        loop_->call_soon([self, error = std::move(error)]() mutable {
            self->call_connection_lost(std::move(error));
            self->maybe_release();
        });
    }

    void call_connection_lost(std::exception_ptr error) noexcept {
        if (lost_delivered_) return;
        lost_delivered_ = true;
        if (protocol_) {
            try {
                protocol_->connection_lost(std::move(error));
            } catch (...) {
                report("Exception in protocol.connection_lost()", std::current_exception());
            }
        }
        protocol_.reset();
        datagram_protocol_ = nullptr;
    }

    void maybe_release() noexcept {
        if (!lost_delivered_ || pending_ops_ > 0) return;
        sock_.close();
        unregister_resource();
        std::shared_ptr<DatagramTransportImpl> last = std::move(self_);
    }

    EventLoop* loop_;
    Socket sock_;
    std::optional<Address> remote_, sockname_;
    std::shared_ptr<BaseProtocol> protocol_;
    DatagramProtocol* datagram_protocol_ = nullptr;
    std::shared_ptr<DatagramTransportImpl> self_;
    Op read_op_{&on_read};
    Op write_op_{&on_write};
    int pending_ops_ = 0;
    bool reading_ = false, writing_ = false;
    bool closing_ = false, lost_ = false, lost_delivered_ = false, protocol_paused_ = false;
    int sends_after_lost_ = 0;
    std::unique_ptr<char[]> read_buffer_;
    ::iovec read_iov_{};
    ::msghdr read_msg_{};
    Address from_;
    std::deque<Datagram> queue_;
    std::deque<Datagram> abandoned_;  // what abort() dropped while a send read it
    std::size_t buffered_ = 0;
    std::size_t low_ = 16 * 1024, high_ = 64 * 1024;
    ::iovec write_iov_{};
    ::msghdr write_msg_{};
    Address write_to_;
};

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
    if (opts.reuse_port) sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
    if (opts.allow_broadcast) sock.setsockopt(SOL_SOCKET, SO_BROADCAST, 1);
    if (opts.local_addr) {
        if (family == AF_UNIX) {
            const std::string path = opts.local_addr->host();
            struct ::stat info {};
            if (!path.empty() && path.front() != '@' && ::stat(path.c_str(), &info) == 0 &&
                S_ISSOCK(info.st_mode)) {
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
    std::shared_ptr<BaseProtocol> protocol = factory();
    if (!protocol) throw std::invalid_argument("the protocol factory returned no protocol");
    Future<> waiter = loop.create_future();
    auto transport =
        DatagramTransportImpl::start(loop, std::move(sock), protocol, std::move(remote), waiter);
    std::exception_ptr error;
    try {
        co_await waiter;
    } catch (...) {
        error = std::current_exception();
    }
    if (error) {
        transport->close();
        std::rethrow_exception(error);
    }
    co_return OpenedTransport{std::move(transport), std::move(protocol)};
}

}  // namespace asyncio::detail
