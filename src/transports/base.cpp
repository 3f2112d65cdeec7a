// The lifecycle and flow control the stream and datagram transports share.
#include "transports/base.hpp"

#include <cstring>
#include <stdexcept>
#include <system_error>
#include <tuple>
#include <type_traits>

#include "asyncio/log.hpp"
#include "asyncio/outcome.hpp"
#include "internal.hpp"

namespace asyncio::detail {

void CompactAddress::set(const Address& address) {
    if (static_cast<std::size_t>(address.size()) <= sizeof inline_) {
        heap_.reset();
        std::memcpy(&inline_, address.data(), address.size());
        length_ = address.size();
    } else {
        heap_ = std::make_unique<Address>(address);
        length_ = 0;
    }
}

std::optional<Address> CompactAddress::get() const {
    if (heap_) return *heap_;
    if (length_ == 0) return std::nullopt;
    return Address::from_sockaddr(reinterpret_cast<const ::sockaddr*>(&inline_), length_);
}

int CompactAddress::family() const noexcept {
    if (heap_) return heap_->family();
    return length_ == 0 ? AF_UNSPEC : inline_.sin6_family;
}

template <class Interface>
TransportBase<Interface>::TransportBase(EventLoop& loop, Socket sock, IoOp::Fn on_read,
                                        IoOp::Fn on_write)
    : loop_(&loop), sock_(std::move(sock)), read_op_(on_read, *this), write_op_(on_write, *this) {
    sock_.attach(library_key, loop);
}

template <class Interface>
void TransportBase<Interface>::launch(std::shared_ptr<BaseTransport> self,
                                      std::shared_ptr<BaseProtocol> protocol,
                                      std::optional<Future<>> waiter) {
    self_ = self;
    this->set_protocol(std::move(protocol));
    loop_->register_resource(*this);
    if (guards_descriptor()) loop_->register_fd_owner(library_key, sock_.fileno(), *this);
    loop_->call_soon([this, self = std::move(self), waiter = std::move(waiter)]() mutable {
        connection_made(std::move(waiter));
    });
}

template <class Interface>
void TransportBase<Interface>::connection_made(std::optional<Future<>> waiter) noexcept {
    // Also when the transport was closed before this ran (close_clients right
    // after the accept): connection_lost, which follows, needs it first.
    if (protocol_ && phase_ != TransportPhase::finished) {
        try {
            protocol_->connection_made(*this);
        } catch (...) {
            report("Exception in protocol.connection_made()", std::current_exception());
        }
        if (phase_ == TransportPhase::open) start_reading();
    }
    if (waiter && !waiter->done()) waiter->set_result();
}

// -- flow control (_FlowControlMixin) -----------------------------------------------

template <class Interface>
void TransportBase<Interface>::set_write_buffer_limits(std::optional<std::size_t> high,
                                                       std::optional<std::size_t> low) {
    std::tie(low_, high_) = water_marks(high, low);
    maybe_pause_protocol();
}

template <class Interface>
void TransportBase<Interface>::maybe_pause_protocol() noexcept {
    if (buffered_ <= high_ || protocol_paused_ || !protocol_) return;
    protocol_paused_ = true;
    try {
        protocol_->pause_writing();
    } catch (...) {
        report("protocol.pause_writing() failed", std::current_exception());
    }
}

template <class Interface>
void TransportBase<Interface>::maybe_resume_protocol() noexcept {
    if (!protocol_paused_ || buffered_ > low_ || !protocol_) return;
    protocol_paused_ = false;
    try {
        protocol_->resume_writing();
    } catch (...) {
        report("protocol.resume_writing() failed", std::current_exception());
    }
}

template <class Interface>
bool TransportBase<Interface>::drop_write_after_lost() noexcept {
    if (!lost()) return false;
    if (++writes_after_lost_ >= 5)
        log_message(LogLevel::warning, "socket.send() raised exception.");
    return true;
}

// -- closing ---------------------------------------------------------------------------

template <class Interface>
void TransportBase<Interface>::begin_closing() noexcept {
    if (phase_ != TransportPhase::open) return;
    phase_ = TransportPhase::closing;
    if (read_op_.pending) backend().cancel(read_op_);
    stop_reading();
}

template <class Interface>
void TransportBase<Interface>::close() {
    if (phase_ != TransportPhase::open) return;
    begin_closing();
    if (buffered_ == 0) {
        phase_ = TransportPhase::lost;
        schedule_connection_lost(nullptr);
    }
}

template <class Interface>
void TransportBase<Interface>::finish_closing() noexcept {
    if (phase_ != TransportPhase::closing) return;
    phase_ = TransportPhase::lost;
    call_connection_lost(nullptr);
}

template <class Interface>
void TransportBase<Interface>::force_close(std::exception_ptr error) noexcept {
    if (lost()) return;
    if (buffered_ > 0) {
        drop_write_buffer(write_op_.pending);
        buffered_ = 0;
        if (write_op_.pending) backend().cancel(write_op_);
    }
    begin_closing();
    phase_ = TransportPhase::lost;
    schedule_connection_lost(std::move(error));
}

template <class Interface>
void TransportBase<Interface>::fatal_error(std::exception_ptr error, const char* message) noexcept {
    bool os_error = false;
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error&) {
        os_error = true;
    } catch (...) {
    }
    if (os_error) {
        if (loop_->get_debug()) log(LogLevel::debug, "{}: {}", message, describe_exception(error));
    } else {
        report(message, error);
    }
    force_close(std::move(error));
}

template <class Interface>
void TransportBase<Interface>::schedule_connection_lost(std::exception_ptr error) noexcept {
    if (loop_->is_closed()) {
        call_connection_lost(std::move(error));
        return;
    }
    loop_->call_soon([this, self = self_, error = std::move(error)]() mutable {
        call_connection_lost(std::move(error));
        maybe_release();
    });
}

template <class Interface>
void TransportBase<Interface>::call_connection_lost(std::exception_ptr error) noexcept {
    if (phase_ == TransportPhase::finished) return;
    phase_ = TransportPhase::finished;
    if (protocol_) {
        try {
            protocol_->connection_lost(std::move(error));
        } catch (...) {
            report("Exception in protocol.connection_lost()", std::current_exception());
        }
    }
    connection_lost_done();
    protocol_.reset();
}

template <class Interface>
void TransportBase<Interface>::loop_closing() noexcept {
    // Operations still in flight go to the backend with what they point
    // into, kept until the kernel lets go. Those in the ready queue are
    // dropped by the loop right after this.
    Keepalive keep;
    if (read_op_.in_flight || write_op_.in_flight) {
        try {
            keep = in_flight_memory();
        } catch (const std::bad_alloc&) {
            // Without it the backend waits for the kernel before it returns.
        }
    }
    for (Op* op : {&read_op_, &write_op_}) {
        if (!op->attached()) continue;
        if (op->in_flight) op->pending = false;
        backend().abandon(*op, keep);
    }
    phase_ = TransportPhase::finished;
    drop_references();
    protocol_.reset();
    maybe_release();
}

template <class Interface>
void TransportBase<Interface>::maybe_release() noexcept {
    if (phase_ != TransportPhase::finished || read_op_.pending || write_op_.pending ||
        flush_queued_)
        return;
    // A provided buffer, an armed multishot: attached, though nothing is in flight.
    for (Op* op : {&read_op_, &write_op_}) {
        if (op->attached()) backend().abandon(*op);
    }
    loop_->unregister_fd_owner(library_key, sock_.fileno(), *this);
    sock_.close();
    this->unregister_resource();
    std::shared_ptr<BaseTransport> last = std::move(self_);  // may free *this on return
}

template <class Interface>
std::string TransportBase<Interface>::describe_owner() const {
    constexpr bool datagram = std::is_same_v<Interface, DatagramTransport>;
    return fmt::format("<{} fd={}{}>", datagram ? "DatagramTransport" : "Transport", sock_.fileno(),
                       is_closing() ? " closing" : "");
}

template <class Interface>
void TransportBase<Interface>::report(const char* message, std::exception_ptr error) noexcept {
    ExceptionContext context;
    context.message = message;
    context.exception = std::move(error);
    context.transport = this->weak_from_this().lock();  // empty while being destroyed
    context.protocol = protocol_;
    loop_->call_exception_handler(context);
}

template class TransportBase<Transport>;
template class TransportBase<DatagramTransport>;

std::shared_ptr<BaseProtocol> make_protocol(const ErasedProtocolFactory& factory) {
    std::shared_ptr<BaseProtocol> protocol = factory();
    if (!protocol) throw std::invalid_argument("the protocol factory returned no protocol");
    return protocol;
}

Coro<OpenedTransport> opened_when_made(Future<> made, std::shared_ptr<BaseTransport> transport,
                                       std::shared_ptr<BaseProtocol> protocol) {
    Outcome<void> waited = co_await try_await(made);
    if (!waited.has_value()) transport->close();
    std::move(waited).get();
    co_return OpenedTransport{std::move(transport), std::move(protocol)};
}

void set_reuse_port(Socket& sock) {
#ifdef SO_REUSEPORT
    sock.setsockopt(SOL_SOCKET, SO_REUSEPORT, 1);
#else
    static_cast<void>(sock);
    throw std::invalid_argument("reuse_port not supported by socket module");
#endif
}

}  // namespace asyncio::detail
