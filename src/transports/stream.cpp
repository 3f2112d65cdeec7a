// The stream transport: selector_events._SelectorSocketTransport's
// behaviour on completion-style operations.
#include "transports/stream.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <tuple>

#include "asyncio/log.hpp"

namespace asyncio::detail {

std::string describe_exception(const std::exception_ptr& error);

namespace {

std::exception_ptr os_error(std::int64_t result, const char* what) {
    return std::make_exception_ptr(
        std::system_error(static_cast<int>(-result), std::system_category(), what));
}

void report(EventLoop& loop, const char* message, std::exception_ptr error) noexcept {
    ExceptionContext context;
    context.message = message;
    context.exception = std::move(error);
    loop.call_exception_handler(context);
}

}  // namespace

std::shared_ptr<StreamTransport> StreamTransport::start(EventLoop& loop, Socket sock,
                                                        std::shared_ptr<BaseProtocol> protocol,
                                                        StreamKind kind,
                                                        std::shared_ptr<ConnectionOwner> owner,
                                                        std::optional<Future<>> waiter) {
    auto transport = std::make_shared<StreamTransport>(loop, std::move(sock), kind);
    transport->self_ = transport;
    transport->owner_ = std::move(owner);
    transport->set_protocol(std::move(protocol));
    loop.register_resource(*transport);
    loop.call_soon([transport, waiter = std::move(waiter)]() mutable {
        transport->connection_made(std::move(waiter));
    });
    return transport;
}

StreamTransport::StreamTransport(EventLoop& loop, Socket sock, StreamKind kind)
    : loop_(&loop), sock_(std::move(sock)), kind_(kind) {
    sock_.attach(loop);
    read_op_.owner = this;
    write_op_.owner = this;
    if (kind_ == StreamKind::socket) {
        try {
            sockname_ = sock_.getsockname();
            peername_ = sock_.getpeername();
        } catch (const std::system_error&) {
            // Not connected (any more): leave the names unknown, as CPython does.
        }
        // CPython's _set_nodelay: stream transports send small writes at once.
        if (sockname_ && (sockname_->family() == AF_INET || sockname_->family() == AF_INET6)) {
            const int on = 1;
            ::setsockopt(sock_.fileno(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        }
    }
}

StreamTransport::~StreamTransport() = default;

void StreamTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    protocol_ = std::move(protocol);
    buffered_protocol_ = dynamic_cast<BufferedProtocol*>(protocol_.get());
    stream_protocol_ = buffered_protocol_ ? nullptr : dynamic_cast<Protocol*>(protocol_.get());
    protocol_connected_ = protocol_ != nullptr;
}

std::any StreamTransport::get_extra_info(std::string_view name) const {
    if (name == "peername" && peername_) return *peername_;
    if (name == "sockname" && sockname_) return *sockname_;
    if (name == "socket" && kind_ == StreamKind::socket) return sock_.fileno();
    if (name == "pipe" && kind_ != StreamKind::socket) return sock_.fileno();
    return {};
}

void StreamTransport::connection_made(std::optional<Future<>> waiter) noexcept {
    // Also when the transport was closed before this ran (close_clients right
    // after the accept): connection_lost, which follows, needs it first.
    if (protocol_ && !lost_delivered_) {
        try {
            protocol_->connection_made(*this);
        } catch (...) {
            report(*loop_, "Exception in protocol.connection_made()", std::current_exception());
        }
        submit_read();  // does nothing once closing
    }
    if (waiter && !waiter->done()) waiter->set_result();
}

// -- reading -----------------------------------------------------------------------

void StreamTransport::submit_read() noexcept {
    if (reading_ || closing_ || paused_ || held_) return;
    if (kind_ == StreamKind::write_pipe) {
        // CPython's trick: the write end of a pipe turns readable (EOF or
        // error) when the read end is closed.
        read_op_.kind = IoOp::Kind::poll_readable;
        read_op_.fd = sock_.fileno();
        read_op_.wait_first = false;
        reading_ = true;
        ++pending_ops_;
        if (backend().submit(read_op_)) loop_->schedule(read_op_);
        return;
    }
    // A BufferedProtocol lends its buffer where the read happens at once
    // (a readiness backend). A completion backend reads into the buffers it
    // provides and the data is copied into the protocol's, as CPython's
    // proactor does: the buffer the kernel fills must not depend on which
    // protocol is current when the data arrives.
    if (buffered_protocol_ != nullptr && backend().completes_inline()) {
        std::span<std::byte> lent;
        try {
            lent = buffered_protocol_->get_buffer(kReadSize);
            if (lent.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
        } catch (...) {
            fatal_error(std::current_exception(),
                        "Fatal error: protocol.get_buffer() call failed.");
            return;
        }
        lender_ = protocol_;
        read_op_.kind = kind_ == StreamKind::socket ? IoOp::Kind::recv : IoOp::Kind::read;
        read_op_.buf = lent.data();
        read_op_.len = lent.size();
    } else {
        lender_.reset();
        read_op_.kind =
            kind_ == StreamKind::socket ? IoOp::Kind::recv_provided : IoOp::Kind::read_provided;
    }
    read_op_.fd = sock_.fileno();
    read_op_.wait_first = last_read_short_;
    reading_ = true;
    ++pending_ops_;
    // A read that is done at once is still delivered from the ready queue:
    // one read per connection per iteration, as a selector loop does.
    if (backend().submit(read_op_)) loop_->schedule(read_op_);
}

void StreamTransport::on_read(ReadyNode& node, ReadyNode::Action action) noexcept {
    StreamTransport* self = static_cast<Op&>(static_cast<IoOp&>(static_cast<Waiter&>(node))).owner;
    self->reading_ = false;
    --self->pending_ops_;
    if (action == ReadyNode::Action::run) self->handle_read(self->read_op_.result);
    if (!self->reading_ && !self->held_) self->lender_.reset();
    self->maybe_release();
}

void StreamTransport::handle_read(std::int64_t result) noexcept {
    if (lost_ || closing_)
        return;  // closed: what arrived late is dropped, as CPython's reader is removed
    if (kind_ == StreamKind::write_pipe) {
        if (result == -ECANCELED) return;
        if (buffered_ > 0) {
            force_close(os_error(-EPIPE, "write"));
        } else {
            close();
        }
        return;
    }
    if (result == -EAGAIN || result == -ECANCELED) {
        submit_read();
        return;
    }
    if (result < 0) {
        fatal_error(os_error(result, "recv"), "Fatal read error on socket transport");
        return;
    }
    last_read_short_ = static_cast<std::size_t>(result) < read_op_.len;
    if (paused_) {
        // It was in flight when reading paused: keep it, data or EOF, for
        // resume_reading (a paused selector transport would not see either).
        held_ = true;
        return;
    }
    if (result == 0) {
        handle_eof();
        return;
    }
    deliver(static_cast<std::size_t>(result));
    submit_read();
}

void StreamTransport::deliver(std::size_t n) noexcept {
    // Where the data is, and who lent that buffer (kept alive for this call).
    std::shared_ptr<BaseProtocol> lender = std::move(lender_);
    const std::string_view data(static_cast<const char*>(read_op_.buf), n);
    if (buffered_protocol_ != nullptr) {
        if (lender.get() == protocol_.get()) {
            try {
                buffered_protocol_->buffer_updated(n);
            } catch (...) {
                fatal_error(std::current_exception(),
                            "Fatal error: protocol.buffer_updated() call failed.");
            }
        } else {
            // A provided buffer, or one lent by the protocol before set_protocol.
            feed_buffered(data);
        }
    } else if (stream_protocol_ != nullptr) {
        try {
            stream_protocol_->data_received(data);
        } catch (...) {
            fatal_error(std::current_exception(),
                        "Fatal error: protocol.data_received() call failed.");
        }
    }
}

void StreamTransport::feed_buffered(std::string_view data) noexcept {
    // protocols._feed_data_to_buffered_proto, reporting each call's failure
    // as the selector transport does.
    while (!data.empty() && buffered_protocol_ != nullptr) {
        std::span<std::byte> buffer;
        try {
            buffer = buffered_protocol_->get_buffer(data.size());
            if (buffer.empty()) throw RuntimeError("get_buffer() returned an empty buffer");
        } catch (...) {
            fatal_error(std::current_exception(),
                        "Fatal error: protocol.get_buffer() call failed.");
            return;
        }
        const std::size_t n = std::min(buffer.size(), data.size());
        std::memcpy(buffer.data(), data.data(), n);
        data.remove_prefix(n);
        try {
            buffered_protocol_->buffer_updated(n);
        } catch (...) {
            fatal_error(std::current_exception(),
                        "Fatal error: protocol.buffer_updated() call failed.");
            return;
        }
    }
}

void StreamTransport::handle_eof() noexcept {
    bool keep_open = false;
    try {
        if (buffered_protocol_ != nullptr) {
            keep_open = buffered_protocol_->eof_received();
        } else if (stream_protocol_ != nullptr) {
            keep_open = stream_protocol_->eof_received();
        }
    } catch (...) {
        fatal_error(std::current_exception(), "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    // A read pipe has no write side to keep open (_UnixReadPipeTransport).
    if (!keep_open || kind_ == StreamKind::read_pipe) close();  // else: half-closed
}

void StreamTransport::pause_reading() {
    if (!is_reading()) return;
    paused_ = true;  // an in-flight read completes into held_
}

void StreamTransport::resume_reading() {
    if (closing_ || !paused_) return;
    paused_ = false;
    if (held_) {
        // Deliver what arrived while paused, from the loop (not inside this call).
        held_ = false;
        reading_ = true;
        ++pending_ops_;
        loop_->schedule(read_op_);
        return;
    }
    // From the loop too: called inside data_received, reading at once would
    // overwrite the buffer the protocol is still looking at.
    loop_->call_soon([self = self_] { self->submit_read(); });
}

// -- writing -------------------------------------------------------------------------

void StreamTransport::write(std::string_view data) {
    if (kind_ == StreamKind::read_pipe) throw RuntimeError("a read pipe transport cannot write");
    if (eof_) throw RuntimeError("Cannot call write() after write_eof()");
    if (sendfile_busy_) throw RuntimeError("unable to write; sendfile is in progress");
    if (data.empty()) return;
    if (lost_) {
        if (++writes_after_lost_ >= 5)
            log_message(LogLevel::warning, "socket.send() raised exception.");
        return;
    }
    if (!writing_ && buffered_ == 0 && backend().completes_inline()) {
        // Try to send straight from the caller's buffer; copy only the rest.
        write_op_.kind = kind_ == StreamKind::socket ? IoOp::Kind::send : IoOp::Kind::write;
        write_op_.fd = sock_.fileno();
        write_op_.buf = const_cast<char*>(data.data());
        write_op_.len = data.size();
        write_op_.wait_first = false;
        if (backend().submit(write_op_)) {
            const std::int64_t r = write_op_.result;
            if (r >= 0) {
                data.remove_prefix(static_cast<std::size_t>(r));
                if (data.empty()) return;
            } else if (r != -EAGAIN) {
                fatal_error(os_error(r, "send"), "Fatal write error on socket transport");
                return;
            }
        } else {
            backend().abandon(write_op_);  // it points at the caller's data: retry from our buffer
        }
    }
    chunks_.emplace_back(data);
    buffered_ += data.size();
    submit_write();
    maybe_pause_protocol();
}

void StreamTransport::submit_write() noexcept {
    if (writing_ || buffered_ == 0) return;
    write_op_.fd = sock_.fileno();
    write_op_.wait_first = false;
    if (kind_ == StreamKind::socket && chunks_.size() > 1) {
        int n = 0;
        std::size_t offset = front_offset_;
        for (auto it = chunks_.begin(); it != chunks_.end() && n < kMaxIov; ++it, ++n) {
            iov_[n].iov_base = it->data() + offset;
            iov_[n].iov_len = it->size() - offset;
            offset = 0;
        }
        msg_ = {};
        msg_.msg_iov = iov_;
        msg_.msg_iovlen = static_cast<std::size_t>(n);
        write_op_.kind = IoOp::Kind::sendmsg;
        write_op_.msg = &msg_;
    } else {
        // One chunk: a plain send, which the kernel takes without copying
        // in a msghdr and its iovecs.
        std::string& front = chunks_.front();
        write_op_.kind = kind_ == StreamKind::socket ? IoOp::Kind::send : IoOp::Kind::write;
        write_op_.buf = front.data() + front_offset_;
        write_op_.len = front.size() - front_offset_;
    }
    writing_ = true;
    ++pending_ops_;
    if (backend().submit(write_op_)) loop_->schedule(write_op_);
}

void StreamTransport::on_write(ReadyNode& node, ReadyNode::Action action) noexcept {
    StreamTransport* self = static_cast<Op&>(static_cast<IoOp&>(static_cast<Waiter&>(node))).owner;
    self->writing_ = false;
    --self->pending_ops_;
    self->abandoned_chunks_.clear();
    if (action == ReadyNode::Action::run) self->handle_write(self->write_op_.result);
    self->maybe_release();
}

void StreamTransport::handle_write(std::int64_t result) noexcept {
    if (lost_) return;
    if (result == -EAGAIN || result == -ECANCELED) {
        submit_write();
        return;
    }
    if (result < 0) {
        fatal_error(os_error(result, "send"), "Fatal write error on socket transport");
        return;
    }
    consume(static_cast<std::size_t>(result));
    maybe_resume_protocol();  // may write more
    if (buffered_ > 0) {
        submit_write();
        return;
    }
    if (empty_waiter_ && !empty_waiter_->done()) empty_waiter_->set_result();
    if (closing_) {
        lost_ = true;
        call_connection_lost(nullptr);
    } else if (eof_) {
        shutdown_write();
    }
}

void StreamTransport::consume(std::size_t n) noexcept {
    buffered_ -= n;
    while (n > 0) {
        const std::size_t left = chunks_.front().size() - front_offset_;
        if (n < left) {
            front_offset_ += n;
            return;
        }
        n -= left;
        chunks_.pop_front();
        front_offset_ = 0;
    }
}

void StreamTransport::write_eof() {
    if (closing_ || eof_) return;
    eof_ = true;
    if (buffered_ == 0) shutdown_write();
}

void StreamTransport::shutdown_write() noexcept {
    if (kind_ == StreamKind::socket) {
        ::shutdown(sock_.fileno(), SHUT_WR);
    } else {
        close();  // a pipe's write end has no half-close: closing it is the EOF
    }
}

void StreamTransport::set_write_buffer_limits(std::optional<std::size_t> high,
                                              std::optional<std::size_t> low) {
    std::tie(low_, high_) = water_marks(high, low);
    maybe_pause_protocol();
}

void StreamTransport::maybe_pause_protocol() noexcept {
    if (buffered_ <= high_ || protocol_paused_ || !protocol_) return;
    protocol_paused_ = true;
    try {
        protocol_->pause_writing();
    } catch (...) {
        report(*loop_, "protocol.pause_writing() failed", std::current_exception());
    }
}

void StreamTransport::maybe_resume_protocol() noexcept {
    if (!protocol_paused_ || buffered_ > low_ || !protocol_) return;
    protocol_paused_ = false;
    try {
        protocol_->resume_writing();
    } catch (...) {
        report(*loop_, "protocol.resume_writing() failed", std::current_exception());
    }
}

// -- closing -------------------------------------------------------------------------

void StreamTransport::close() {
    if (closing_) return;
    closing_ = true;
    if (reading_) backend().cancel(read_op_);
    held_ = false;
    if (!reading_) lender_.reset();
    if (buffered_ == 0) {
        lost_ = true;
        schedule_connection_lost(nullptr);
    }
}

void StreamTransport::force_close(std::exception_ptr error) noexcept {
    if (lost_) return;
    if (buffered_ > 0) {
        // A write in flight still points into the chunks (the kernel may be
        // reading them): they go when its completion comes. A deque moves
        // without moving its elements.
        if (writing_) {
            abandoned_chunks_ = std::move(chunks_);
        }
        chunks_.clear();
        front_offset_ = 0;
        buffered_ = 0;
        if (writing_) backend().cancel(write_op_);
    }
    if (!closing_) {
        closing_ = true;
        if (reading_) backend().cancel(read_op_);
        held_ = false;
        if (!reading_) lender_.reset();
    }
    lost_ = true;
    schedule_connection_lost(std::move(error));
}

void StreamTransport::fatal_error(std::exception_ptr error, const char* message) noexcept {
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
        report(*loop_, message, error);
    }
    force_close(std::move(error));
}

void StreamTransport::schedule_connection_lost(std::exception_ptr error) noexcept {
    if (loop_->is_closed()) {
        call_connection_lost(std::move(error));
        return;
    }
    std::shared_ptr<StreamTransport> self = self_;
    loop_->call_soon([self, error = std::move(error)]() mutable {
        self->call_connection_lost(std::move(error));
        self->maybe_release();
    });
}

void StreamTransport::call_connection_lost(std::exception_ptr error) noexcept {
    if (lost_delivered_) return;
    lost_delivered_ = true;
    if (empty_waiter_ && !empty_waiter_->done()) {
        empty_waiter_->set_exception(std::make_exception_ptr(std::system_error(
            std::make_error_code(std::errc::connection_reset), "Connection is closed by peer")));
    }
    if (protocol_connected_ && protocol_) {
        try {
            protocol_->connection_lost(std::move(error));
        } catch (...) {
            report(*loop_, "Exception in protocol.connection_lost()", std::current_exception());
        }
    }
    if (owner_) std::exchange(owner_, nullptr)->detach(*this);
    protocol_.reset();
    stream_protocol_ = nullptr;
    buffered_protocol_ = nullptr;
}

Future<> StreamTransport::flushed() {
    if (empty_waiter_) throw RuntimeError("Empty waiter is already set");
    empty_waiter_ = loop_->create_future();
    if (buffered_ == 0) empty_waiter_->set_result();
    return *empty_waiter_;
}

Coro<std::size_t> StreamTransport::sendfile(int file_fd, std::size_t offset,
                                            std::optional<std::size_t> count, bool fallback) {
    std::shared_ptr<BaseTransport> keep = shared_from_this();
    if (kind_ != StreamKind::socket) {
        throw RuntimeError("sendfile is not supported for this transport");
    }
    // base_events._sendfile_native: flush, pause reading, send, resume.
    const bool resume = is_reading();
    pause_reading();
    std::exception_ptr error;
    std::size_t sent = 0;
    bool regular = false;  // the fallback ran on a regular file
    try {
        sendfile_busy_ = true;  // from now on, as CPython's empty waiter: no bare writes
        Future<> empty = flushed();
        co_await empty;
        empty_waiter_.reset();
        bool native = true;
        try {
            sent = co_await loop_->sock_sendfile(sock_, file_fd, offset, count, false);
        } catch (const SendfileNotAvailableError&) {
            if (!fallback) throw;
            native = false;
        }
        sendfile_busy_ = false;
        if (!native) {
            // base_events._sendfile_fallback: read, write, wait for the buffer to drain.
            std::unique_ptr<char[]> chunk(new char[kReadSize]);
            struct ::stat info {};
            regular = ::fstat(file_fd, &info) == 0 && S_ISREG(info.st_mode);
            while (!count || sent < *count) {
                if (lost_ || closing_) {
                    // _SendfileFallbackProtocol.drain
                    throw std::system_error(std::make_error_code(std::errc::connection_reset),
                                            "Connection closed by peer");
                }
                std::size_t want = kReadSize;
                if (count) want = std::min(want, *count - sent);
                const ssize_t n =
                    regular ? ::pread(file_fd, chunk.get(), want, static_cast<off_t>(offset + sent))
                            : ::read(file_fd, chunk.get(), want);
                if (n < 0) throw std::system_error(errno, std::system_category(), "read");
                if (n == 0) break;
                write(std::string_view(chunk.get(), static_cast<std::size_t>(n)));
                sent += static_cast<std::size_t>(n);
                if (buffered_ > high_) {
                    Future<> drained = flushed();
                    co_await drained;
                    empty_waiter_.reset();
                }
            }
        }
    } catch (...) {
        error = std::current_exception();
    }
    sendfile_busy_ = false;
    empty_waiter_.reset();
    // The fallback moves the file position as CPython's does (the native
    // path, sock_sendfile, already did).
    if (regular && sent > 0) ::lseek(file_fd, static_cast<off_t>(offset + sent), SEEK_SET);
    if (resume) resume_reading();
    if (error) std::rethrow_exception(error);
    co_return sent;
}

void StreamTransport::loop_closing() noexcept {
    // Operations still in flight go to the backend with what they point
    // into: this transport (buffers, iovecs) and the protocol lending the
    // read buffer, kept until the kernel lets go. Those in the ready queue
    // are dropped by the loop right after this.
    Keepalive keep;
    if (read_op_.in_flight || write_op_.in_flight) {
        try {
            keep = std::make_shared<
                std::pair<std::shared_ptr<StreamTransport>, std::shared_ptr<BaseProtocol>>>(
                self_, lender_);
        } catch (const std::bad_alloc&) {
            // Without it the backend waits for the kernel before it returns.
        }
    }
    for (Op* op : {&read_op_, &write_op_}) {
        if (!op->in_flight) continue;
        --pending_ops_;
        (op == &read_op_ ? reading_ : writing_) = false;
    }
    abandon_ops(std::move(keep));
    closing_ = lost_ = lost_delivered_ = true;
    held_ = false;
    lender_.reset();
    owner_.reset();
    protocol_.reset();
    stream_protocol_ = nullptr;
    buffered_protocol_ = nullptr;
    maybe_release();
}

void StreamTransport::abandon_ops(Keepalive keep) noexcept {
    for (Op* op : {&read_op_, &write_op_}) {
        if (op->attached()) backend().abandon(*op, keep);
    }
}

void StreamTransport::maybe_release() noexcept {
    if (!lost_delivered_ || pending_ops_ > 0) return;
    abandon_ops({});  // a provided buffer, an armed multishot: nothing in flight
    sock_.close();
    unregister_resource();
    std::shared_ptr<StreamTransport> last = std::move(self_);  // may free *this on return
}

}  // namespace asyncio::detail

namespace asyncio {

Coro<std::size_t> EventLoop::sendfile(Transport& transport, int file_fd, std::size_t offset,
                                      std::optional<std::size_t> count, bool fallback) {
    if (transport.is_closing()) throw RuntimeError("Transport is closing");
    auto* stream = dynamic_cast<detail::StreamTransport*>(&transport);
    if (stream == nullptr) throw RuntimeError("sendfile is not supported for this transport");
    co_return co_await stream->sendfile(file_fd, offset, count, fallback);
}

}  // namespace asyncio
