#include "spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "../internal.hpp"

extern char** environ;

namespace asyncio::detail {

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
    if (this != &other) {
        OwnedFd old(std::exchange(fd_, std::exchange(other.fd_, -1)));
    }
    return *this;
}

OwnedFd::~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
}

int returncode_of(int wait_status) noexcept {
    if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
    return WEXITSTATUS(wait_status);
}

namespace {

constexpr std::array<const char*, 3> kStreamNames{"stdin_", "stdout_", "stderr_"};

/// posix_spawn's attribute and file action objects, destroyed in any case.
struct SpawnPlan {
    SpawnPlan() {
        if (int error = ::posix_spawnattr_init(&attributes); error != 0)
            throw os_error(error, "posix_spawnattr_init");
        if (int error = ::posix_spawn_file_actions_init(&actions); error != 0) {
            ::posix_spawnattr_destroy(&attributes);
            throw os_error(error, "posix_spawn_file_actions_init");
        }
    }
    ~SpawnPlan() {
        ::posix_spawn_file_actions_destroy(&actions);
        ::posix_spawnattr_destroy(&attributes);
    }
    SpawnPlan(const SpawnPlan&) = delete;
    SpawnPlan& operator=(const SpawnPlan&) = delete;

    posix_spawnattr_t attributes;
    posix_spawn_file_actions_t actions;
};

void check(int error, const char* call) {
    if (error != 0) throw os_error(error, call);
}

OwnedFd open_devnull() {
    const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) throw_errno("open(/dev/null)");
    return OwnedFd(fd);
}

/// A copy of `fd` at 3 or above, close-on-exec.
OwnedFd duplicate_above_stdio(int fd) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
    return OwnedFd(copy);
}

/// The child's three streams: which descriptor becomes each (-1: its own,
/// inherited), and the descriptors the parent holds until the spawn.
struct ChildStdio {
    std::array<int, 3> source{-1, -1, -1};
    std::array<OwnedFd, 3> parent_ends;
    std::vector<OwnedFd> child_ends;  // closed in the parent once spawned
};

ChildStdio plan_stdio(const SubprocessOptions& opts) {
    const std::array<Redirect, 3> redirects{opts.stdin_, opts.stdout_, opts.stderr_};
    ChildStdio stdio;
    for (int stream = 0; stream < 3; ++stream) {
        const Redirect& redirect = redirects[stream];
        switch (redirect.kind()) {
            case Redirect::Kind::inherit:
                break;
            case Redirect::Kind::pipe: {
                int ends[2];
                if (::pipe2(ends, O_CLOEXEC) != 0) throw_errno("pipe2");
                OwnedFd read_end(ends[0]);
                OwnedFd write_end(ends[1]);
                // The child reads its stdin and writes the others.
                OwnedFd& child = stream == 0 ? read_end : write_end;
                stdio.source[stream] = child.get();
                stdio.child_ends.push_back(std::move(child));
                stdio.parent_ends[stream] = std::move(stream == 0 ? write_end : read_end);
                break;
            }
            case Redirect::Kind::devnull: {
                OwnedFd null = open_devnull();
                stdio.source[stream] = null.get();
                stdio.child_ends.push_back(std::move(null));
                break;
            }
            case Redirect::Kind::stdout_:
                if (stream != 2) {
                    throw std::invalid_argument(fmt::format(
                        "STDOUT is only valid for stderr_, not {}", kStreamNames[stream]));
                }
                // Whatever the child's stdout is; its own fd 1 if inherited.
                stdio.source[2] = stdio.source[1] >= 0 ? stdio.source[1] : 1;
                break;
            case Redirect::Kind::fd: {
                const int fd = redirect.fd();
                if (fd < 0) {
                    throw std::invalid_argument(
                        fmt::format("{}: invalid file descriptor {}", kStreamNames[stream], fd));
                }
                if (::fcntl(fd, F_GETFD) < 0)
                    throw_errno(fmt::format("{} = {}", kStreamNames[stream], fd));
                stdio.source[stream] = fd;
                break;
            }
        }
    }
    // A source among 0, 1 and 2 (the parent's own, or a pipe that got one
    // of those numbers because the parent had closed it) gets a copy above
    // them: dup2 onto 0, 1 and 2 in turn must not overwrite a descriptor a
    // later stream still needs, and a dup2 onto itself would leave the
    // descriptor close-on-exec (CPython's _Py_set_inheritable).
    for (int& source : stdio.source) {
        if (source < 0 || source >= 3) continue;
        OwnedFd copy = duplicate_above_stdio(source);
        source = copy.get();
        stdio.child_ends.push_back(std::move(copy));
    }
    return stdio;
}

void add_file_actions(SpawnPlan& plan, const ChildStdio& stdio, const SubprocessOptions& opts) {
    for (int stream = 0; stream < 3; ++stream) {
        if (stdio.source[stream] < 0) continue;
        check(::posix_spawn_file_actions_adddup2(&plan.actions, stdio.source[stream], stream),
              "posix_spawn_file_actions_adddup2");
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    // CPython's close_fds=True: descriptors the program opened without
    // O_CLOEXEC must not leak into the child either.
    check(::posix_spawn_file_actions_addclosefrom_np(&plan.actions, 3),
          "posix_spawn_file_actions_addclosefrom_np");
#endif
    if (opts.cwd) {
        check(::posix_spawn_file_actions_addchdir_np(&plan.actions, opts.cwd->c_str()),
              "posix_spawn_file_actions_addchdir_np");
    }
}

void set_attributes(SpawnPlan& plan) {
    // No signal blocked in the child, and restore_signals: the loop ignores
    // SIGPIPE, which the child must not inherit.
    sigset_t none;
    ::sigemptyset(&none);
    check(::posix_spawnattr_setsigmask(&plan.attributes, &none), "posix_spawnattr_setsigmask");
    sigset_t defaults;
    ::sigemptyset(&defaults);
    ::sigaddset(&defaults, SIGPIPE);
    ::sigaddset(&defaults, SIGXFSZ);
    check(::posix_spawnattr_setsigdefault(&plan.attributes, &defaults),
          "posix_spawnattr_setsigdefault");
    check(::posix_spawnattr_setflags(&plan.attributes,
                                     POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
          "posix_spawnattr_setflags");
}

/// NUL-terminated pointer arrays into strings that outlive the spawn.
std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (std::string& s : strings)
        out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

/// The directories a program without a slash is searched in, from the
/// child's PATH (os.get_exec_path(env); os.defpath without one).
std::vector<std::string> search_path(const std::map<std::string, std::string>& env) {
    auto found = env.find("PATH");
    std::string_view path = found != env.end() ? std::string_view(found->second) : "/bin:/usr/bin";
    std::vector<std::string> dirs;
    while (true) {
        const std::size_t colon = path.find(':');
        std::string_view dir = path.substr(0, colon);
        dirs.emplace_back(dir.empty() ? "." : dir);
        if (colon == std::string_view::npos) break;
        path.remove_prefix(colon + 1);
    }
    return dirs;
}

}  // namespace

SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& opts) {
    if (argv.empty() || argv.front().empty()) {
        // CPython: PermissionError or FileNotFoundError from exec; posix_spawn
        // of "" says ENOENT.
        throw os_error(ENOENT, "posix_spawn ''");
    }
    check_child_arguments(argv, opts);

    std::vector<std::string> arguments = argv;
    std::vector<char*> argument_pointers = pointers(arguments);
    std::vector<std::string> environment;
    if (opts.env) {
        for (const auto& [name, value] : *opts.env)
            environment.push_back(name + "=" + value);
    }
    std::vector<char*> environment_pointers = pointers(environment);
    char** envp = opts.env ? environment_pointers.data() : environ;

    if (opts.cwd) {
        // Checked here, so that a bad cwd is reported as such, not as the
        // program failing to run (CPython's child tells the two apart).
        struct ::stat info {};
        if (::stat(opts.cwd->c_str(), &info) != 0) {
            const int error = errno;
            throw os_error(error, fmt::format("cwd '{}'", *opts.cwd));
        }
        if (!S_ISDIR(info.st_mode)) throw os_error(ENOTDIR, fmt::format("cwd '{}'", *opts.cwd));
    }

    ChildStdio stdio = plan_stdio(opts);
    SpawnPlan plan;
    add_file_actions(plan, stdio, opts);
    set_attributes(plan);

    const std::string& program = argv.front();
    pid_t pid = -1;
    int error = 0;
    if (program.find('/') != std::string::npos) {
        error = ::posix_spawn(&pid, program.c_str(), &plan.actions, &plan.attributes,
                              argument_pointers.data(), envp);
    } else if (!opts.env) {
        error = ::posix_spawnp(&pid, program.c_str(), &plan.actions, &plan.attributes,
                               argument_pointers.data(), envp);
    } else {
        // posix_spawnp searches the parent's PATH; the child's env decides.
        // _posixsubprocess's rule: try every directory, and report the first
        // error other than "not there" (EACCES, say), else the last one.
        error = ENOENT;
        int first_other = 0;
        for (const std::string& dir : search_path(*opts.env)) {
            const std::string candidate = dir + "/" + program;
            error = ::posix_spawn(&pid, candidate.c_str(), &plan.actions, &plan.attributes,
                                  argument_pointers.data(), envp);
            if (error == 0) break;
            if (first_other == 0 && error != ENOENT && error != ENOTDIR) first_other = error;
        }
        if (error != 0 && first_other != 0) error = first_other;
    }
    // On failure glibc has reaped the child that could not exec.
    if (error != 0) throw os_error(error, fmt::format("posix_spawn '{}'", program));

    SpawnedChild child;
    child.pid = pid;
    child.pipes = std::move(stdio.parent_ends);
    return child;  // stdio.child_ends close here, in the parent only
}

}  // namespace asyncio::detail
