// Starting a child process: the part of CPython's subprocess.Popen that
// asyncio uses (_execute_child with close_fds and restore_signals).
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "asyncio/subprocess.hpp"

namespace asyncio::detail {

/// An owned descriptor (a HANDLE on Windows), closed on destruction unless
/// released.
class OwnedFd {
  public:
    OwnedFd() = default;
    explicit OwnedFd(int fd) noexcept : fd_(fd) {}
    OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    OwnedFd& operator=(OwnedFd&& other) noexcept;
    ~OwnedFd();

    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    explicit operator bool() const noexcept { return fd_ >= 0; }

  private:
    int fd_ = -1;
};

/// A started child and the parent's ends of the pipes to it: index 0 is
/// the write end of the child's stdin, 1 and 2 the read ends of its stdout
/// and stderr; empty where that stream is not a pipe.
struct SpawnedChild {
    int pid = -1;
#ifdef _WIN32
    void* process = nullptr;  ///< the process HANDLE, which ChildProcess takes over
#endif
    std::array<OwnedFd, 3> pipes;
};

/// Runs argv[0] with argv, as `opts` says (stdio, cwd, env). The child gets
/// only descriptors 0, 1 and 2, and the default action for SIGPIPE and
/// SIGXFSZ (on Windows: only its three standard handles). std::invalid_argument for a bad Redirect;
/// std::system_error if the program cannot be run (ENOENT, EACCES, ...), with nothing left open and
/// no child left behind.
SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& opts);

/// std::invalid_argument, as CPython, for a NUL byte in an argument, the cwd
/// or the environment, or an environment variable name that is empty or
/// holds '='. spawn_child calls it first.
void check_child_arguments(const std::vector<std::string>& argv, const SubprocessOptions& opts);

#ifndef _WIN32
/// The exit status waitpid reported, as Python's returncode: the exit code,
/// or minus the signal that ended the child.
int returncode_of(int wait_status) noexcept;
#endif

}  // namespace asyncio::detail
