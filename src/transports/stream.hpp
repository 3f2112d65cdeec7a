// The stream transport (selector_events._SelectorSocketTransport and
// unix_events' pipe transports), written on the backend's operations: one
// read and at most one write operation in flight, each an IoOp embedded
// here whose completion comes back through the ready queue.
#pragma once

#include <sys/uio.h>

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "asyncio/backend.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/transports.hpp"

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

class StreamTransport final : public Transport, public LoopResource {
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
    void close() override;
    bool is_closing() const override { return closing_; }
    void set_protocol(std::shared_ptr<BaseProtocol> protocol) override;
    std::shared_ptr<BaseProtocol> get_protocol() const override { return protocol_; }
    std::any get_extra_info(std::string_view name) const override;

    // LoopResource
    void loop_closing() noexcept override;

    /// loop.sendfile on this transport.
    Coro<std::size_t> sendfile(int file_fd, std::size_t offset, std::optional<std::size_t> count,
                               bool fallback);

    // ReadTransport
    bool is_reading() const override { return !closing_ && !paused_; }
    void pause_reading() override;
    void resume_reading() override;

    // WriteTransport
    void write(std::string_view data) override;
    void write_eof() override;
    bool can_write_eof() const override { return kind_ != StreamKind::read_pipe; }
    void abort() override { force_close(nullptr); }
    std::size_t get_write_buffer_size() const override { return buffered_; }
    void set_write_buffer_limits(std::optional<std::size_t> high = {},
                                 std::optional<std::size_t> low = {}) override;
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override {
        return {low_, high_};
    }

  private:
    struct Op : IoOp {
        explicit Op(Fn fn) noexcept : IoOp(fn) {}
        StreamTransport* owner = nullptr;
    };

    static void on_read(ReadyNode& node, ReadyNode::Action action) noexcept;
    static void on_write(ReadyNode& node, ReadyNode::Action action) noexcept;

    void connection_made(std::optional<Future<>> waiter) noexcept;
    void submit_read() noexcept;
    void handle_read(std::int64_t result) noexcept;
    void deliver(std::size_t n) noexcept;
    void feed_buffered(std::string_view data) noexcept;
    void handle_eof() noexcept;
    void submit_write() noexcept;
    void handle_write(std::int64_t result) noexcept;
    void consume(std::size_t n) noexcept;
    void maybe_pause_protocol() noexcept;
    void maybe_resume_protocol() noexcept;
    void fatal_error(std::exception_ptr error, const char* message) noexcept;
    void force_close(std::exception_ptr error) noexcept;
    void schedule_connection_lost(std::exception_ptr error) noexcept;
    void call_connection_lost(std::exception_ptr error) noexcept;
    void shutdown_write() noexcept;
    void maybe_release() noexcept;
    IoBackend& backend() const noexcept { return loop_->backend(); }
    /// Completes once the write buffer is empty (CPython's _make_empty_waiter).
    Future<> flushed();
    /// Hands the ops still attached to the backend; `keep` owns what they lent.
    void abandon_ops(Keepalive keep) noexcept;

    EventLoop* loop_;
    Socket sock_;
    StreamKind kind_;
    std::shared_ptr<BaseProtocol> protocol_;
    Protocol* stream_protocol_ = nullptr;
    BufferedProtocol* buffered_protocol_ = nullptr;
    std::shared_ptr<ConnectionOwner> owner_;
    std::shared_ptr<StreamTransport> self_;  // alive until connection_lost and no op pending
    std::optional<Address> peername_, sockname_;

    Op read_op_{&on_read};
    Op write_op_{&on_write};
    int pending_ops_ = 0;
    bool reading_ = false;  // read_op_ in flight or queued
    bool writing_ = false;  // write_op_ in flight or queued
    bool held_ = false;     // a read completed while paused; delivered on resume
    bool last_read_short_ = false;
    bool protocol_connected_ = false;
    bool closing_ = false;
    bool paused_ = false;
    bool eof_ = false;  // write_eof() requested
    bool protocol_paused_ = false;
    bool lost_ = false;  // connection_lost scheduled
    bool lost_delivered_ = false;
    int writes_after_lost_ = 0;
    bool sendfile_busy_ = false;
    std::optional<Future<>> empty_waiter_;

    static constexpr std::size_t kReadSize = 256 * 1024;  // CPython's max_size
    // The BufferedProtocol whose buffer the read in flight (or held) fills;
    // null when the backend provides the buffer (Protocol: no buffer per
    // connection). set_protocol may switch protocols meanwhile: the data
    // then goes to the new one, and the lender's buffer must stay alive
    // until then.
    std::shared_ptr<BaseProtocol> lender_;

    std::deque<std::string> chunks_;
    std::deque<std::string> abandoned_chunks_;  // what abort() dropped while a write read it
    std::size_t front_offset_ = 0;              // bytes of chunks_.front() already sent
    std::size_t buffered_ = 0;
    std::size_t low_ = 16 * 1024, high_ = 64 * 1024;
    static constexpr int kMaxIov = 64;
    ::iovec iov_[kMaxIov];
    ::msghdr msg_{};
};

}  // namespace asyncio::detail
