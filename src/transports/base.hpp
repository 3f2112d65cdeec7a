// What the stream and datagram transports share (selector_events'
// _SelectorTransport and transports' _FlowControlMixin): the socket and
// protocol, the read and write operations in flight, write flow control,
// the close / abort / connection_lost lifecycle, and handing operations to
// the backend when the loop closes under them.
#pragma once

#include <sys/stat.h>
#ifndef _WIN32
#include <netinet/in.h>
#endif

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "asyncio/backend.hpp"
#include "asyncio/detail/open_transport.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/transports.hpp"

namespace asyncio::detail {

/// Where a transport is in its life. Each phase includes the ones before
/// it: a lost transport is also closing.
enum class TransportPhase {
    open,     ///< reading and writing
    closing,  ///< close() called: no more reads; the write buffer drains
    lost,     ///< connection_lost is scheduled (or running)
    finished  ///< connection_lost has run (or the loop closed): nothing calls the protocol again
};

/// An Address kept in the room an IP address needs: 40 bytes instead of an
/// std::optional<Address>'s 144, for the names every connection keeps.
/// Longer ones (Unix paths) go to the heap.
class CompactAddress {
  public:
    void set(const Address& address);
    std::optional<Address> get() const;
    bool has_value() const noexcept { return length_ != 0 || heap_ != nullptr; }
    int family() const noexcept;

  private:
    ::sockaddr_in6 inline_{};  // large enough for AF_INET and AF_INET6
    ::socklen_t length_ = 0;   // 0: no address, or it is on the heap
    std::unique_ptr<Address> heap_;
};

/// `Interface` is the public transport class implemented: Transport or
/// DatagramTransport.
template <class Interface>
class TransportBase : public Interface, public LoopResource, public FdOwner {
  public:
    // BaseTransport
    void close() override;
    bool is_closing() const override { return phase_ >= TransportPhase::closing; }
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }

    // The write side (WriteTransport, DatagramTransport)
    void abort() override { force_close(nullptr); }
    std::size_t get_write_buffer_size() const override { return buffered_; }
    void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                 std::optional<std::size_t> low = {}) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {low_, high_};
    }

    // LoopResource
    void loop_closing() noexcept final;

    // FdOwner
    bool fd_in_use() const noexcept final { return !is_closing(); }
    std::string describe_owner() const final;

  protected:
    /// A read or write operation, with the transport it belongs to.
    struct Op : IoOp {
        Op(Fn fn, TransportBase& owner) noexcept : IoOp(fn), owner(&owner) {}
        /// The op whose completion `node` is.
        static Op& of(ReadyNode& node) noexcept {
            return static_cast<Op&>(static_cast<IoOp&>(static_cast<Waiter&>(node)));
        }
        TransportBase* owner;
        bool pending = false;  ///< in flight, or its completion is in the ready queue
    };

    TransportBase(EventLoop& loop, Socket sock, IoOp::Fn on_read, IoOp::Fn on_write);
    ~TransportBase() = default;

    /// Makes `self` (this transport) live until connection_lost, and calls
    /// connection_made from the loop; `waiter` completes after it ran.
    void launch(std::shared_ptr<BaseTransport> self, std::shared_ptr<BaseProtocol> protocol,
                std::optional<Future<>> waiter);

    /// Submits `op`; a completion that is already there goes through the
    /// ready queue like any other.
    void submit(Op& op) noexcept {
        op.pending = true;
        if (backend().submit(op)) loop_->schedule(op);
    }
    /// Delivers `op`'s last result again, from the ready queue.
    void resubmit_result(Op& op) noexcept {
        op.pending = true;
        loop_->schedule(op);
    }
    /// Marks `node`'s op as complete and returns its transport.
    template <class Derived>
    static Derived& complete(ReadyNode& node) noexcept {
        Op& op = Op::of(node);
        op.pending = false;
        return static_cast<Derived&>(*op.owner);
    }

    IoBackend& backend() const noexcept { return loop_->backend(); }
    bool lost() const noexcept { return phase_ >= TransportPhase::lost; }

    /// A write after the connection was lost is dropped; the fifth one on
    /// logs a warning, as CPython does. True if `write` must drop its data.
    bool drop_write_after_lost() noexcept;

    /// Pauses or resumes the protocol's writing around the water marks.
    void maybe_pause_protocol() noexcept;
    void maybe_resume_protocol() noexcept;

    /// A fatal error: reported (OS errors only logged in debug mode, as
    /// CPython does), then the transport is aborted with it.
    void fatal_error(std::exception_ptr error, const char* message) noexcept;
    /// Closes at once, dropping the write buffer; connection_lost(error) follows.
    void force_close(std::exception_ptr error) noexcept;
    /// The write buffer drained after close(): connection_lost(nullptr) now.
    void finish_closing() noexcept;
    /// Releases the socket and the transport once connection_lost ran and
    /// no operation is pending.
    void maybe_release() noexcept;
    void report(const char* message, std::exception_ptr error) noexcept;

    EventLoop* loop_;
    Socket sock_;
    std::shared_ptr<BaseProtocol> protocol_;
    std::shared_ptr<BaseTransport> self_;  // alive until connection_lost and no op pending
    TransportPhase phase_ = TransportPhase::open;
    Op read_op_;
    Op write_op_;

    std::size_t buffered_ = 0;   // as get_write_buffer_size() counts it
    bool flush_queued_ = false;  // the loop holds this transport in its before-poll queue
    std::size_t low_ = 16 * 1024, high_ = 64 * 1024;
    bool protocol_paused_ = false;  // pause_writing() called, resume_writing() not yet

  private:
    // What differs between the transports.

    /// The first read, after connection_made.
    virtual void start_reading() noexcept = 0;
    /// Reading ends (close or abort); the read op, if pending, is cancelled.
    virtual void stop_reading() noexcept {}
    /// Drops the write buffer; what the write in flight (if `in_flight`)
    /// still reads must live until its completion.
    virtual void drop_write_buffer(bool in_flight) noexcept = 0;
    /// After protocol.connection_lost: drop what refers to the protocol.
    virtual void connection_lost_done() noexcept {}
    /// What the ops in flight at loop close point into, for the backend to
    /// keep until the kernel lets go.
    virtual Keepalive in_flight_memory() { return self_; }
    /// Whether add_reader/add_writer must refuse this transport's
    /// descriptor: true for sockets (selector_events' _SelectorTransport),
    /// false for pipes, which CPython's unix_events does not guard.
    virtual bool guards_descriptor() const noexcept { return true; }
    /// The loop is closing: drop every reference without calling user code.
    virtual void drop_references() noexcept {}

    void connection_made(std::optional<Future<>> waiter) noexcept;
    void schedule_connection_lost(std::exception_ptr error) noexcept;
    void call_connection_lost(std::exception_ptr error) noexcept;
    void begin_closing() noexcept;

    int writes_after_lost_ = 0;
};

/// SO_REUSEPORT for the reuse_port option; std::invalid_argument where the
/// OS has none (Windows), as CPython's ValueError.
void set_reuse_port(Socket& sock);
/// Whether stat() found a Unix socket file (a stale one is removed before
/// binding); Windows does not tell them apart, so a file stays.
inline bool is_socket_file([[maybe_unused]] const struct ::stat& info) noexcept {
#ifdef S_ISSOCK
    return S_ISSOCK(info.st_mode);
#else
    return false;
#endif
}

/// Calls the protocol factory, refusing an empty result.
std::shared_ptr<BaseProtocol> make_protocol(const ErasedProtocolFactory& factory);

/// Waits for `made` (it completes once the new transport's connection_made
/// has run) and hands the pair over; a failed or cancelled wait closes the
/// transport, as base_events' _create_connection_transport does.
Coro<OpenedTransport> opened_when_made(Future<> made, std::shared_ptr<BaseTransport> transport,
                                       std::shared_ptr<BaseProtocol> protocol);

}  // namespace asyncio::detail
