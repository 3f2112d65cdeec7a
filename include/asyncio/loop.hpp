// The event loop (Lib/asyncio/base_events.py, events.py AbstractEventLoop).
//
// One EventLoop runs one thread's work: a ready queue of callbacks and task
// steps, a heap of timers, and one I/O backend. Each iteration is CPython's
// _run_once: poll the backend (without blocking if anything is ready), move
// expired timers to the ready queue, then run exactly the callbacks that were
// ready when the iteration started.
//
//     auto loop = asyncio::new_event_loop();
//     loop->call_soon([&] { fmt::print("Hello World\n"); loop->stop(); });
//     loop->run_forever();
//     loop->close();
//
// A loop belongs to the thread that runs it. call_soon_threadsafe is the one
// scheduling call other threads may use; in debug mode the others throw when
// called from the wrong thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "asyncio/backend.hpp"
#include "asyncio/clock.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/detail/loop_core.hpp"
#include "asyncio/detail/network_forward.hpp"
#include "asyncio/exception_context.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/export.hpp"
#include "asyncio/future.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

/// loop.set_task_factory: called for every new task before its first step,
/// with the options create_task was given. It may change them (name,
/// context, eager_start: they are applied after it returns) or the task; it
/// cannot replace the task's type (C++: no factory can build every Task<T>).
using TaskFactory = std::function<void(EventLoop&, Task<>&, TaskOptions&)>;

/// Counters for tests and diagnostics.
struct LoopStats {
    std::size_t ready = 0;             ///< callbacks waiting in the ready queue
    std::size_t timers = 0;            ///< entries in the timer heap, cancelled ones included
    std::size_t cancelled_timers = 0;  ///< cancelled entries not yet removed from the heap
    std::size_t tasks = 0;             ///< pending tasks
};

class Executor;

namespace detail {
/// Lets worker threads reach a loop only while it exists and is open.
struct ThreadsafeGate {
    std::mutex mutex;
    EventLoop* loop = nullptr;
};

/// A transport as the loop sees it when add_reader or add_writer names the
/// descriptor the transport owns (CPython's loop._transports).
class ASYNCIO_EXPORT FdOwner {
  public:
    /// Whether the descriptor is in use: the transport is not closing.
    virtual bool fd_in_use() const noexcept = 0;
    /// How the error names the transport.
    virtual std::string describe_owner() const = 0;

  protected:
    ~FdOwner() = default;
};

/// A signal handler's callable (add_signal_handler), shared by the calls
/// that each delivery schedules.
class ASYNCIO_EXPORT SignalCallback {
  public:
    virtual ~SignalCallback() = default;
    virtual void operator()() = 0;
};

template <class F>
class SignalCallbackFor final : public SignalCallback {
  public:
    template <class A>
    explicit SignalCallbackFor(A&& fn) : fn_(std::forward<A>(fn)) {}
    void operator()() override { static_cast<void>(std::invoke(fn_)); }

  private:
    F fn_;
};

/// A loop's signal handlers and wake-up pipe (src/unix_events.cpp).
struct SignalState;
}  // namespace detail

template <class A>
concept Callback = std::invocable<std::decay_t<A>&> && std::move_constructible<std::decay_t<A>>;

class ASYNCIO_EXPORT EventLoop : public detail::LoopCore {
  public:
    /// A delay that never expires in practice (about 73 years), small enough
    /// that adding it to the clock cannot overflow.
    static constexpr std::int64_t kNeverNs = std::numeric_limits<std::int64_t>::max() / 4;

    /// A loop on the best backend the OS accepts (ASYNCIO_BACKEND if set):
    /// io_uring, else epoll, else poll. In debug mode it logs which, and why
    /// a better one was refused.
    EventLoop();
    /// A loop on `backend`; RuntimeError if it is not available here.
    explicit EventLoop(Backend backend);
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;
    /// Closes the loop if needed; a loop must not be destroyed while running.
    ~EventLoop();

    // Running and stopping -------------------------------------------------

    /// Runs until stop() is called.
    void run_forever();

    /// Runs until `aw` (a Coro, Task or Future) is done and returns its
    /// result or rethrows its exception. A Coro is wrapped in a task.
    template <class A>
    awaitable_result_t<A> run_until_complete(A&& aw);

    /// Stops run_forever after the current iteration (before one, if called
    /// while not running: the next run_forever runs a single iteration).
    void stop() noexcept { stopping_ = true; }
    bool is_running() const noexcept { return running_; }
    bool is_closed() const noexcept { return closed_; }
    /// Drops pending callbacks and timers and frees the tasks still pending
    /// (each reported as "Task was destroyed but it is pending!").
    /// RuntimeError if the loop is running; a second close does nothing.
    void close();

    // Scheduling callbacks --------------------------------------------------

    template <Callback F>
    Handle call_soon(F&& fn, std::source_location where = std::source_location::current()) {
        check_closed();
        if (debug_) check_thread();
        auto* state = detail::HandleState::create(*this, std::forward<F>(fn),
                                                  detail::HandleKind::call_soon, where);
        state->add_ref();  // the ready queue's reference
        ready_.push(*state);
        return Handle(state);
    }

    /// The thread-safe call_soon: wakes the loop if it is waiting for I/O.
    template <Callback F>
    Handle call_soon_threadsafe(F&& fn,
                                std::source_location where = std::source_location::current()) {
        auto* state = detail::HandleState::create(*this, std::forward<F>(fn),
                                                  detail::HandleKind::threadsafe, where);
        state->add_ref();         // the queue's reference
        push_threadsafe(*state);  // throws, dropping both references, if closed
        return Handle(state);
    }

    template <class Rep, class Period, Callback F>
    TimerHandle call_later(std::chrono::duration<Rep, Period> delay, F&& fn,
                           std::source_location where = std::source_location::current()) {
        return schedule_timer(now_ns() + clamp_ns(delay), std::forward<F>(fn), where);
    }
    template <Callback F>
    TimerHandle call_later(double delay_seconds, F&& fn,
                           std::source_location where = std::source_location::current()) {
        return schedule_timer(now_ns() + std::max<std::int64_t>(0, seconds_to_ns(delay_seconds)),
                              std::forward<F>(fn), where);
    }
    /// Calls `fn` at `when`, in loop.time() seconds.
    template <Callback F>
    TimerHandle call_at(double when, F&& fn,
                        std::source_location where = std::source_location::current()) {
        return schedule_timer(seconds_to_ns(when), std::forward<F>(fn), where);
    }

    /// Seconds on the loop's clock: the monotonic clock, or its TestClock.
    /// Divided, not multiplied by 1e-9, so that a count of nanoseconds reads
    /// as the double nearest to it (9e6 ns as 0.009, not 0.009000000000000001).
    double time() const noexcept { return static_cast<double>(now_ns()) / 1e9; }

    /// Puts the loop on `clock` (nullptr: back on the monotonic clock), which
    /// must outlive its use. RuntimeError while the loop runs or has timers
    /// scheduled, since their deadlines are on the old clock.
    void set_clock(TestClock* clock);
    TestClock* get_clock() const noexcept { return clock_; }
    /// Library use, on the loop's thread: the loop awaits work on another
    /// thread (an executor job), which a TestClock must not jump past. Until
    /// the matching release_clock(), an idle loop waits for it in wall time,
    /// up to its next timer.
    void hold_clock() noexcept { ++clock_holds_; }
    void release_clock() noexcept { --clock_holds_; }

    // Futures and tasks -----------------------------------------------------

    /// Not thread-checked in debug mode, as in CPython: making a future
    /// touches no loop state.
    template <class T = void>
    Future<T> create_future() {
        return Future<T>(new detail::FutureState<T>(*this), detail::AdoptRef{});
    }

    template <class T>
    Task<T> create_task(Coro<T> coro, TaskOptions opts = {},
                        std::source_location where = std::source_location::current()) {
        if (closed_) {
            coro.close();
            check_closed();
        }
        if (debug_) check_thread();
        Task<T> task = detail::make_task(*this, std::move(coro), where);
        if (task_factory_) {
            Task<> erased(task);
            task_factory_(*this, erased, opts);
        }
        if (opts.name) task.base().set_name(std::move(*opts.name));
        if (opts.context) task.base().use_context(*opts.context);
        if (opts.eager_start && running_ && detail::running_loop() == this) {
            task.base().start_eagerly();
        } else {
            task.base().start();
        }
        return task;
    }

    void set_task_factory(TaskFactory factory) { task_factory_ = std::move(factory); }

    // Executors (threads.hpp) ------------------------------------------------------

    /// Runs `fn()` on `executor` (nullptr: the default ThreadPoolExecutor)
    /// and returns a Future of its result. Cancelling the Future before the
    /// work starts keeps it from running. Defined in threads.hpp, which
    /// callers include, so that the loop does not pull in the thread pool.
    template <class F>
    Future<std::invoke_result_t<F&>> run_in_executor(Executor* executor, F fn);
    void set_default_executor(std::unique_ptr<Executor> executor);
    /// Closes every async generator of this loop that started and has not
    /// finished (aclose() on each, concurrently); errors are reported.
    Coro<void> shutdown_asyncgens();
    /// Shuts the default executor down and waits (in another thread, so the
    /// loop keeps running) for its threads; after `timeout_seconds` (default
    /// 300) it stops waiting and logs a warning.
    Coro<void> shutdown_default_executor(std::optional<double> timeout_seconds = {});
    const TaskFactory& get_task_factory() const noexcept { return task_factory_; }

    // Watching file descriptors ----------------------------------------------

    /// Calls `fn` whenever `fd` is readable (level-triggered), until
    /// remove_reader(fd). Replaces an earlier reader of `fd`. RuntimeError
    /// if a transport that is not closing owns `fd` (also for add_writer,
    /// remove_reader, remove_writer), as in CPython.
    template <Callback F>
    void add_reader(int fd, F&& fn, std::source_location where = std::source_location::current()) {
        check_closed();
        if (debug_) check_thread();
        ensure_fd_no_transport(fd);
        add_watch(fd, Watching::reads,
                  detail::HandleState::create(*this, std::forward<F>(fn),
                                              detail::HandleKind::call_soon, where));
    }
    /// Stops watching `fd` for reading; false if it was not watched.
    bool remove_reader(int fd) {
        ensure_fd_no_transport(fd);
        return remove_watch(fd, Watching::reads);
    }

    template <Callback F>
    void add_writer(int fd, F&& fn, std::source_location where = std::source_location::current()) {
        check_closed();
        if (debug_) check_thread();
        ensure_fd_no_transport(fd);
        add_watch(fd, Watching::writes,
                  detail::HandleState::create(*this, std::forward<F>(fn),
                                              detail::HandleKind::call_soon, where));
    }
    bool remove_writer(int fd) {
        ensure_fd_no_transport(fd);
        return remove_watch(fd, Watching::writes);
    }

    // UNIX signals (src/unix_events.cpp) -------------------------------------------

    /// Calls `fn` in the loop's thread, through call_soon, each time `sig`
    /// arrives; a second call for the same signal replaces the handler.
    /// std::invalid_argument if `sig` is not a valid signal number,
    /// RuntimeError("sig N cannot be caught") for SIGKILL and SIGSTOP,
    /// RuntimeError if the loop is closed. Unlike CPython, any thread's
    /// loop may add handlers: a signal is delivered to every loop that
    /// handles it.
    template <Callback F>
    void add_signal_handler(int sig, F&& fn,
                            std::source_location where = std::source_location::current()) {
        using C = std::decay_t<F>;
        set_signal_handler(sig, std::make_shared<detail::SignalCallbackFor<C>>(std::forward<F>(fn)),
                           where);
    }
    /// Removes the handler of `sig` and restores SIG_DFL (unless another
    /// loop still handles `sig`); false if the loop had no handler for it.
    /// std::invalid_argument if `sig` is not a valid signal number.
    bool remove_signal_handler(int sig);
    /// Library use (the child watcher's SIGCHLD): calls `fn` in the loop's
    /// thread, from the loop's wake-up, once for each delivery of `sig`,
    /// besides a handler added with add_signal_handler, which it neither
    /// replaces nor is replaced by. A second call replaces `fn`. close()
    /// removes it; when no loop wants `sig` any more, its disposition from
    /// before the first watch comes back.
    void add_signal_watch(detail::LibraryKey, int sig, std::function<void()> fn);
    void remove_signal_watch(detail::LibraryKey, int sig) noexcept;
    /// Library use (the subprocess transport's child watcher): calls `fn`
    /// in the loop's thread once process `pid` has exited (it is not
    /// reaped), and again after each call until remove_process_watch(),
    /// as add_reader does while its fd stays readable. `pidfd` is a pidfd
    /// for `pid` or -1; without one only a backend that watches processes
    /// itself (kqueue) can do it, elsewhere std::system_error (ENOSYS).
    void add_process_watch(detail::LibraryKey, int pid, int pidfd, std::function<void()> fn);
    /// Stops watching `pid`; its pidfd may be closed once this returns.
    void remove_process_watch(detail::LibraryKey, int pid) noexcept;
    /// Library use (Runner.run): in the main thread, if SIGINT's disposition
    /// is SIG_DFL, handles SIGINT with `on_first` and makes a second SIGINT
    /// restore SIG_DFL and interrupt the process; false if not installed.
    bool install_runner_sigint(detail::LibraryKey, std::function<void()> on_first);
    /// Undoes install_runner_sigint unless a handler replaced it since.
    void uninstall_runner_sigint(detail::LibraryKey) noexcept;

    // Sockets (socket.hpp) ---------------------------------------------------------
    // The low-level socket operations; the socket must be non-blocking (every
    // Socket is). OS errors are std::system_error; a cancelled task's
    // operation is cancelled. Data passed as string_view must outlive the
    // awaited coroutine.

    /// Receives up to `n` bytes; empty at end of stream.
    Coro<std::string> sock_recv(Socket& sock, std::size_t n);
    /// Receives into `buffer`; returns the byte count (0 at end of stream).
    Coro<std::size_t> sock_recv_into(Socket& sock, std::span<std::byte> buffer);
    /// Receives one datagram of up to `bufsize` bytes and its sender.
    Coro<std::pair<std::string, Address>> sock_recvfrom(Socket& sock, std::size_t bufsize);
    Coro<std::pair<std::size_t, Address>> sock_recvfrom_into(Socket& sock,
                                                             std::span<std::byte> buffer);
    /// Sends one datagram to `address`; returns the bytes sent.
    Coro<std::size_t> sock_sendto(Socket& sock, std::string_view data, Address address);
    /// Sends all of `data`, waiting as long as it takes.
    Coro<void> sock_sendall(Socket& sock, std::string_view data);
    /// Connects to `address` (already resolved: see getaddrinfo).
    Coro<void> sock_connect(Socket& sock, Address address);
    /// Accepts a connection: the new socket and the peer's address.
    Coro<std::pair<Socket, Address>> sock_accept(Socket& sock);
    /// Sends `count` bytes (nullopt: to the end) of the file `file_fd` from
    /// `offset` with sendfile(2); with `fallback`, reads and sends when the
    /// zero-copy path is not available, else SendfileNotAvailableError.
    /// Returns the bytes sent.
    Coro<std::size_t> sock_sendfile(Socket& sock, int file_fd, std::size_t offset = 0,
                                    std::optional<std::size_t> count = {}, bool fallback = true);
    /// getaddrinfo(3) in the default executor (numeric hosts need none).
    Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port,
                                            AddrInfoOptions options);
    Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port);
    /// getnameinfo(3) in the default executor: (host, service).
    Coro<std::pair<std::string, std::string>> getnameinfo(Address address, int flags = 0);

    // Transports and protocols (transports.hpp, protocols.hpp) --------------------
    // A ProtocolFactory is a callable returning std::shared_ptr<P>, P a
    // protocol. The returned Transport* and P* stay valid at least until
    // P::connection_lost has returned. Each method without its options
    // argument is the same with default options (the option types are only
    // declared here, and C++ cannot default an incomplete argument). They
    // are defined in detail/open_transport.hpp, which transports.hpp and
    // streams.hpp include.

    /// Connects to host:port (resolved, every address tried in turn or raced
    /// with Happy Eyeballs) and returns the transport and protocol once
    /// connection_made ran.
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_connection(F factory, std::string host,
                                                                     int port,
                                                                     ConnectionOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_connection(F factory, std::string host,
                                                                     int port);
    /// create_connection(host=None, port): the addresses getaddrinfo gives
    /// for no host (loopback). A host of "" is a name that does not resolve
    /// (gaierror), as in CPython; only servers read "" as every interface.
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_connection(F factory, std::nullopt_t,
                                                                     int port,
                                                                     ConnectionOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_connection(F factory, std::nullopt_t,
                                                                     int port);
    /// Listens on every address `host` resolves to ("" or "0.0.0.0"...: all
    /// interfaces), calling `factory` for each connection.
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, std::string host, int port, ServerOptions opts);
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, std::string host, int port);
    /// create_server on several hosts.
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, std::vector<std::string> hosts, int port,
                               ServerOptions opts);
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, std::vector<std::string> hosts, int port);
    /// create_server on a listening socket made elsewhere (Python's sock=).
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, Socket listening, ServerOptions opts);
    template <ProtocolFactory F>
    Coro<Server> create_server(F factory, Socket listening);
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_unix_connection(F factory,
                                                                          std::string path,
                                                                          ConnectionOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> create_unix_connection(F factory,
                                                                          std::string path);
    template <ProtocolFactory F>
    Coro<Server> create_unix_server(F factory, std::string path, ServerOptions opts);
    template <ProtocolFactory F>
    Coro<Server> create_unix_server(F factory, std::string path);
    /// Wraps a connection accepted elsewhere in a transport; with ssl=, this
    /// end is the TLS server (CPython's server_side=True).
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> connect_accepted_socket(
        F factory, Socket sock, AcceptedSocketOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<Transport*, protocol_of_t<F>*>> connect_accepted_socket(F factory, Socket sock);
    template <ProtocolFactory F>
    Coro<std::pair<DatagramTransport*, protocol_of_t<F>*>> create_datagram_endpoint(
        F factory, DatagramOptions opts);
    /// create_datagram_endpoint on a socket made elsewhere (Python's sock=),
    /// which it takes over; std::invalid_argument if it is not a datagram
    /// socket. Its peer, if connected, is not the transport's fixed remote
    /// address, as in CPython.
    template <ProtocolFactory F>
    Coro<std::pair<DatagramTransport*, protocol_of_t<F>*>> create_datagram_endpoint(F factory,
                                                                                    Socket sock);
    /// A transport reading the pipe (or socket, or character device) `fd`,
    /// which it takes over: closing the transport closes it.
    template <ProtocolFactory F>
    Coro<std::pair<ReadTransport*, protocol_of_t<F>*>> connect_read_pipe(F factory, int fd);
    template <ProtocolFactory F>
    Coro<std::pair<WriteTransport*, protocol_of_t<F>*>> connect_write_pipe(F factory, int fd);
    /// loop.start_tls(transport, protocol, sslcontext, ...): upgrades the
    /// live connection `transport`, whose protocol is `protocol`, to TLS
    /// (ssl.hpp) and returns the transport `protocol` goes on with, once the
    /// handshake is done; it is valid until protocol.connection_lost
    /// returned. Handshake failures raise SSLError or
    /// SSLCertVerificationError here, and the connection is closed.
    /// std::invalid_argument if `protocol` is not the transport's.
    Coro<Transport*> start_tls(Transport& transport, BaseProtocol& protocol, SSLContext& sslcontext,
                               TlsOptions options);
    Coro<Transport*> start_tls(Transport& transport, BaseProtocol& protocol,
                               SSLContext& sslcontext);
    /// Sends a file over `transport` with sendfile(2) once its write buffer
    /// is flushed (reading paused meanwhile); with `fallback`, by reading and
    /// writing when zero-copy is not possible. Returns the bytes sent.
    Coro<std::size_t> sendfile(Transport& transport, int file_fd, std::size_t offset = 0,
                               std::optional<std::size_t> count = {}, bool fallback = true);

    // Subprocesses (subprocess.hpp) -------------------------------------------------
    // Defined in subprocess.hpp, which callers include, with SubprocessOptions.

    /// Runs `program` with `args` (searched in PATH when it has no slash)
    /// and returns the transport and protocol once connection_made ran.
    /// Without options the child's stdin, stdout and stderr are pipes, as
    /// CPython's defaults are; a SubprocessOptions{} inherits all three, as
    /// its fields say. The protocol must be a SubprocessProtocol.
    template <ProtocolFactory F>
    Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> subprocess_exec(
        F factory, std::string program, std::vector<std::string> args, SubprocessOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> subprocess_exec(
        F factory, std::string program, std::vector<std::string> args = {});
    /// subprocess_exec of "/bin/sh", "-c", `cmd`.
    template <ProtocolFactory F>
    Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> subprocess_shell(
        F factory, std::string cmd, SubprocessOptions opts);
    template <ProtocolFactory F>
    Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> subprocess_shell(F factory,
                                                                              std::string cmd);

    // Errors and debugging ----------------------------------------------------

    void set_exception_handler(ExceptionHandler handler) { handler_ = std::move(handler); }
    const ExceptionHandler& get_exception_handler() const noexcept { return handler_; }
    /// Calls the exception handler (the default one if none is set).
    void call_exception_handler(const ExceptionContext& context) noexcept;
    /// Logs `context` through the library's log sink.
    void default_exception_handler(const ExceptionContext& context) noexcept;

    bool get_debug() const noexcept { return debug_; }
    void set_debug(bool enabled) noexcept;
    /// In debug mode, callbacks running longer than this are logged (default 0.1 s).
    double slow_callback_duration = 0.1;

    std::string_view backend_name() const noexcept { return backend_->name(); }
    Backend backend_kind() const noexcept { return backend_->kind(); }
    /// The I/O backend, for code that awaits IoOps directly.
    IoBackend& backend() noexcept { return *backend_; }

    LoopStats stats() const noexcept;

    /// Library use: runs until `future` is done (run_until_complete without the result).
    void run_until_done(detail::LibraryKey, detail::FutureBase& future);
    /// Library use: the transport `owner` owns `fd` until it unregisters.
    void register_fd_owner(detail::LibraryKey, int fd, detail::FdOwner& owner);
    void unregister_fd_owner(detail::LibraryKey, int fd, const detail::FdOwner& owner) noexcept;
    /// Library use: runs `node` once this iteration's callbacks have run,
    /// before the loop polls again (what is queued meanwhile runs too). A
    /// transport's writes of one iteration leave in one system call this
    /// way, as uvloop's do. Dropped unrun when the loop closes.
    void run_before_poll(detail::LibraryKey, detail::ReadyNode& node) noexcept {
        before_poll_.push(node);
    }

  private:
    struct TimerEntry {
        std::int64_t when;
        std::uint64_t seq;
        detail::HandleState* handle;
    };
    struct TimerLater {
        bool operator()(const TimerEntry& a, const TimerEntry& b) const noexcept {
            return a.when != b.when ? a.when > b.when : a.seq > b.seq;
        }
    };
    struct Watch;

    static std::int64_t monotonic_ns() noexcept;
    std::int64_t now_ns() const noexcept {
        return clock_ == nullptr ? monotonic_ns() : clock_->now_ns_;
    }

    template <class Rep, class Period>
    static std::int64_t clamp_ns(std::chrono::duration<Rep, Period> delay) {
        using namespace std::chrono;
        if constexpr (std::is_floating_point_v<Rep>) {
            if (std::isnan(delay.count())) throw std::invalid_argument("delay must not be NaN");
        }
        if (delay <= delay.zero()) return 0;
        if (duration<double, std::nano>(delay).count() >= static_cast<double>(kNeverNs)) {
            return kNeverNs;
        }
        return duration_cast<nanoseconds>(delay).count();
    }
    static std::int64_t seconds_to_ns(double seconds) {
        if (std::isnan(seconds)) throw std::invalid_argument("delay and when must not be NaN");
        if (seconds * 1e9 >= static_cast<double>(kNeverNs)) return kNeverNs;
        if (seconds * 1e9 <= -static_cast<double>(kNeverNs)) return -kNeverNs;
        return static_cast<std::int64_t>(std::llround(seconds * 1e9));
    }

    template <class F>
    TimerHandle schedule_timer(std::int64_t when_ns, F&& fn, std::source_location where) {
        check_closed();
        if (debug_) check_thread();
        auto* state = detail::HandleState::create(*this, std::forward<F>(fn),
                                                  detail::HandleKind::timer, where);
        push_timer(*state, when_ns);
        return TimerHandle(state);
    }
    void push_timer(detail::HandleState& state, std::int64_t when_ns);

    void run_once();
    void run_ready(detail::ReadyNode& node) noexcept;
    void drain_before_poll() noexcept;
    void prune_timers() noexcept;
    void drain_threadsafe() noexcept;
    void push_threadsafe(detail::HandleState& state);
    void check_running() const;

    /// What a watch waits for: an fd readable (add_reader) or writable
    /// (add_writer), a process's exit, a signal's deliveries (where the
    /// backend counts them).
    enum class Watching { reads, writes, exits, signals };
    /// Calls `callback` each time the fd, the process or the signal `key`
    /// is ready, until removed; `pidfd` is a process watch's pidfd or -1.
    void add_watch(int key, Watching watching, detail::HandleState* callback, int pidfd = -1);
    bool remove_watch(int key, Watching watching);
    std::unordered_map<int, Watch*>& watches(Watching watching) noexcept;
    /// CPython's _ensure_fd_no_transport: RuntimeError if a transport uses `fd`.
    void ensure_fd_no_transport(int fd) const;
    void drop_everything() noexcept;

    void set_signal_handler(int sig, std::shared_ptr<detail::SignalCallback> fn,
                            std::source_location where);
    detail::SignalState& signal_state();
    /// After a handler or watch of `sig` came or went: tells the C handler
    /// (or the backend, where it counts signals) whether this loop wants it.
    void update_signal_interest(int sig);
    /// The slot's counts, when the C handler wrote to the loop's pipe.
    void dispatch_signals() noexcept;
    /// One delivery of `sig`: its watch, then its handler through call_soon.
    void deliver_signal(int sig) noexcept;
    /// close(): removes every signal handler and watch, frees the pipe.
    void close_signals() noexcept;

    std::unique_ptr<IoBackend> backend_;
    detail::ReadyQueue before_poll_;
    std::string backend_note_;  // why the default backend was not the best, for debug mode
    bool backend_logged_ = false;
    std::vector<TimerEntry> timers_;
    std::uint64_t timer_seq_ = 0;
    TestClock* clock_ = nullptr;
    std::size_t clock_holds_ = 0;

    std::mutex threadsafe_mutex_;
    detail::ReadyQueue threadsafe_queue_;
    std::atomic<bool> wake_pending_{false};
    std::atomic<bool> threadsafe_pending_{false};

    bool stopping_ = false;
    bool running_ = false;
    std::atomic<std::thread::id> thread_id_{};
    ExceptionHandler handler_;
    TaskFactory task_factory_;
    std::unordered_map<int, Watch*> readers_;
    std::unordered_map<int, Watch*> writers_;
    std::unordered_map<int, Watch*> process_watches_;  // by pid
    std::unordered_map<int, Watch*> signal_watches_;   // by signal, where the backend counts them
    std::unordered_map<int, detail::FdOwner*> fd_owners_;
    std::shared_ptr<detail::ThreadsafeGate> gate_ = std::make_shared<detail::ThreadsafeGate>();
    std::unique_ptr<Executor> default_executor_;
    bool executor_shutdown_called_ = false;
    detail::SignalState* signals_ = nullptr;  // made by the first handler or watch
    Executor& default_executor();

    friend class detail::LoopCore;
};

/// The loop running in this thread; RuntimeError("no running event loop") if
/// none (also declared in policy.hpp, with the other ways to find a loop).
ASYNCIO_EXPORT EventLoop& get_running_loop();

template <class A>
awaitable_result_t<A> EventLoop::run_until_complete(A&& aw) {
    using T = awaitable_result_t<A>;
    using Arg = std::remove_cvref_t<A>;
    if constexpr (std::is_same_v<Arg, Coro<T>>) {
        if (closed_ || running_ || detail::running_loop() != nullptr) {
            aw.close();  // refused before it started: not "never awaited"
            check_closed();
            check_running();
        }
        Task<T> task = create_task(std::move(aw));
        // The error below says the task did not finish; no need to report it again.
        task.base().set_log_destroy_pending(false);
        run_until_done(detail::library_key, *task.state());
        task.state()->check_result();
        return task.value(detail::library_key, task.state()->readers());
    } else {
        check_closed();
        Future<T> future = std::forward<A>(aw);
        if (&future.state()->loop() != this) {
            throw std::invalid_argument(
                "The future belongs to a different loop than the one specified as the loop "
                "argument");
        }
        run_until_done(detail::library_key, *future.state());
        future.state()->check_result();
        return future.value(detail::library_key, future.state()->readers());
    }
}

}  // namespace asyncio
