// Subprocesses (Lib/asyncio/subprocess.py): child processes with streams.
//
// clang-format off
//     proc = await asyncio.create_subprocess_exec(     asyncio::Process proc = co_await asyncio::create_subprocess_exec(
//         "ls", "-l",                                      "ls", {"-l"},
//         stdout=asyncio.subprocess.PIPE)                  {.stdout_ = asyncio::PIPE});
//     out, err = await proc.communicate()              auto [out, err] = co_await proc.communicate();
//     print(proc.returncode)                           fmt::print("{}\n", *proc.returncode());
// clang-format on
//
// The child is started with posix_spawn (no code of ours runs between fork
// and exec), with every descriptor but 0, 1 and 2 closed, and its exit is
// watched by the loop's backend (through a pidfd, or EVFILT_PROC with
// kqueue; SIGCHLD where neither works). A child is always reaped: one that
// outlives its Process, or its loop, is waited for in the background. On
// Windows, as CPython there: CreateProcessW with named pipes and only the
// three standard handles inherited, a wait on the process handle,
// TerminateProcess for terminate() and kill(), and COMSPEC /c for
// create_subprocess_shell.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "asyncio/coro.hpp"
#include "asyncio/detail/library_key.hpp"
#include "asyncio/detail/open_transport.hpp"
#include "asyncio/export.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/streams.hpp"
#include "asyncio/transports.hpp"

namespace asyncio {

/// Where one of the child's standard streams goes: asyncio.subprocess.PIPE,
/// DEVNULL, STDOUT (stderr only), an open descriptor, or the parent's own
/// (INHERIT, Python's None).
class Redirect {
  public:
    enum class Kind { inherit, pipe, devnull, stdout_, fd };

    /// The descriptor `fd`, which the child gets as its stream (it stays
    /// open in the parent). std::invalid_argument at spawn if negative.
    constexpr Redirect(int fd) noexcept : kind_(Kind::fd), fd_(fd) {}  // NOLINT: Python's stdin=fd
    constexpr explicit Redirect(Kind kind) noexcept : kind_(kind) {}

    constexpr Kind kind() const noexcept { return kind_; }
    constexpr int fd() const noexcept { return fd_; }
    constexpr bool operator==(const Redirect&) const noexcept = default;

  private:
    Kind kind_;
    int fd_ = -1;
};

inline constexpr Redirect INHERIT{Redirect::Kind::inherit};
inline constexpr Redirect PIPE{Redirect::Kind::pipe};
inline constexpr Redirect DEVNULL{Redirect::Kind::devnull};
inline constexpr Redirect STDOUT{Redirect::Kind::stdout_};

/// Keyword arguments of create_subprocess_exec / create_subprocess_shell
/// and loop.subprocess_exec / subprocess_shell.
struct SubprocessOptions {
    Redirect stdin_ = INHERIT;
    Redirect stdout_ = INHERIT;
    Redirect stderr_ = INHERIT;
    /// The child's working directory.
    std::optional<std::string> cwd{};
    /// The child's whole environment (nullopt: the parent's). Its PATH, if
    /// any, is where a program without a slash is searched, as in CPython.
    std::optional<std::map<std::string, std::string>> env{};
    /// The StreamReaders' buffer limit (create_subprocess_* only).
    std::size_t limit = 64 * 1024;
};

namespace detail {
class SubprocessStreamProtocol;
struct ProcessState;
}  // namespace detail

/// asyncio.subprocess.Process: a child started by create_subprocess_exec or
/// create_subprocess_shell. Copies refer to the same child. Dropping every
/// copy leaves the child running; it is reaped when it exits.
class ASYNCIO_EXPORT Process {
  public:
    int pid() const;
    /// The exit status once the child exited (negative: killed by that
    /// signal); nullopt while it runs.
    std::optional<int> returncode() const;
    /// Waits for the child to exit and returns its exit status. As in
    /// CPython, a wait that starts before the exit returns once the stdout
    /// and stderr pipes closed too (read them, or it waits on a child
    /// blocked on a full pipe); once the exit is known it returns at once.
    Coro<int> wait();
    /// Sends `input` (if any) to stdin and closes it, reads stdout and
    /// stderr to their end, all at once, then waits for the child. Returns
    /// (stdout, stderr); a stream that is not a pipe gives "" (Python's
    /// None). A child that stops reading its stdin early is not an error.
    Coro<std::pair<std::string, std::string>> communicate(std::optional<std::string> input = {});
    /// Sends `sig`; nothing if the child exited. ProcessLookupError
    /// (std::system_error, ESRCH) once the transport's connection_lost ran
    /// (the child exited and its pipes closed), as in CPython.
    void send_signal(int sig);
    void terminate();
    void kill();

    /// The pipes, for the streams given PIPE.
    std::optional<StreamWriter> stdin_;
    std::optional<StreamReader> stdout_;
    std::optional<StreamReader> stderr_;

    /// Library use: the Process of `transport`, whose protocol is `protocol`.
    Process(detail::LibraryKey, std::shared_ptr<SubprocessTransport> transport,
            std::shared_ptr<detail::SubprocessStreamProtocol> protocol);

  private:
    std::shared_ptr<detail::ProcessState> state_;
};

/// asyncio.create_subprocess_exec: runs `program` (searched in PATH when it
/// has no slash) with `args`. A program that cannot be run raises
/// std::system_error here (ENOENT, EACCES, ...), as Python raises OSError.
ASYNCIO_EXPORT Coro<Process> create_subprocess_exec(std::string program,
                                                    std::vector<std::string> args = {},
                                                    SubprocessOptions opts = {});
/// asyncio.create_subprocess_shell: runs `cmd` with /bin/sh -c (Windows:
/// COMSPEC /c).
ASYNCIO_EXPORT Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions opts = {});

namespace detail {
/// Starts the child and connects its pipes; the transport is returned once
/// the protocol's connection_made ran.
ASYNCIO_EXPORT Coro<OpenedTransport> open_subprocess(EventLoop& loop, ErasedProtocolFactory factory,
                                                     std::vector<std::string> argv,
                                                     SubprocessOptions opts);
/// The argv that /bin/sh runs `cmd` with.
ASYNCIO_EXPORT std::vector<std::string> shell_argv(std::string cmd);
/// CPython's defaults for loop.subprocess_exec: all three streams are pipes.
inline SubprocessOptions all_pipes() {
    return SubprocessOptions{.stdin_ = PIPE, .stdout_ = PIPE, .stderr_ = PIPE};
}

template <class F>
Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> start_subprocess(
    EventLoop& loop, F factory, std::vector<std::string> argv, SubprocessOptions opts) {
    static_assert(std::derived_from<protocol_of_t<F>, SubprocessProtocol>,
                  "subprocess_exec and subprocess_shell need a SubprocessProtocol");
    auto erased = erase_protocol_factory(std::move(factory));
    auto opened =
        co_await open_subprocess(loop, std::move(erased), std::move(argv), std::move(opts));
    co_return transport_pair<SubprocessTransport, protocol_of_t<F>>(loop, std::move(opened));
}
}  // namespace detail

template <ProtocolFactory F>
Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> EventLoop::subprocess_exec(
    F factory, std::string program, std::vector<std::string> args, SubprocessOptions opts) {
    args.insert(args.begin(), std::move(program));
    return detail::start_subprocess(*this, std::move(factory), std::move(args), std::move(opts));
}

template <ProtocolFactory F>
Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> EventLoop::subprocess_exec(
    F factory, std::string program, std::vector<std::string> args) {
    return subprocess_exec(std::move(factory), std::move(program), std::move(args),
                           detail::all_pipes());
}

template <ProtocolFactory F>
Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> EventLoop::subprocess_shell(
    F factory, std::string cmd, SubprocessOptions opts) {
    return detail::start_subprocess(*this, std::move(factory), detail::shell_argv(std::move(cmd)),
                                    std::move(opts));
}

template <ProtocolFactory F>
Coro<std::pair<SubprocessTransport*, protocol_of_t<F>*>> EventLoop::subprocess_shell(
    F factory, std::string cmd) {
    return subprocess_shell(std::move(factory), std::move(cmd), detail::all_pipes());
}

}  // namespace asyncio
