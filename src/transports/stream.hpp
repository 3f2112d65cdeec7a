// The stream transport (selector_events._SelectorSocketTransport and
// unix_events' pipe transports), written on the backend's operations: one
// read and at most one write operation in flight, each an IoOp embedded
// here whose completion comes back through the ready queue. Writes made
// during one loop iteration are buffered and leave together, in one
// system call, before the loop polls again (as uvloop's do).
#pragma once

#ifndef _WIN32
#include <sys/uio.h>
#endif

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "asyncio/backend.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/transports.hpp"
#include "transports/base.hpp"

namespace asyncio::detail {

/// Something that counts the transports it created (a Server).
class ConnectionOwner {
  public:
    virtual void detach(BaseTransport& transport) noexcept = 0;

  protected:
    ~ConnectionOwner() = default;
};

/// What kind of descriptor a StreamTransport drives.
enum class StreamKind { socket, read_pipe, write_pipe };

class StreamTransport final : public TransportBase<Transport> {
  public:
    /// Creates the transport and schedules connection_made; `waiter` (if
    /// any) is completed after connection_made ran.
    static std::shared_ptr<StreamTransport> start(EventLoop& loop, Socket sock,
                                                  std::shared_ptr<BaseProtocol> protocol,
                                                  StreamKind kind,
                                                  std::shared_ptr<ConnectionOwner> owner,
                                                  std::optional<Future<>> waiter);
    StreamTransport(EventLoop& loop, Socket sock, StreamKind kind);
    ~StreamTransport() override;

    // BaseTransport
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::any get_extra_info(std::string_view name) const override;

    /// loop.sendfile on this transport.
    Coro<std::size_t> sendfile(int file_fd, std::size_t offset, std::optional<std::size_t> count,
                               bool fallback);

    // ReadTransport
    bool is_reading() const override {
        return phase_ == TransportPhase::open && reading_ == Reading::active;
    }
    void pause_reading() override;
    void resume_reading() override;

    // WriteTransport
    void write(std::string_view data) override;
    void write_eof() override;
    bool can_write_eof() const override { return kind_ != StreamKind::read_pipe; }

  private:
    /// The read side, while the transport is open.
    enum class Reading {
        active,  ///< a read is pending, or will be once the protocol asks
        paused,  ///< pause_reading(): nothing is delivered
        held     ///< paused, and a read completed meanwhile: delivered on resume
    };

    /// The node a transport with buffered writes waits in, in the loop's
    /// before-poll queue.
    struct FlushNode : ReadyNode {
        explicit FlushNode(StreamTransport& owner) noexcept : ReadyNode(&on_flush), owner(&owner) {}
        StreamTransport* owner;
    };

    static void on_read(ReadyNode& node, ReadyNode::Action action) noexcept;
    static void on_write(ReadyNode& node, ReadyNode::Action action) noexcept;
    static void on_flush(ReadyNode& node, ReadyNode::Action action) noexcept;

    void submit_read() noexcept;
    void handle_read(std::int64_t result) noexcept;
    void deliver(std::size_t n) noexcept;
    void feed_buffered(std::string_view data) noexcept;
    void handle_eof() noexcept;
    /// Sends what is buffered; an answer the backend has at once is handled
    /// here, without a trip through the ready queue.
    void flush() noexcept;
    void queue_flush() noexcept;
    /// One send of `data` where the backend answers at once: the bytes the
    /// kernel took (0: none, it is full), or nothing after a fatal error
    /// (the transport is aborted).
    std::optional<std::size_t> send_at_once(std::string_view data) noexcept;
    void write_failed(std::int64_t result) noexcept;
    /// Moves pending_ behind chunks_, for the write op to send.
    void seal_pending();
    /// Points the write op at chunks_.
    void prepare_write() noexcept;
    void submit_write() noexcept;
    void handle_write(std::int64_t result) noexcept;
    /// After bytes left: resume the protocol, send the rest, or finish
    /// what waited for an empty buffer (drain, close, write_eof).
    void after_write() noexcept;
    void consume(std::size_t n) noexcept;
    void shutdown_write() noexcept;
    /// sendfile's sending: native, else (if `fallback`) by chunks; `native`
    /// tells which, `sent` how much left.
    Coro<void> send_file(int file_fd, std::size_t offset, std::optional<std::size_t> count,
                         bool fallback, std::size_t& sent, bool& native);
    /// Completes once the write buffer is empty (CPython's _make_empty_waiter).
    Future<> flushed();

    // TransportBase
    void start_reading() noexcept override { submit_read(); }
    void stop_reading() noexcept override;
    void drop_write_buffer(bool in_flight) noexcept override;
    void connection_lost_done() noexcept override;
    Keepalive in_flight_memory() override;
    bool guards_descriptor() const noexcept override { return kind_ == StreamKind::socket; }
    void drop_references() noexcept override;

    StreamKind kind_;
    Protocol* stream_protocol_ = nullptr;
    BufferedProtocol* buffered_protocol_ = nullptr;
    std::shared_ptr<ConnectionOwner> owner_;
    CompactAddress peername_, sockname_;

    Reading reading_ = Reading::active;
    bool last_read_short_ = false;  // the last read filled less than its buffer: wait first
    bool eof_ = false;              // write_eof() requested
    bool sendfile_busy_ = false;    // loop.sendfile owns the write side
    std::optional<Future<>> empty_waiter_;

    static constexpr std::size_t kReadSize = 256 * 1024;  // CPython's max_size
    // The BufferedProtocol whose buffer the read in flight (or held) fills;
    // null when the backend provides the buffer (Protocol: no buffer per
    // connection). set_protocol may switch protocols meanwhile: the data
    // then goes to the new one, and the lender's buffer must stay alive
    // until then.
    std::shared_ptr<BaseProtocol> lender_;

    // A write this large, made with nothing buffered, is sent from the
    // caller's memory at once where the backend allows: copying it costs
    // more than the system call it could share.
    static constexpr std::size_t kDirectWrite = 64 * 1024;

    FlushNode flush_node_{*this};
    // The writes of this iteration, in order after chunks_. Never in
    // flight: the write op sends from chunks_, or from here only within
    // flush() where the backend answers at once.
    std::string pending_;
    // Handed to the write op: what it sends, and what waits behind it.
    // Changed only while no write op is pending, so the bytes the op
    // points into (inside a short string too) stay where they are. A
    // vector: an idle connection's empty deque would hold 576 bytes.
    std::vector<std::string> chunks_;
    std::vector<std::string> abandoned_chunks_;  // what abort() dropped while a write read it
    std::size_t front_offset_ = 0;               // bytes of chunks_.front() already sent
    // A sent chunk's storage, kept for the next pending_: no allocation per
    // iteration. Only a small one is kept, for idle connections' sake.
    std::string spare_;
    static constexpr std::size_t kMaxSpare = 16 * 1024;
    static constexpr int kMaxIov = 64;
    /// What a sendmsg of several chunks points the kernel at; made by the
    /// first one, as most connections never send two chunks at once.
    struct Gather {
        detail::msghdr msg;
        detail::iovec iov[kMaxIov];
    };
    std::unique_ptr<Gather> gather_;
};

}  // namespace asyncio::detail
