// Streams (Lib/asyncio/streams.py, 3.13).
#include "asyncio/streams.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>

#include "asyncio/tasks.hpp"

namespace asyncio {

namespace detail {

struct ReaderState {
    std::size_t limit;
    std::string buffer;
    std::size_t start = 0;  // bytes at the front of `buffer` already consumed
    bool eof = false;
    bool paused = false;
    std::exception_ptr exception;
    std::optional<Future<>> waiter;
    std::shared_ptr<BaseTransport> transport;

    std::size_t size() const noexcept { return buffer.size() - start; }
    std::string_view view() const noexcept { return std::string_view(buffer).substr(start); }
    std::string take(std::size_t n) {
        std::string out(buffer.data() + start, n);
        start += n;
        if (start == buffer.size()) {
            buffer.clear();
            start = 0;
        }
        return out;
    }
    /// Appends what arrived. The consumed front is dropped here, once per
    /// arrival and only when it is at least half the buffer (amortised
    /// O(1) per byte), not on every read that consumes.
    void append(std::string_view data) {
        if (start > 0 && start >= buffer.size() / 2) {
            buffer.erase(0, start);
            start = 0;
        }
        buffer.append(data);
    }
    void clear() noexcept {
        buffer.clear();
        start = 0;
    }

    void wakeup() noexcept {
        if (!waiter) return;
        Future<> w = std::move(*waiter);
        waiter.reset();
        if (!w.cancelled()) w.set_result();
    }

    void maybe_resume_transport() {
        if (paused && size() <= limit) {
            paused = false;
            if (auto* reading = dynamic_cast<ReadTransport*>(transport.get()))
                reading->resume_reading();
        }
    }

    Coro<void> wait_for_data(const char* function) {
        if (waiter) {
            throw RuntimeError(
                std::string(function) +
                "() called while another coroutine is already waiting for incoming data");
        }
        // Waiting while paused would deadlock (readexactly(n) with n > limit).
        if (paused) {
            paused = false;
            if (auto* reading = dynamic_cast<ReadTransport*>(transport.get()))
                reading->resume_reading();
        }
        Future<> w = get_running_loop().create_future();
        waiter = w;
        Outcome<void> woken = co_await detail::try_await(w);
        waiter.reset();
        std::move(woken).get();
    }
};

struct WriterState {
    std::shared_ptr<Transport> transport;
    std::shared_ptr<StreamReaderProtocol> protocol;
    std::optional<StreamReader> reader;

    // CPython 3.13: an unclosed writer that is collected closes its
    // transport. A server's writer is not collected before connection_lost,
    // as its protocol holds it (StreamReaderProtocol._stream_writer): a
    // client_connected handler that returns leaves the connection open.
    // Holding it here would make a cycle with `protocol`; not closing is
    // what holding it comes to.
    ~WriterState() {
        if (protocol && protocol->server_side()) return;
        if (transport && !transport->is_closing()) transport->close();
    }
};

/// StreamReader's limit, checked where it enters (the reader, open_connection,
/// start_server): CPython's ValueError for a limit <= 0. A std::size_t above
/// PTRDIFF_MAX is most likely a negative limit converted, and would turn
/// negative again in read(-1)'s block size.
void check_limit(std::size_t limit) {
    if (limit == 0) throw std::invalid_argument("Limit cannot be <= 0");
    if (limit > static_cast<std::size_t>(PTRDIFF_MAX))
        throw std::invalid_argument("Limit cannot be above PTRDIFF_MAX (a negative limit?)");
}

}  // namespace detail

// -- StreamReader -----------------------------------------------------------------

StreamReader::StreamReader(std::size_t limit) : state_(std::make_shared<detail::ReaderState>()) {
    detail::check_limit(limit);
    state_->limit = limit;
}

std::size_t StreamReader::limit() const {
    return state_->limit;
}
bool StreamReader::at_eof() const {
    return state_->eof && state_->size() == 0;
}
std::exception_ptr StreamReader::exception() const {
    return state_->exception;
}

void StreamReader::set_transport(detail::LibraryKey, std::shared_ptr<BaseTransport> transport) {
    state_->transport = std::move(transport);
}

void StreamReader::replace_transport(detail::LibraryKey, std::shared_ptr<BaseTransport> transport) {
    std::shared_ptr<BaseTransport> old = std::exchange(state_->transport, std::move(transport));
    if (!state_->paused || old == state_->transport) return;
    // The pause moves: reads resume only the new transport from now on, so
    // the old one (the layer's transport below) must not stay paused.
    if (auto* reading = dynamic_cast<ReadTransport*>(old.get())) reading->resume_reading();
    if (auto* reading = dynamic_cast<ReadTransport*>(state_->transport.get()))
        reading->pause_reading();
}

void StreamReader::feed_data(std::string_view data) {
    detail::ReaderState& s = *state_;
    if (s.eof) throw RuntimeError("feed_data after feed_eof");
    if (data.empty()) return;
    s.append(data);
    s.wakeup();
    if (s.transport && !s.paused && s.size() > 2 * s.limit) {
        if (auto* reading = dynamic_cast<ReadTransport*>(s.transport.get())) {
            reading->pause_reading();
            s.paused = true;
        }
    }
}

void StreamReader::feed_eof() {
    state_->eof = true;
    state_->wakeup();
}

void StreamReader::set_exception(std::exception_ptr error) {
    detail::ReaderState& s = *state_;
    s.exception = error;
    if (!s.waiter) return;
    Future<> w = std::move(*s.waiter);
    s.waiter.reset();
    if (!w.cancelled()) w.set_exception(std::move(error));
}

namespace detail {
Coro<std::string> read_state(std::shared_ptr<ReaderState> s, std::ptrdiff_t n);

// read(-1) in a coroutine of its own: a frame holds every local of its
// coroutine for as long as it waits, and a connection's reader waits in
// read(n) for as long as the connection is idle.
Coro<std::string> read_all(std::shared_ptr<ReaderState> s) {
    std::string all;
    for (;;) {
        std::string block = co_await read_state(s, static_cast<std::ptrdiff_t>(s->limit));
        if (block.empty()) break;
        all += block;
    }
    co_return all;
}

Coro<std::string> read_state(std::shared_ptr<ReaderState> s, std::ptrdiff_t n) {
    if (s->exception) std::rethrow_exception(s->exception);
    if (n == 0) co_return std::string();
    if (n < 0) co_return co_await read_all(std::move(s));
    if (s->size() == 0 && !s->eof) co_await s->wait_for_data("read");
    std::string data = s->take(std::min(static_cast<std::size_t>(n), s->size()));
    s->maybe_resume_transport();
    co_return data;
}
}  // namespace detail

Coro<std::string> StreamReader::read(std::ptrdiff_t n) {
    return detail::read_state(state_, n);
}

namespace detail {
Coro<std::string> readexactly_state(std::shared_ptr<ReaderState> s, std::size_t n) {
    if (s->exception) std::rethrow_exception(s->exception);
    if (n == 0) co_return std::string();
    while (s->size() < n) {
        if (s->eof) {
            std::string partial(s->view());
            s->clear();
            throw IncompleteReadError(std::move(partial), n);
        }
        co_await s->wait_for_data("readexactly");
    }
    std::string data = s->take(n);
    s->maybe_resume_transport();
    co_return data;
}
}  // namespace detail

Coro<std::string> StreamReader::readexactly(std::size_t n) {
    return detail::readexactly_state(state_, n);
}

Coro<std::string> StreamReader::readuntil(std::string_view separator) {
    // Copied now: the caller's view need not outlive this call.
    std::vector<std::string> separators{std::string(separator)};
    return readuntil_any(std::move(separators));
}

Coro<std::string> StreamReader::readuntil(std::vector<std::string> separators) {
    return readuntil_any(std::move(separators));
}

namespace detail {

/// readuntil's search of the buffered data, one pass per arrival of data.
/// `separators` are sorted shortest first, and outlive the search.
class SeparatorSearch {
  public:
    enum class Result { found, need_more, too_long };

    explicit SeparatorSearch(std::span<const std::string_view> separators) noexcept
        : separators_(separators),
          min_seplen_(separators.front().size()),
          max_seplen_(separators.back().size()) {}

    /// `found`: the match ends at match_end(); `too_long`: it starts past the
    /// limit, at consumed(). Throws LimitOverrunError when no separator is
    /// buffered and the data already exceeds the limit.
    Result next(const ReaderState& s) {
        const std::string_view buffer = s.view();
        if (buffer.size() - offset_ < min_seplen_) return Result::need_more;
        bool found = false;
        if (separators_.size() == 1 && max_seplen_ == 1) {
            // readline's case: one byte to look for, which find(char) hands
            // to memchr at once, where find(string_view) sets up a general
            // search on every call.
            const std::size_t at = buffer.find(separators_.front().front(), offset_);
            if (at != std::string_view::npos) {
                found = true;
                match_start_ = at;
                match_end_ = at + 1;
            }
        } else {
            for (const std::string_view sep : separators_) {
                const std::size_t at = buffer.find(sep, offset_);
                if (at == std::string_view::npos) continue;
                if (!found || at + sep.size() < match_end_) {
                    found = true;
                    match_start_ = at;
                    match_end_ = at + sep.size();
                }
            }
        }
        if (found) return match_start_ > s.limit ? Result::too_long : Result::found;
        offset_ = buffer.size() + 1 > max_seplen_ ? buffer.size() + 1 - max_seplen_ : 0;
        if (offset_ > s.limit)
            throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset_);
        return Result::need_more;
    }
    std::size_t match_end() const noexcept { return match_end_; }
    std::size_t consumed() const noexcept { return match_start_; }
    static constexpr const char* too_long_message =
        "Separator is found, but chunk is longer than limit";

  private:
    std::span<const std::string_view> separators_;
    std::size_t min_seplen_, max_seplen_;
    std::size_t offset_ = 0;
    std::size_t match_start_ = 0, match_end_ = 0;
};

Coro<std::string> readuntil_state(std::shared_ptr<ReaderState> s,
                                  std::vector<std::string> separators) {
    std::sort(separators.begin(), separators.end(),
              [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
    if (separators.empty())
        throw std::invalid_argument("Separator should contain at least one element");
    if (separators.front().empty())
        throw std::invalid_argument("Separator should be at least one-byte string");
    if (s->exception) std::rethrow_exception(s->exception);
    const std::vector<std::string_view> views(separators.begin(), separators.end());
    SeparatorSearch search(views);
    for (;;) {
        const SeparatorSearch::Result result = search.next(*s);
        if (result == SeparatorSearch::Result::too_long)
            throw LimitOverrunError(SeparatorSearch::too_long_message, search.consumed());
        if (result == SeparatorSearch::Result::found) break;
        if (s->eof) {
            std::string partial(s->view());
            s->clear();
            throw IncompleteReadError(std::move(partial), std::nullopt);
        }
        co_await s->wait_for_data("readuntil");
    }
    std::string chunk = s->take(search.match_end());
    s->maybe_resume_transport();
    co_return chunk;
}
}  // namespace detail

Coro<std::string> StreamReader::readuntil_any(std::vector<std::string> separators) {
    return detail::readuntil_state(state_, std::move(separators));
}

namespace detail {
// readuntil("\n") with Python's readline endings, in one coroutine: a
// pipelined server calls this for every line it reads, mostly with the
// line already buffered.
Coro<std::string> readline_state(std::shared_ptr<ReaderState> s) {
    static constexpr std::string_view newline[] = {"\n"};
    if (s->exception) std::rethrow_exception(s->exception);
    SeparatorSearch search(newline);
    std::optional<std::size_t> overrun;
    std::string overrun_message;
    try {
        for (;;) {
            const SeparatorSearch::Result result = search.next(*s);
            if (result == SeparatorSearch::Result::found) {
                std::string line = s->take(search.match_end());
                s->maybe_resume_transport();
                co_return line;
            }
            if (result == SeparatorSearch::Result::too_long) {
                overrun = search.consumed();
                overrun_message = SeparatorSearch::too_long_message;
                break;
            }
            if (s->eof) {
                // The partial line, as IncompleteReadError.partial would carry it.
                std::string partial(s->view());
                s->clear();
                co_return partial;
            }
            co_await s->wait_for_data("readuntil");
        }
    } catch (const LimitOverrunError& e) {
        overrun = e.consumed;
        overrun_message = e.what();
    }
    // Skip the over-long line (or all that was buffered) and report it as
    // Python's ValueError.
    const std::string_view buffer = s->view();
    if (buffer.substr(*overrun, 1) == "\n") {
        s->take(*overrun + 1);
    } else {
        s->clear();
    }
    s->maybe_resume_transport();
    throw std::invalid_argument(overrun_message);
}
}  // namespace detail

Coro<std::string> StreamReader::readline() {
    return detail::readline_state(state_);
}

namespace detail {
Coro<std::optional<std::string>> next_line_state(std::shared_ptr<ReaderState> s) {
    std::string line = co_await readline_state(std::move(s));
    if (line.empty()) co_return std::nullopt;  // StopAsyncIteration
    co_return std::optional<std::string>(std::move(line));
}
}  // namespace detail

Coro<std::optional<std::string>> StreamReader::next_line() {
    return detail::next_line_state(state_);
}

// -- StreamReaderProtocol -----------------------------------------------------------

namespace detail {

StreamReaderProtocol::StreamReaderProtocol(std::optional<StreamReader> reader,
                                           std::shared_ptr<ConnectedCallback> on_connected)
    : reader_(std::move(reader)),
      on_connected_(std::move(on_connected)),
      server_side_(on_connected_ != nullptr),
      closed_(get_running_loop().create_future()) {}

void StreamReaderProtocol::replace_transport(std::shared_ptr<Transport> transport) {
    if (reader_) reader_->replace_transport(library_key, std::move(transport));
}

void StreamReaderProtocol::connection_made(BaseTransport& transport) {
    std::shared_ptr<BaseTransport> shared = transport.shared_from_this();
    if (reader_) reader_->set_transport(library_key, shared);
    if (!on_connected_) return;
    auto stream = std::dynamic_pointer_cast<Transport>(shared);
    StreamWriter writer(library_key, stream, shared_from_this(), reader_);
    Coro<void> handler = (*on_connected_)(*reader_, std::move(writer));
    on_connected_.reset();
    EventLoop& loop = get_running_loop();
    Task<void> task = loop.create_task(std::move(handler));
    // Held, as streams.py's callback holds it, so that a failure can name
    // the transport (closed by then, when the handler dropped its writer).
    task.add_done_callback([transport = std::move(stream), &loop](Future<>& done) {
        if (done.cancelled()) {
            if (transport) transport->close();
            return;
        }
        if (std::exception_ptr error = done.exception()) {
            ExceptionContext context;
            context.message = "Unhandled exception in client_connected_cb";
            context.exception = error;
            context.transport = transport;
            loop.call_exception_handler(context);
            if (transport) transport->close();
        }
    });
}

void StreamReaderProtocol::connection_lost(std::exception_ptr error) {
    // Twice when a layer over the transport failed after reporting the loss.
    if (connection_lost_) return;
    if (reader_) {
        if (error) {
            reader_->set_exception(error);
        } else {
            reader_->feed_eof();
        }
    }
    if (!closed_.done()) {
        if (error) {
            closed_.set_exception(error);
            closed_.exception();  // retrieved: wait_closed is optional
        } else {
            closed_.set_result();
        }
    }
    connection_lost_ = true;
    if (paused_) {  // wake the writers waiting in drain()
        for (Future<>& waiter : drain_waiters_) {
            if (waiter.done()) continue;
            if (error) {
                waiter.set_exception(error);
            } else {
                waiter.set_result();
            }
        }
    }
    reader_.reset();
}

void StreamReaderProtocol::data_received(std::string_view data) {
    if (reader_) reader_->feed_data(data);
}

bool StreamReaderProtocol::eof_received() {
    if (reader_) reader_->feed_eof();
    return true;
}

void StreamReaderProtocol::resume_writing() {
    paused_ = false;
    for (Future<>& waiter : drain_waiters_) {
        if (!waiter.done()) waiter.set_result();
    }
}

Coro<void> StreamReaderProtocol::drain_helper() {
    std::shared_ptr<StreamReaderProtocol> keep = shared_from_this();
    if (connection_lost_) {
        throw std::system_error(std::make_error_code(std::errc::connection_reset),
                                "Connection lost");
    }
    if (!paused_) co_return;
    Future<> waiter = get_running_loop().create_future();
    drain_waiters_.push_back(waiter);
    Outcome<void> drained = co_await try_await(waiter);
    std::erase(drain_waiters_, waiter);
    std::move(drained).get();
}

}  // namespace detail

// -- StreamWriter ---------------------------------------------------------------------

StreamWriter::StreamWriter(detail::LibraryKey, std::shared_ptr<Transport> transport,
                           std::shared_ptr<detail::StreamReaderProtocol> protocol,
                           std::optional<StreamReader> reader)
    : state_(std::make_shared<detail::WriterState>()) {
    state_->transport = std::move(transport);
    state_->protocol = std::move(protocol);
    state_->reader = std::move(reader);
}

void StreamWriter::write(std::string_view data) {
    state_->transport->write(data);
}
void StreamWriter::writelines(const std::vector<std::string>& lines) {
    state_->transport->writelines(lines);
}
bool StreamWriter::can_write_eof() const {
    return state_->transport->can_write_eof();
}
void StreamWriter::write_eof() {
    state_->transport->write_eof();
}
void StreamWriter::close() {
    state_->transport->close();
}
bool StreamWriter::is_closing() const {
    return state_->transport->is_closing();
}
Transport& StreamWriter::transport() const {
    return *state_->transport;
}
std::optional<Address> StreamWriter::peername() const {
    return state_->transport->peername();
}
std::optional<Address> StreamWriter::sockname() const {
    return state_->transport->sockname();
}
std::any StreamWriter::get_extra_info(std::string_view name) const {
    return state_->transport->get_extra_info(name);
}

namespace detail {
Coro<void> wait_closed_state(std::shared_ptr<WriterState> s) {
    Future<> closed = s->protocol->closed();
    co_await closed;
}

Coro<void> drain_state(std::shared_ptr<WriterState> s) {
    if (s->reader) {
        if (std::exception_ptr error = s->reader->exception()) std::rethrow_exception(error);
    }
    if (s->transport->is_closing()) {
        // Let connection_lost run first, so that a loop of write + drain sees
        // the error of a closed connection.
        co_await sleep(0);
    }
    // Most drains find nothing to wait for: no second coroutine then.
    if (s->protocol->drain_would_wait()) co_await s->protocol->drain_helper();
}

// Awaits `upgrade` from inside a coroutine, so that one that throws before
// it returns its coroutine fails like one that throws later.
Coro<std::shared_ptr<Transport>> run_upgrade(StreamWriter::TransportUpgrade& upgrade,
                                             Transport& transport,
                                             std::shared_ptr<StreamReaderProtocol> protocol) {
    co_return co_await upgrade(transport, protocol, protocol->server_side());
}

Coro<void> upgrade_state(std::shared_ptr<WriterState> s, StreamWriter::TransportUpgrade upgrade) {
    co_await drain_state(s);
    if (s->transport->is_closing()) throw RuntimeError("Transport is closing");
    std::shared_ptr<StreamReaderProtocol> protocol = s->protocol;
    Outcome<std::shared_ptr<Transport>> outcome =
        co_await try_await(run_upgrade(upgrade, *s->transport, protocol));
    std::exception_ptr error = outcome.exception();
    if (!error && !outcome.value()) {
        error =
            std::make_exception_ptr(RuntimeError("the transport upgrade returned no transport"));
    }
    if (error) {
        // Once a layer went in, the transport below reports to it, not to
        // this stream: end the stream here, or its reader and wait_closed()
        // would hang. An upgrade that failed before that leaves it usable.
        if (s->transport->get_protocol() != protocol) {
            s->transport->close();
            protocol->connection_lost(is_cancellation(error) ? nullptr : error);
        }
        std::rethrow_exception(error);
    }
    std::shared_ptr<Transport> upgraded = std::move(outcome).get();
    s->transport = upgraded;
    protocol->replace_transport(std::move(upgraded));
}
}  // namespace detail

namespace detail {
namespace {
/// StreamWriter::start_tls's upgrade: loop.start_tls with the stream's side.
Coro<std::shared_ptr<Transport>> tls_upgrade(Transport& transport,
                                             std::shared_ptr<BaseProtocol> protocol,
                                             bool server_side, SSLContext context,
                                             TlsOptions options) {
    options.server_side = server_side;
    Transport* upgraded =
        co_await get_running_loop().start_tls(transport, *protocol, context, options);
    co_return std::dynamic_pointer_cast<Transport>(upgraded->shared_from_this());
}
}  // namespace
}  // namespace detail

// Member functions hand the state to free coroutines: nothing depends on the
// handle object (`this`) once the Coro exists.
Coro<void> StreamWriter::wait_closed() {
    return detail::wait_closed_state(state_);
}
Coro<void> StreamWriter::drain() {
    return detail::drain_state(state_);
}
Coro<void> StreamWriter::upgrade_transport(TransportUpgrade upgrade) {
    return detail::upgrade_state(state_, std::move(upgrade));
}
Coro<void> StreamWriter::start_tls(SSLContext& sslcontext, TlsOptions options) {
    // A plain lambda that returns the coroutine: no captures live in a
    // lambda coroutine's frame (docs/python-to-cpp.md, lambda coroutines).
    TransportUpgrade upgrade = [context = sslcontext, options](
                                   Transport& transport, std::shared_ptr<BaseProtocol> protocol,
                                   bool server_side) {
        return detail::tls_upgrade(transport, std::move(protocol), server_side, context, options);
    };
    return upgrade_transport(std::move(upgrade));
}

// -- open_connection / start_server ----------------------------------------------------

namespace detail {

// base_events.create_connection's checks: without ssl=, the TLS options are
// errors, not silently ignored.
void refuse_tls_options(const std::optional<std::string>& server_hostname,
                        const std::optional<std::chrono::nanoseconds>& ssl_handshake_timeout,
                        const std::optional<std::chrono::nanoseconds>& ssl_shutdown_timeout) {
    if (server_hostname) throw std::invalid_argument("server_hostname is only meaningful with ssl");
    if (ssl_handshake_timeout)
        throw std::invalid_argument("ssl_handshake_timeout is only meaningful with ssl");
    if (ssl_shutdown_timeout)
        throw std::invalid_argument("ssl_shutdown_timeout is only meaningful with ssl");
}

Coro<std::pair<StreamReader, StreamWriter>> open_stream(std::string host, int port,
                                                        OpenOptions opts, StreamAddress address) {
    if (!opts.ssl) {
        refuse_tls_options(opts.server_hostname, opts.ssl_handshake_timeout,
                           opts.ssl_shutdown_timeout);
    }
    EventLoop& loop = get_running_loop();
    StreamReader reader(opts.limit);
    auto protocol = std::make_shared<StreamReaderProtocol>(reader);
    auto factory = [protocol] { return protocol; };
    ConnectionOptions copts;
    copts.ssl = opts.ssl;
    copts.server_hostname = opts.server_hostname;
    copts.ssl_handshake_timeout = opts.ssl_handshake_timeout;
    copts.ssl_shutdown_timeout = opts.ssl_shutdown_timeout;
    copts.local_addr = opts.local_addr;
    copts.happy_eyeballs_delay = opts.happy_eyeballs_delay;
    copts.interleave = opts.interleave;
    copts.family = opts.family;
    copts.all_errors = opts.all_errors;
    // An if, not ?:, around the co_awaits: compilers have mishandled
    // co_await in a conditional expression
    // (https://github.com/llvm/llvm-project/issues/59181).
    std::pair<Transport*, StreamReaderProtocol*> connected;
    if (address == StreamAddress::unix_path) {
        connected = co_await loop.create_unix_connection(factory, std::move(host), copts);
    } else if (address == StreamAddress::no_host) {
        connected = co_await loop.create_connection(factory, std::nullopt, port, copts);
    } else {
        connected = co_await loop.create_connection(factory, std::move(host), port, copts);
    }
    auto transport = std::dynamic_pointer_cast<Transport>(connected.first->shared_from_this());
    StreamWriter writer(library_key, std::move(transport), protocol, reader);
    co_return std::pair{std::move(reader), std::move(writer)};
}

Coro<std::pair<StreamReader, StreamWriter>> open_socket_stream(Socket sock, OpenOptions opts) {
    EventLoop& loop = get_running_loop();
    StreamReader reader(opts.limit);
    auto protocol = std::make_shared<StreamReaderProtocol>(reader);
    auto factory = [protocol] { return protocol; };
    std::pair<Transport*, StreamReaderProtocol*> connected =
        co_await loop.connect_accepted_socket(factory, std::move(sock));
    auto transport = std::dynamic_pointer_cast<Transport>(connected.first->shared_from_this());
    StreamWriter writer(library_key, std::move(transport), protocol, reader);
    if (opts.ssl) {
        // create_connection(sock=, ssl=): the client's handshake before the
        // streams are handed out; a failed one closes the socket.
        TlsOptions tls{.server_hostname = opts.server_hostname,
                       .ssl_handshake_timeout = opts.ssl_handshake_timeout,
                       .ssl_shutdown_timeout = opts.ssl_shutdown_timeout};
        Outcome<void> upgraded = co_await try_await(writer.start_tls(*opts.ssl, tls));
        if (!upgraded.has_value()) writer.transport().abort();
        std::move(upgraded).get();
    }
    co_return std::pair{std::move(reader), std::move(writer)};
}
}  // namespace detail

Coro<std::pair<StreamReader, StreamWriter>> open_connection(Socket&& sock, OpenOptions opts) {
    // Checked before the socket moves: refused options leave it to the caller.
    if (!opts.ssl) {
        detail::refuse_tls_options(opts.server_hostname, opts.ssl_handshake_timeout,
                                   opts.ssl_shutdown_timeout);
    } else if (!opts.server_hostname) {
        throw std::invalid_argument("You must set server_hostname when using ssl without a host");
    }
    detail::check_limit(opts.limit);
    return detail::open_socket_stream(std::move(sock), std::move(opts));
}

namespace detail {

namespace {
/// What start_server's options say about the server and its protocols.
ServerOptions server_options(const StartOptions& opts) {
    ServerOptions sopts;
    sopts.ssl = opts.ssl;
    sopts.ssl_handshake_timeout = opts.ssl_handshake_timeout;
    sopts.ssl_shutdown_timeout = opts.ssl_shutdown_timeout;
    sopts.family = opts.family;
    sopts.backlog = opts.backlog;
    sopts.reuse_address = opts.reuse_address;
    sopts.reuse_port = opts.reuse_port;
    sopts.keep_alive = opts.keep_alive;
    sopts.start_serving = opts.start_serving;
    return sopts;
}

auto protocol_factory(std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback,
                      std::size_t limit) {
    return [callback = std::move(callback), limit] {
        return std::make_shared<StreamReaderProtocol>(StreamReader(limit), callback);
    };
}

/// The checks of start_server's options, made before anything is opened.
void check_start_options(const StartOptions& opts) {
    if (!opts.ssl) {
        refuse_tls_options(std::nullopt, opts.ssl_handshake_timeout, opts.ssl_shutdown_timeout);
    }
    check_limit(opts.limit);  // here, not at the first connection's StreamReader
}

Coro<Server> serve_socket(std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback,
                          Socket sock, StartOptions opts) {
    co_return co_await get_running_loop().create_server(
        protocol_factory(std::move(callback), opts.limit), std::move(sock), server_options(opts));
}
}  // namespace

Coro<Server> start_stream_server(std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback,
                                 std::vector<std::string> hosts, int port, StartOptions opts,
                                 StreamAddress address) {
    check_start_options(opts);
    EventLoop& loop = get_running_loop();
    auto factory = protocol_factory(std::move(callback), opts.limit);
    const ServerOptions sopts = server_options(opts);
    if (address == StreamAddress::unix_path)
        co_return co_await loop.create_unix_server(factory, std::move(hosts.front()), sopts);
    co_return co_await loop.create_server(factory, std::move(hosts), port, sopts);
}

Coro<Server> start_socket_stream_server(
    std::shared_ptr<StreamReaderProtocol::ConnectedCallback> callback, Socket&& sock,
    StartOptions opts) {
    // Checked before the socket moves: refused options leave it to the caller.
    check_start_options(opts);
    return serve_socket(std::move(callback), std::move(sock), opts);
}

}  // namespace detail
}  // namespace asyncio
