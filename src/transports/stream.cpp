// The stream transport: selector_events._SelectorSocketTransport's
// behaviour on completion-style operations.
#include "transports/stream.hpp"

#ifndef _WIN32
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <system_error>
#include <tuple>

#include "asyncio/log.hpp"
#include "asyncio/outcome.hpp"
#include "internal.hpp"

namespace asyncio::detail {

std::shared_ptr<StreamTransport> StreamTransport::start(EventLoop& loop, Socket sock,
                                                        std::shared_ptr<BaseProtocol> protocol,
                                                        StreamKind kind,
                                                        std::shared_ptr<ConnectionOwner> owner,
                                                        std::optional<Future<>> waiter) {
    auto transport = std::make_shared<StreamTransport>(loop, std::move(sock), kind);
    transport->owner_ = std::move(owner);
    transport->launch(transport, std::move(protocol), std::move(waiter));
    return transport;
}

StreamTransport::StreamTransport(EventLoop& loop, Socket sock, StreamKind kind)
    : TransportBase(loop, std::move(sock), &on_read, &on_write), kind_(kind) {
    if (kind_ == StreamKind::socket) {
        try {
            sockname_.set(sock_.getsockname());
            peername_.set(sock_.getpeername());
        } catch (const std::system_error&) {
            // Not connected (any more): leave the names unknown, as CPython does.
        }
        // CPython's _set_nodelay: stream transports send small writes at once.
        if (sockname_.family() == AF_INET || sockname_.family() == AF_INET6) {
            const int on = 1;
            ::setsockopt(sock_.fileno(), IPPROTO_TCP, TCP_NODELAY,
                         reinterpret_cast<const char*>(&on), sizeof on);
        }
    }
}

StreamTransport::~StreamTransport() = default;

void StreamTransport::set_protocol(std::shared_ptr<BaseProtocol> protocol) {
    protocol_ = std::move(protocol);
    buffered_protocol_ = dynamic_cast<BufferedProtocol*>(protocol_.get());
    stream_protocol_ = buffered_protocol_ ? nullptr : dynamic_cast<Protocol*>(protocol_.get());
}

std::any StreamTransport::get_extra_info(std::string_view name) const {
    if (name == "peername" && peername_.has_value()) return *peername_.get();
    if (name == "sockname" && sockname_.has_value()) return *sockname_.get();
    if (name == "socket" && kind_ == StreamKind::socket) return sock_.fileno();
    if (name == "pipe" && kind_ != StreamKind::socket) return sock_.fileno();
    return {};
}

// -- reading -----------------------------------------------------------------------

void StreamTransport::submit_read() noexcept {
    if (read_op_.pending || !is_reading()) return;
    if (kind_ == StreamKind::write_pipe) {
        // CPython's trick: the write end of a pipe turns readable (EOF or
        // error) when the read end is closed. Without readiness (IOCP) the
        // next write's EPIPE tells instead.
        if (!backend().watches_readiness()) return;
        read_op_.kind = IoOp::Kind::poll_readable;
        read_op_.fd = sock_.fileno();
        read_op_.wait_first = false;
        submit(read_op_);
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
    // A read that is done at once is still delivered from the ready queue:
    // one read per connection per iteration, as a selector loop does.
    submit(read_op_);
}

void StreamTransport::on_read(ReadyNode& node, ReadyNode::Action action) noexcept {
    auto& self = complete<StreamTransport>(node);
    if (action == ReadyNode::Action::run) self.handle_read(self.read_op_.result);
    if (!self.read_op_.pending && self.reading_ != Reading::held) self.lender_.reset();
    self.maybe_release();
}

void StreamTransport::handle_read(std::int64_t result) noexcept {
    // Closed: what arrived late is dropped, as CPython's reader is removed.
    if (is_closing()) return;
    if (kind_ == StreamKind::write_pipe) {
        if (result == -ECANCELED) return;
        if (buffered_ > 0) {
            force_close(result_error(-EPIPE, "write"));
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
        fatal_error(result_error(result, kind_ == StreamKind::socket ? "recv" : "read"),
                    "Fatal read error on socket transport");
        return;
    }
    last_read_short_ = static_cast<std::size_t>(result) < read_op_.len;
    if (reading_ == Reading::paused) {
        // It was in flight when reading paused: keep it, data or EOF, for
        // resume_reading (a paused selector transport would not see either).
        reading_ = Reading::held;
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
    reading_ = Reading::paused;  // a read in flight completes into Reading::held
}

void StreamTransport::resume_reading() {
    if (is_closing() || reading_ == Reading::active) return;
    const bool held = reading_ == Reading::held;
    reading_ = Reading::active;
    if (held) {
        // Deliver what arrived while paused, from the loop (not inside this call).
        resubmit_result(read_op_);
        return;
    }
    // From the loop too: called inside data_received, reading at once would
    // overwrite the buffer the protocol is still looking at.
    loop_->call_soon([this, self = self_] { submit_read(); });
}

// -- writing -------------------------------------------------------------------------

void StreamTransport::write(std::string_view data) {
    if (kind_ == StreamKind::read_pipe) throw RuntimeError("a read pipe transport cannot write");
    if (eof_) throw RuntimeError("Cannot call write() after write_eof()");
    if (sendfile_busy_) throw RuntimeError("unable to write; sendfile is in progress");
    if (data.empty() || drop_write_after_lost()) return;
    if (data.size() >= kDirectWrite && !write_op_.pending && buffered_ == 0 &&
        backend().completes_inline()) {
        // Straight from the caller's buffer; only the rest is copied.
        const std::optional<std::size_t> sent = send_at_once(data);
        if (!sent) return;
        data.remove_prefix(*sent);
        if (data.empty()) return;
    }
    pending_.append(data);
    buffered_ += data.size();
    if (!write_op_.pending) {
        // Past the high-water mark, send now: the protocol is paused only
        // if the kernel refuses (CPython's write sends at once). Outside a
        // running loop nothing would flush before the next run. Closing
        // ends in connection_lost, which only the loop may call.
        if ((buffered_ >= high_ || !loop_->is_running()) && !is_closing()) flush();
        if (buffered_ > 0 && !write_op_.pending) queue_flush();
    }
    maybe_pause_protocol();
}

void StreamTransport::queue_flush() noexcept {
    if (flush_queued_) return;
    flush_queued_ = true;
    loop_->run_before_poll(library_key, flush_node_);
}

void StreamTransport::on_flush(ReadyNode& node, ReadyNode::Action action) noexcept {
    StreamTransport& self = *node_cast<FlushNode>(node).owner;
    self.flush_queued_ = false;
    if (action == ReadyNode::Action::run) self.flush();
    self.maybe_release();
}

void StreamTransport::flush() noexcept {
    if (lost() || write_op_.pending || buffered_ == 0) return;
    if (chunks_.empty() && backend().completes_inline()) {
        // The common case: one send straight from pending_, which is kept,
        // capacity and all, for the next iteration.
        const std::optional<std::size_t> taken = send_at_once(pending_);
        if (!taken) return;
        const std::size_t sent = *taken;
        buffered_ -= sent;
        if (sent == pending_.size()) {
            pending_.clear();
            after_write();
            return;
        }
        // The kernel refused the rest: it waits for room, without another
        // attempt now.
        seal_pending();
        front_offset_ = sent;
        prepare_write();
        write_op_.wait_first = true;
        submit(write_op_);
        return;
    }
    // Handled here, not scheduled: a completion in the ready queue would
    // make the next poll return at once, one more system call per iteration.
    seal_pending();
    prepare_write();
    write_op_.pending = true;
    if (!backend().submit(write_op_)) return;
    write_op_.pending = false;
    handle_write(write_op_.result);
}

std::optional<std::size_t> StreamTransport::send_at_once(std::string_view data) noexcept {
    write_op_.kind = kind_ == StreamKind::socket ? IoOp::Kind::send : IoOp::Kind::write;
    write_op_.fd = sock_.fileno();
    write_op_.buf = const_cast<char*>(data.data());
    write_op_.len = data.size();
    write_op_.wait_first = false;
    if (!backend().submit(write_op_)) {
        // Queued to wait for room, pointing at `data`: the caller keeps the
        // bytes elsewhere and waits with an op of its own.
        backend().abandon(write_op_);
        return 0;
    }
    const std::int64_t r = write_op_.result;
    if (r >= 0) return static_cast<std::size_t>(r);
    if (r == -EAGAIN) return 0;
    write_failed(r);
    return std::nullopt;
}

void StreamTransport::write_failed(std::int64_t result) noexcept {
    fatal_error(result_error(result, kind_ == StreamKind::socket ? "send" : "write"),
                "Fatal write error on socket transport");
}

void StreamTransport::seal_pending() {
    if (pending_.empty()) return;
    chunks_.push_back(std::move(pending_));
    pending_ = std::move(spare_);
    pending_.clear();
    spare_ = std::string();
}

void StreamTransport::submit_write() noexcept {
    if (write_op_.pending || buffered_ == 0) return;
    seal_pending();
    prepare_write();
    submit(write_op_);
}

void StreamTransport::prepare_write() noexcept {
    write_op_.fd = sock_.fileno();
    write_op_.wait_first = false;
    // Without memory for the iovecs, the chunks go one send at a time.
    if (kind_ == StreamKind::socket && chunks_.size() > 1 && !gather_)
        gather_.reset(new (std::nothrow) Gather);
    if (kind_ == StreamKind::socket && chunks_.size() > 1 && gather_) {
        int n = 0;
        std::size_t offset = front_offset_;
        for (auto it = chunks_.begin(); it != chunks_.end() && n < kMaxIov; ++it, ++n) {
            gather_->iov[n].iov_base = it->data() + offset;
            gather_->iov[n].iov_len = it->size() - offset;
            offset = 0;
        }
        gather_->msg = {};
        gather_->msg.msg_iov = gather_->iov;
        gather_->msg.msg_iovlen = static_cast<std::size_t>(n);
        write_op_.kind = IoOp::Kind::sendmsg;
        write_op_.msg = &gather_->msg;
    } else {
        // One chunk: a plain send, which the kernel takes without copying
        // in a msghdr and its iovecs.
        std::string& front = chunks_.front();
        write_op_.kind = kind_ == StreamKind::socket ? IoOp::Kind::send : IoOp::Kind::write;
        write_op_.buf = front.data() + front_offset_;
        write_op_.len = front.size() - front_offset_;
    }
}

void StreamTransport::on_write(ReadyNode& node, ReadyNode::Action action) noexcept {
    auto& self = complete<StreamTransport>(node);
    self.abandoned_chunks_.clear();
    if (action == ReadyNode::Action::run) self.handle_write(self.write_op_.result);
    self.maybe_release();
}

void StreamTransport::handle_write(std::int64_t result) noexcept {
    if (lost()) return;
    if (result == -EAGAIN || result == -ECANCELED) {
        submit_write();
        return;
    }
    if (result < 0) {
        write_failed(result);
        return;
    }
    consume(static_cast<std::size_t>(result));
    after_write();
}

void StreamTransport::after_write() noexcept {
    maybe_resume_protocol();  // may write more
    if (buffered_ > 0) {
        submit_write();
        return;
    }
    if (empty_waiter_ && !empty_waiter_->done()) empty_waiter_->set_result();
    if (is_closing()) {
        finish_closing();
    } else if (eof_) {
        shutdown_write();
    }
}

void StreamTransport::consume(std::size_t n) noexcept {
    buffered_ -= n;
    std::size_t sent_chunks = 0;
    for (; n > 0; ++sent_chunks) {
        std::string& chunk = chunks_[sent_chunks];
        const std::size_t left = chunk.size() - front_offset_;
        if (n < left) {
            front_offset_ += n;
            break;
        }
        n -= left;
        front_offset_ = 0;
        if (chunk.capacity() <= kMaxSpare && chunk.capacity() > spare_.capacity())
            spare_ = std::move(chunk);
    }
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(sent_chunks));
}

void StreamTransport::write_eof() {
    if (is_closing() || eof_) return;
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

// -- closing -------------------------------------------------------------------------

void StreamTransport::stop_reading() noexcept {
    if (reading_ == Reading::held) reading_ = Reading::paused;
    if (!read_op_.pending) lender_.reset();
}

void StreamTransport::drop_write_buffer(bool in_flight) noexcept {
    // A write in flight still points into the chunks (the kernel may be
    // reading them): they go when its completion comes. A deque moves
    // without moving its elements.
    if (in_flight) abandoned_chunks_ = std::move(chunks_);
    chunks_.clear();
    front_offset_ = 0;
    pending_.clear();
}

void StreamTransport::connection_lost_done() noexcept {
    if (empty_waiter_ && !empty_waiter_->done()) {
        empty_waiter_->set_exception(std::make_exception_ptr(std::system_error(
            std::make_error_code(std::errc::connection_reset), "Connection is closed by peer")));
    }
    if (owner_) std::exchange(owner_, nullptr)->detach(*this);
    stream_protocol_ = nullptr;
    buffered_protocol_ = nullptr;
}

Keepalive StreamTransport::in_flight_memory() {
    // This transport (buffers, iovecs) and the protocol lending the read buffer.
    return std::make_shared<
        std::pair<std::shared_ptr<BaseTransport>, std::shared_ptr<BaseProtocol>>>(self_, lender_);
}

void StreamTransport::drop_references() noexcept {
    lender_.reset();
    owner_.reset();
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
    std::size_t sent = 0;
    bool native = true;
    Coro<void> sending = send_file(file_fd, offset, count, fallback, sent, native);
    Outcome<void> outcome = co_await try_await(std::move(sending));
    sendfile_busy_ = false;
    empty_waiter_.reset();
    // The fallback moves the file position as CPython's does (the native
    // path, sock_sendfile, already did).
    if (!native) seek_past_sent(file_fd, offset, sent);
    if (resume) resume_reading();
    std::move(outcome).get();
    co_return sent;
}

Coro<void> StreamTransport::send_file(int file_fd, std::size_t offset,
                                      std::optional<std::size_t> count, bool fallback,
                                      std::size_t& sent, bool& native) {
    sendfile_busy_ = true;  // from now on, as CPython's empty waiter: no bare writes
    Future<> empty = flushed();
    co_await empty;
    empty_waiter_.reset();
    try {
        sent = co_await loop_->sock_sendfile(sock_, file_fd, offset, count, /*fallback=*/false);
        co_return;
    } catch (const SendfileNotAvailableError&) {
        if (!fallback) throw;
    }
    native = false;
    sendfile_busy_ = false;
    // base_events._sendfile_fallback: write each chunk, wait while the
    // buffer is above the high-water mark.
    SendChunk send = [this](std::string_view chunk) -> Coro<void> {
        if (is_closing()) {
            // _SendfileFallbackProtocol.drain
            throw std::system_error(std::make_error_code(std::errc::connection_reset),
                                    "Connection closed by peer");
        }
        write(chunk);
        if (buffered_ > high_) {
            Future<> drained = flushed();
            co_await drained;
            empty_waiter_.reset();
        }
    };
    co_await sendfile_fallback(*loop_, file_fd, offset, count, send, sent);
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
