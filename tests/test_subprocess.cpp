// Subprocesses: ports of CPython's Lib/test/test_asyncio/test_subprocess.py
// (SubprocessMixin) and the subprocess cases of test_events.py, with sh and
// cat as the children, plus the bad input of issue 13.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::IoOp;
using asyncio::PIPE;
using asyncio::Process;
using asyncio::detail::IoAwaiter;
using asyncio_test::pattern;
using asyncio_test::Pipe;
using asyncio_test::run_guarded;

namespace {

/// Whether `pid` is gone: exited and reaped (a zombie still exists).
bool reaped(pid_t pid) {
    return ::kill(pid, 0) != 0 && errno == ESRCH;
}

/// Waits, in wall time, until `pid` was reaped. Reaping shows nowhere but
/// in the process table, so this polls it, up to the hang guard's limit.
Coro<bool> until_reaped(pid_t pid) {
    for (int i = 0; i < 6000; ++i) {
        if (reaped(pid)) co_return true;
        co_await asyncio::sleep(0.01);
    }
    co_return false;
}

/// Reads `fd` to its end on another thread.
Coro<std::string> read_all(int fd) {
    co_return co_await asyncio::to_thread([fd] {
        std::string out;
        char buffer[4096];
        ssize_t n;
        while ((n = ::read(fd, buffer, sizeof buffer)) > 0)
            out.append(buffer, static_cast<std::size_t>(n));
        return out;
    });
}

/// Whether awaiting `coro` throws an E.
template <class E, class T>
Coro<bool> raises(Coro<T> coro) {
    try {
        co_await std::move(coro);
    } catch (const E&) {
        co_return true;
    }
    co_return false;
}

/// Records a SubprocessProtocol's events in order.
struct EventLog : asyncio::SubprocessProtocol {
    std::vector<std::string> events;
    std::string out, err;
    asyncio::SubprocessTransport* transport = nullptr;
    asyncio::Future<> exited = asyncio::get_running_loop().create_future();
    asyncio::Future<> lost = asyncio::get_running_loop().create_future();

    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::SubprocessTransport&>(t);
        events.push_back("connection_made");
    }
    void pipe_data_received(int fd, std::string_view data) override {
        (fd == 1 ? out : err) += data;
        if (events.back() != "data " + std::to_string(fd))
            events.push_back("data " + std::to_string(fd));
    }
    void pipe_connection_lost(int fd, std::exception_ptr error) override {
        events.push_back("pipe_connection_lost " + std::to_string(fd) + (error ? " error" : ""));
    }
    void process_exited() override {
        events.push_back("process_exited");
        exited.set_result();
    }
    void connection_lost(std::exception_ptr error) override {
        events.push_back(error ? "connection_lost error" : "connection_lost");
        lost.set_result();
    }
};

std::size_t index_of(const std::vector<std::string>& events, const std::string& event) {
    for (std::size_t i = 0; i < events.size(); ++i) {
        if (events[i] == event) return i;
    }
    FAIL("no event " << event);
    return 0;
}

}  // namespace

// -- streams: create_subprocess_exec / create_subprocess_shell ----------------------------

TEST_CASE("stdin and stdout: what is written to cat comes back, and it exits 0") {
    // test_stdin_stdout
    auto main = []() -> Coro<void> {
        Process proc =
            co_await asyncio::create_subprocess_exec("cat", {}, {.stdin_ = PIPE, .stdout_ = PIPE});
        CHECK(proc.pid() > 0);
        CHECK_FALSE(proc.returncode().has_value());
        REQUIRE(proc.stdin_.has_value());
        REQUIRE(proc.stdout_.has_value());
        CHECK_FALSE(proc.stderr_.has_value());
        proc.stdin_->write("some data\n");
        co_await proc.stdin_->drain();
        std::string line = co_await proc.stdout_->readline();
        CHECK(line == "some data\n");
        proc.stdin_->close();
        std::string rest = co_await proc.stdout_->read();
        CHECK(rest.empty());
        const int code = co_await proc.wait();
        CHECK(code == 0);
        CHECK(proc.returncode() == 0);
    };
    run_guarded(main());
}

TEST_CASE("communicate feeds stdin and collects stdout and stderr") {
    // test_communicate, test_communicate_none_input, test_empty_input
    auto main = []() -> Coro<void> {
        auto options = asyncio::SubprocessOptions{.stdin_ = PIPE, .stdout_ = PIPE, .stderr_ = PIPE};
        Process proc =
            co_await asyncio::create_subprocess_shell("cat; echo oops >&2; exit 3", options);
        auto [out, err] = co_await proc.communicate("some data");
        CHECK(out == "some data");
        CHECK(err == "oops\n");
        CHECK(proc.returncode() == 3);

        Process none = co_await asyncio::create_subprocess_exec("cat", {}, options);
        auto [out2, err2] = co_await none.communicate();
        CHECK(out2.empty());
        CHECK(err2.empty());
        CHECK(none.returncode() == 0);

        Process empty = co_await asyncio::create_subprocess_exec("cat", {}, options);
        auto [out3, err3] = co_await empty.communicate("");
        CHECK(out3.empty());
        CHECK(empty.returncode() == 0);
    };
    run_guarded(main());
}

TEST_CASE("communicate with streams that are not pipes gives empty strings") {
    auto main = []() -> Coro<void> {
        Process proc = co_await asyncio::create_subprocess_exec(
            "true", {}, {.stdout_ = asyncio::DEVNULL, .stderr_ = asyncio::DEVNULL});
        CHECK_FALSE(proc.stdout_.has_value());
        auto [out, err] = co_await proc.communicate();
        CHECK(out.empty());
        CHECK(err.empty());
        CHECK(proc.returncode() == 0);
    };
    run_guarded(main());
}

TEST_CASE("create_subprocess_shell runs the command with /bin/sh") {
    // test_shell
    auto main = []() -> Coro<void> {
        Process proc = co_await asyncio::create_subprocess_shell("exit 7");
        const int code = co_await proc.wait();
        CHECK(code == 7);
        Process echo = co_await asyncio::create_subprocess_shell("echo $((6 * 7)) | tr 4 x",
                                                                 {.stdout_ = PIPE});
        auto [out, err] = co_await echo.communicate();
        CHECK(out == "x2\n");
    };
    run_guarded(main());
}

TEST_CASE("kill, terminate and send_signal end the child with that signal") {
    // test_kill, test_terminate, test_send_signal
    auto main = []() -> Coro<void> {
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = asyncio::create_subprocess_exec("sleep", {"60"});
        Process killed = co_await std::move(starting);
        killed.kill();
        const int killed_code = co_await killed.wait();
        CHECK(killed_code == -SIGKILL);

        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto terminating = asyncio::create_subprocess_exec("sleep", {"60"});
        Process terminated = co_await std::move(terminating);
        terminated.terminate();
        const int terminated_code = co_await terminated.wait();
        CHECK(terminated_code == -SIGTERM);

        // The child says when it is ready: the signal must reach the
        // program, not the shell before its exec.
        Process hup = co_await asyncio::create_subprocess_shell("echo READY; exec sleep 60",
                                                                {.stdout_ = PIPE});
        std::string ready = co_await hup.stdout_->readline();
        CHECK(ready == "READY\n");
        hup.send_signal(SIGHUP);
        const int hup_code = co_await hup.wait();
        CHECK(hup_code == -SIGHUP);
        CHECK(hup.returncode() == -SIGHUP);
        // Once wait() returned, the transport is closed: ProcessLookupError,
        // as CPython's _check_proc raises.
        std::error_code code;
        try {
            hup.send_signal(SIGTERM);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::no_such_process);
    };
    run_guarded(main());
}

TEST_CASE("a program that does not exist raises ENOENT from create_subprocess_exec") {
    auto main = []() -> Coro<void> {
        std::error_code code;
        try {
            co_await asyncio::create_subprocess_exec("/nonexistent/program-of-asyncio-tests");
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::no_such_file_or_directory);
        std::error_code searched;
        try {
            co_await asyncio::create_subprocess_exec("no-such-program-of-asyncio-tests", {},
                                                     {.stdout_ = PIPE});
        } catch (const std::system_error& e) {
            searched = e.code();
        }
        CHECK(searched == std::errc::no_such_file_or_directory);
    };
    run_guarded(main());
}

TEST_CASE("a file that is not executable raises EACCES, with nothing left open") {
    auto main = []() -> Coro<void> {
        char path[] = "/tmp/asyncio-test-noexec-XXXXXX";
        const int fd = ::mkstemp(path);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, "#!/bin/sh\nexit 0\n", 17) == 17);
        ::close(fd);
        ::chmod(path, 0644);
        const int before = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::close(before);
        std::error_code code;
        try {
            co_await asyncio::create_subprocess_exec(path, {}, {.stdin_ = PIPE, .stdout_ = PIPE});
        } catch (const std::system_error& e) {
            code = e.code();
        }
        ::unlink(path);
        CHECK(code == std::errc::permission_denied);
        // The pipes made for the child were closed: the next descriptor is
        // the same as before.
        const int after = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ::close(after);
        CHECK(after == before);
    };
    run_guarded(main());
}

TEST_CASE("bad redirections and options are refused before anything starts") {
    auto main = []() -> Coro<void> {
        const bool stdout_for_stdin = co_await raises<std::invalid_argument>(
            asyncio::create_subprocess_exec("true", {}, {.stdin_ = asyncio::STDOUT}));
        CHECK(stdout_for_stdin);
        const bool negative_fd = co_await raises<std::invalid_argument>(
            asyncio::create_subprocess_exec("true", {}, {.stdout_ = -5}));
        CHECK(negative_fd);
        const bool zero_limit = co_await raises<std::invalid_argument>(
            asyncio::create_subprocess_exec("true", {}, {.limit = 0}));
        CHECK(zero_limit);
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = raises<std::invalid_argument>(
            asyncio::create_subprocess_exec("true", {std::string("a\0b", 3)}));
        const bool nul = co_await std::move(starting);
        CHECK(nul);
    };
    run_guarded(main());
}

TEST_CASE("NUL bytes and bad environment names are refused as in CPython") {
    auto refused = [](asyncio::SubprocessOptions opts) -> Coro<bool> {
        co_return co_await raises<std::invalid_argument>(
            asyncio::create_subprocess_exec("true", {}, std::move(opts)));
    };
    auto env = [](std::string name, std::string value) {
        asyncio::SubprocessOptions opts;
        opts.env = std::map<std::string, std::string>{{std::move(name), std::move(value)}};
        return opts;
    };
    auto main = [&]() -> Coro<void> {
        const bool nul_in_name = co_await refused(env(std::string("A\0B", 3), "x"));
        CHECK(nul_in_name);
        const bool nul_in_value = co_await refused(env("A", std::string("x\0y", 3)));
        CHECK(nul_in_value);
        const bool empty_name = co_await refused(env("", "x"));
        CHECK(empty_name);
        const bool equals_in_name = co_await refused(env("A=B", "x"));
        CHECK(equals_in_name);
        // Named, not a braced list in the co_await (GCC PR 103871).
        const asyncio::SubprocessOptions bad_cwd{.cwd = std::string("/\0tmp", 5)};
        const bool nul_in_cwd = co_await refused(bad_cwd);
        CHECK(nul_in_cwd);
    };
    run_guarded(main());
}

TEST_CASE("a child that closes its stdin early: drain raises, never SIGPIPE") {
    // test_stdin_broken_pipe, test_communicate_ignore_broken_pipe
    auto main = []() -> Coro<void> {
        // exec 0<&-: the shell closes its stdin, so our writes fail at once.
        Process proc = co_await asyncio::create_subprocess_shell("exec 0<&-; echo closed",
                                                                 {.stdin_ = PIPE, .stdout_ = PIPE});
        std::string closed = co_await proc.stdout_->readline();
        CHECK(closed == "closed\n");
        std::error_code code;
        try {
            for (int i = 0; i < 64; ++i) {
                proc.stdin_->write(pattern(1 << 20));
                co_await proc.stdin_->drain();
            }
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK((code == std::errc::broken_pipe || code == std::errc::connection_reset));
        const int status = co_await proc.wait();
        CHECK(status == 0);

        Process ignoring = co_await asyncio::create_subprocess_shell(
            "exec 0<&-; echo closed", {.stdin_ = PIPE, .stdout_ = PIPE});
        auto [out, err] = co_await ignoring.communicate(pattern(8 << 20));
        CHECK(out == "closed\n");
        CHECK(ignoring.returncode() == 0);
    };
    run_guarded(main());
}

TEST_CASE("8 MiB through cat both ways, with communicate and with the streams") {
    auto main = []() -> Coro<void> {
        const std::string data = pattern(8 << 20);
        Process proc =
            co_await asyncio::create_subprocess_exec("cat", {}, {.stdin_ = PIPE, .stdout_ = PIPE});
        auto [out, err] = co_await proc.communicate(data);
        CHECK(out.size() == data.size());
        CHECK(out == data);

        // By hand: a writer task and the reader at once.
        Process streams =
            co_await asyncio::create_subprocess_exec("cat", {}, {.stdin_ = PIPE, .stdout_ = PIPE});
        auto writer = [](asyncio::StreamWriter w, const std::string& d) -> Coro<void> {
            w.write(d);
            co_await w.drain();
            w.close();
            co_await w.wait_closed();
        };
        asyncio::Task<void> writing =
            asyncio::get_running_loop().create_task(writer(*streams.stdin_, data));
        std::string echoed = co_await streams.stdout_->readexactly(data.size());
        co_await writing;
        CHECK(echoed == data);
        const int code = co_await streams.wait();
        CHECK(code == 0);
    };
    run_guarded(main());
}

TEST_CASE("50 children at once") {
    auto main = []() -> Coro<void> {
        auto one = [](int i) -> Coro<std::string> {
            // Not inside co_await: GCC 12 rejects a braced list there
            // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
            auto starting = asyncio::create_subprocess_exec(
                "sh", {"-c", "echo child $0; exit $(($0 % 5))", std::to_string(i)},
                {.stdout_ = PIPE});
            Process proc = co_await std::move(starting);
            auto [out, err] = co_await proc.communicate();
            CHECK(proc.returncode() == i % 5);
            co_return out;
        };
        auto& loop = asyncio::get_running_loop();
        std::vector<asyncio::Task<std::string>> tasks;
        for (int i = 0; i < 50; ++i)
            tasks.push_back(loop.create_task(one(i)));
        int right = 0;
        for (int i = 0; i < 50; ++i) {
            std::string out = co_await tasks[static_cast<std::size_t>(i)];
            if (out == "child " + std::to_string(i) + "\n") ++right;
        }
        CHECK(right == 50);
    };
    run_guarded(main());
}

TEST_CASE("DEVNULL, STDOUT and a descriptor as redirections") {
    // test_devnull_input, test_devnull_output, test_devnull_error, test_stderr_stdout
    auto main = []() -> Coro<void> {
        Process input = co_await asyncio::create_subprocess_exec(
            "cat", {}, {.stdin_ = asyncio::DEVNULL, .stdout_ = PIPE});
        auto [nothing, e1] = co_await input.communicate();
        CHECK(nothing.empty());
        CHECK(input.returncode() == 0);

        Process merged = co_await asyncio::create_subprocess_shell(
            "echo out; echo err >&2", {.stdout_ = PIPE, .stderr_ = asyncio::STDOUT});
        CHECK_FALSE(merged.stderr_.has_value());
        auto [both, e2] = co_await merged.communicate();
        CHECK(both == "out\nerr\n");

        Pipe pipe;
        Process to_fd = co_await asyncio::create_subprocess_shell(
            "echo to the pipe", {.stdin_ = asyncio::DEVNULL, .stdout_ = pipe.write_fd});
        ::close(pipe.write_fd);  // the child has its own copy
        const int code = co_await to_fd.wait();
        CHECK(code == 0);
        std::string got = co_await read_all(pipe.read_fd);
        ::close(pipe.read_fd);
        CHECK(got == "to the pipe\n");
    };
    run_guarded(main());
}

TEST_CASE("cwd and env reach the child; PATH comes from env") {
    // test_create_subprocess_env_shell, test_create_subprocess_env_exec
    auto main = []() -> Coro<void> {
        // Named options: GCC 12 destroys a temporary with a string or a map
        // in it twice in a co_await (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100611).
        std::map<std::string, std::string> env{{"FOO", "bar"}};
        asyncio::SubprocessOptions options{.stdout_ = PIPE, .cwd = "/tmp", .env = env};
        Process proc = co_await asyncio::create_subprocess_shell(
            "pwd; echo \"$FOO\"; echo \"${HOME-unset}\"", options);
        auto [out, err] = co_await proc.communicate();
        CHECK(out == "/tmp\nbar\nunset\n");

        // With env and no PATH, "cat" is searched in /bin:/usr/bin, as
        // os.get_exec_path does; with a PATH that has no cat, it is not found.
        asyncio::SubprocessOptions no_path{.stdin_ = asyncio::DEVNULL,
                                           .env = std::map<std::string, std::string>{}};
        Process found = co_await asyncio::create_subprocess_exec("cat", {}, no_path);
        const int code = co_await found.wait();
        CHECK(code == 0);
        std::error_code missing;
        try {
            // Not inside co_await: GCC 12 rejects a braced list there
            // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
            auto starting = asyncio::create_subprocess_exec(
                "cat", {}, {.env = std::map<std::string, std::string>{{"PATH", "/nonexistent"}}});
            co_await std::move(starting);
        } catch (const std::system_error& e) {
            missing = e.code();
        }
        CHECK(missing == std::errc::no_such_file_or_directory);
    };
    run_guarded(main());
}

TEST_CASE("the child gets only descriptors 0, 1 and 2, and SIGPIPE's default action") {
    auto main = []() -> Coro<void> {
        // A descriptor opened without O_CLOEXEC must not leak into the child.
        const int leaky = ::open("/dev/null", O_RDONLY);
        REQUIRE(leaky >= 3);
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = asyncio::create_subprocess_exec(
            "sh", {"-c", "ls /proc/self/fd; grep SigIgn /proc/self/status", std::to_string(leaky)},
            {.stdout_ = PIPE});
        Process proc = co_await std::move(starting);
        auto [out, err] = co_await proc.communicate();
        ::close(leaky);
        // ls itself opens one descriptor (its directory), and sh none of its own.
        std::vector<int> fds;
        std::size_t pos = 0;
        std::string sigign;
        while (pos < out.size()) {
            const std::size_t end = out.find('\n', pos);
            std::string line = out.substr(pos, end - pos);
            pos = end + 1;
            if (line.rfind("SigIgn:", 0) == 0) {
                sigign = line;
            } else {
                fds.push_back(std::stoi(line));
            }
        }
        REQUIRE(fds.size() == 4);  // 0, 1, 2 and ls's own
        CHECK(fds[0] == 0);
        CHECK(fds[1] == 1);
        CHECK(fds[2] == 2);
        const unsigned long ignored =
            std::stoul(sigign.substr(sigign.find_first_not_of(" \t", 7)), nullptr, 16);
        CHECK((ignored & (1UL << (SIGPIPE - 1))) == 0);
    };
    run_guarded(main());
}

TEST_CASE("wait returns the same status to concurrent waiters, and again later") {
    // test_subprocess_concurrent_wait
    auto main = []() -> Coro<void> {
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = asyncio::create_subprocess_exec("sh", {"-c", "exit 5"});
        Process proc = co_await std::move(starting);
        auto& loop = asyncio::get_running_loop();
        asyncio::Task<int> first = loop.create_task(proc.wait());
        asyncio::Task<int> second = loop.create_task(proc.wait());
        const int a = co_await first;
        const int b = co_await second;
        const int c = co_await proc.wait();
        CHECK(a == 5);
        CHECK(b == 5);
        CHECK(c == 5);
    };
    run_guarded(main());
}

TEST_CASE("cancelling wait leaves the child running") {
    // test_cancel_process_wait
    auto main = []() -> Coro<void> {
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = asyncio::create_subprocess_exec("sleep", {"60"});
        Process proc = co_await std::move(starting);
        auto& loop = asyncio::get_running_loop();
        asyncio::Task<int> waiting = loop.create_task(proc.wait());
        co_await asyncio_test::iterations(2);
        waiting.cancel();
        const bool cancelled = co_await asyncio_test::ends_cancelled(waiting);
        CHECK(cancelled);
        CHECK_FALSE(proc.returncode().has_value());
        CHECK_FALSE(reaped(proc.pid()));
        proc.kill();
        const int code = co_await proc.wait();
        CHECK(code == -SIGKILL);
    };
    run_guarded(main());
}

/// The number of descriptors this process has open.
int open_descriptors() {
    int count = 0;
    for (int fd = 0; fd < 1024; ++fd) {
        if (::fcntl(fd, F_GETFD) >= 0) ++count;
    }
    return count;
}

TEST_CASE("cancelling create_subprocess_exec kills and reaps the child, leaking nothing") {
    // test_cancel_make_subprocess_transport_exec
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        // A first child sets up what the loop keeps (the SIGCHLD watcher's
        // signal pipe), so that only what the cancelled one leaves counts.
        Process warm_up = co_await asyncio::create_subprocess_exec("true");
        co_await warm_up.wait();
        const int before = open_descriptors();
        std::weak_ptr<asyncio::BaseProtocol> protocol;
        auto factory = [&protocol] {
            auto made = std::make_shared<asyncio::SubprocessProtocol>();
            protocol = made;
            return made;
        };
        std::vector<std::string> args{"60"};
        auto creating = loop.create_task(loop.subprocess_exec(factory, "sleep", args));
        co_await asyncio::sleep(0);  // it spawned, and connects the pipes
        CHECK_FALSE(creating.done());
        creating.cancel();
        const bool cancelled = co_await asyncio_test::ends_cancelled(creating);
        CHECK(cancelled);
        // Killed and reaped before the cancellation came through: no child
        // left, not even a zombie (CTest runs each test case in its own process).
        errno = 0;
        CHECK(::waitpid(-1, nullptr, WNOHANG) == -1);
        CHECK(errno == ECHILD);
        co_await asyncio_test::iterations(2);
        CHECK(protocol.expired());  // the transport let go of it
        CHECK(open_descriptors() == before);
    };
    run_guarded(main());
}

TEST_CASE("communicate after a timed-out communicate, once the child is killed") {
    // test_communicate after wait_for: the first call's readers were cancelled.
    auto main = []() -> Coro<void> {
        Process proc = co_await asyncio::create_subprocess_shell(
            "echo started; exec sleep 60", {.stdin_ = PIPE, .stdout_ = PIPE, .stderr_ = PIPE});
        bool timed_out = false;
        try {
            co_await asyncio::wait_for(proc.communicate("input"), 50ms);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        }
        CHECK(timed_out);
        proc.kill();
        // Whatever the cancelled readers had taken is gone, as in CPython
        // (read() collects blocks locally); the point is that no reader is
        // still waiting on the streams.
        auto [out, err] = co_await proc.communicate();
        CHECK(err.empty());
        CHECK(proc.returncode() == -SIGKILL);
    };
    run_guarded(main());
}

TEST_CASE("an inherited-looking descriptor 0 that is close-on-exec still reaches the child") {
    auto main = []() -> Coro<void> {
        // fd 0 becomes a close-on-exec pipe for the duration of the test.
        const int saved_stdin = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
        REQUIRE(saved_stdin >= 0);
        Pipe pipe;
        REQUIRE(::dup3(pipe.read_fd, 0, O_CLOEXEC) == 0);
        ::close(pipe.read_fd);
        REQUIRE(::write(pipe.write_fd, "via fd 0\n", 9) == 9);
        ::close(pipe.write_fd);
        std::string out;
        try {
            Process proc =
                co_await asyncio::create_subprocess_exec("cat", {}, {.stdin_ = 0, .stdout_ = PIPE});
            auto [o, e] = co_await proc.communicate();
            out = o;
        } catch (...) {
        }
        ::dup2(saved_stdin, 0);
        ::close(saved_stdin);
        CHECK(out == "via fd 0\n");
    };
    run_guarded(main());
}

TEST_CASE("a bad cwd is reported as the cwd, not as the program") {
    auto main = []() -> Coro<void> {
        std::string what;
        std::error_code code;
        try {
            asyncio::SubprocessOptions options{.cwd = "/nonexistent-dir-of-asyncio-tests"};
            co_await asyncio::create_subprocess_exec("true", {}, options);
        } catch (const std::system_error& e) {
            what = e.what();
            code = e.code();
        }
        CHECK(code == std::errc::no_such_file_or_directory);
        CHECK(what.find("nonexistent-dir-of-asyncio-tests") != std::string::npos);
    };
    run_guarded(main());
}

TEST_CASE("a child that outlives its Process keeps running and is reaped when it exits") {
    auto main = []() -> Coro<void> {
        Pipe input, output;
        pid_t pid = 0;
        {
            Process proc = co_await asyncio::create_subprocess_exec(
                "cat", {}, {.stdin_ = input.read_fd, .stdout_ = output.write_fd});
            pid = proc.pid();
        }
        ::close(input.read_fd);
        ::close(output.write_fd);
        // The Process is gone; cat still copies.
        REQUIRE(::write(input.write_fd, "still here\n", 11) == 11);
        ::close(input.write_fd);  // cat exits at its EOF
        std::string got = co_await read_all(output.read_fd);
        ::close(output.read_fd);
        CHECK(got == "still here\n");
        const bool gone = co_await until_reaped(pid);
        CHECK(gone);
    };
    run_guarded(main());
}

TEST_CASE("a child that outlives its loop is reaped after the loop closed") {
    Pipe input;
    pid_t pid = 0;
    auto main = [](int stdin_fd) -> Coro<pid_t> {
        Process proc = co_await asyncio::create_subprocess_exec("cat", {}, {.stdin_ = stdin_fd});
        co_return proc.pid();
    };
    pid = run_guarded(main(input.read_fd));
    ::close(input.read_fd);
    CHECK_FALSE(reaped(pid));
    ::close(input.write_fd);  // cat exits now, with no loop left to see it
    bool gone = false;
    for (int i = 0; i < 6000 && !gone; ++i) {
        gone = reaped(pid);
        if (!gone) std::this_thread::sleep_for(10ms);
    }
    CHECK(gone);
}

TEST_CASE("the child's exit status is read after its output, whatever the order") {
    // test_read_stdout_after_process_exit
    auto main = []() -> Coro<void> {
        Process proc = co_await asyncio::create_subprocess_shell("printf 'x%.0s' $(seq 1 100000)",
                                                                 {.stdout_ = PIPE});
        const int code = co_await proc.wait();  // waits for the pipe to close too
        CHECK(code == 0);
        std::string out = co_await proc.stdout_->read();
        CHECK(out.size() == 100000);
    };
    run_guarded(main());
}

// -- low level: loop.subprocess_exec / subprocess_shell ---------------------------------

TEST_CASE("subprocess_exec: protocol events in order, and the transport's accessors") {
    // test_events.py test_subprocess_exec, test_subprocess_consistent_callbacks
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::shared_ptr<EventLog> log;
        auto factory = [&log] {
            log = std::make_shared<EventLog>();
            return log;
        };
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = loop.subprocess_exec(factory, "sh", {"-c", "cat; echo err >&2; exit 2"});
        auto [transport, protocol] = co_await std::move(starting);
        // The pointer is valid until connection_lost returned; it is used after.
        auto held = transport->shared_from_this();
        REQUIRE(protocol == log.get());
        REQUIRE(log->events.size() == 1);
        CHECK(log->events[0] == "connection_made");
        CHECK(log->transport == transport);
        CHECK(transport->get_pid() > 0);
        CHECK_FALSE(transport->get_returncode().has_value());
        CHECK(transport->get_pipe_transport(3) == nullptr);
        auto* stdin_pipe = dynamic_cast<asyncio::WriteTransport*>(transport->get_pipe_transport(0));
        REQUIRE(stdin_pipe != nullptr);
        REQUIRE(transport->get_pipe_transport(1) != nullptr);
        REQUIRE(transport->get_pipe_transport(2) != nullptr);
        stdin_pipe->write("hello");
        stdin_pipe->close();
        co_await log->lost;
        CHECK(transport->get_returncode() == 2);
        CHECK(log->out == "hello");
        CHECK(log->err == "err\n");
        const auto& events = log->events;
        CHECK(events.back() == "connection_lost");
        CHECK(index_of(events, "pipe_connection_lost 0") > 0);
        CHECK(index_of(events, "data 1") < index_of(events, "pipe_connection_lost 1"));
        CHECK(index_of(events, "data 2") < index_of(events, "pipe_connection_lost 2"));
        CHECK(index_of(events, "process_exited") < events.size() - 1);
        CHECK_THROWS_AS(transport->send_signal(SIGTERM), std::system_error);
    };
    run_guarded(main());
}

TEST_CASE("subprocess_shell with inherited streams has no pipe transports") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::shared_ptr<EventLog> log;
        auto factory = [&log] {
            log = std::make_shared<EventLog>();
            return log;
        };
        auto [transport, protocol] = co_await loop.subprocess_shell(
            factory, "exit 4", asyncio::SubprocessOptions{.stdin_ = asyncio::DEVNULL});
        auto held = transport->shared_from_this();
        CHECK(transport->get_pipe_transport(0) == nullptr);
        CHECK(transport->get_pipe_transport(1) == nullptr);
        co_await log->lost;
        CHECK(transport->get_returncode() == 4);
        CHECK(log->events ==
              std::vector<std::string>{"connection_made", "process_exited", "connection_lost"});
    };
    run_guarded(main());
}

TEST_CASE("closing the transport kills a running child; a finished one is left alone") {
    // test_close_kill_running, test_close_dont_kill_finished
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::shared_ptr<EventLog> log;
        auto factory = [&log] {
            log = std::make_shared<EventLog>();
            return log;
        };
        // Not inside co_await: GCC 12 rejects a braced list there
        // (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
        auto starting = loop.subprocess_exec(factory, "sleep", {"60"});
        auto [running, p1] = co_await std::move(starting);
        auto held_running = running->shared_from_this();
        running->close();
        CHECK(running->is_closing());
        co_await log->lost;
        CHECK(running->get_returncode() == -SIGKILL);

        auto [finished, p2] = co_await loop.subprocess_exec(factory, "true");
        auto held_finished = finished->shared_from_this();
        co_await log->exited;
        finished->close();
        co_await log->lost;
        CHECK(finished->get_returncode() == 0);
    };
    run_guarded(main());
}

TEST_CASE("output and exit before connection_made are delivered after it, in order") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        std::shared_ptr<EventLog> log;
        auto factory = [&log] {
            log = std::make_shared<EventLog>();
            return log;
        };
        // The child is done before its pipes are connected, most likely.
        std::vector<std::string> args{"-c", "echo out; echo err >&2"};
        auto [transport, protocol] = co_await loop.subprocess_exec(factory, "sh", args);
        auto held = transport->shared_from_this();
        CHECK(log->events.front() == "connection_made");
        co_await log->lost;
        CHECK(log->out == "out\n");
        CHECK(log->err == "err\n");
        CHECK(log->events.front() == "connection_made");
        CHECK(log->events.back() == "connection_lost");
        CHECK(transport->get_returncode() == 0);  // held: valid still
    };
    run_guarded(main());
}

TEST_CASE("a SIGCHLD handler of the program's own and the child watcher both see the exit") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio::Event got_sigchld;
        loop.add_signal_handler(SIGCHLD, [&got_sigchld] { got_sigchld.set(); });
        Process proc = co_await asyncio::create_subprocess_exec("true");
        const int code = co_await proc.wait();
        CHECK(code == 0);
        co_await got_sigchld.wait();
        CHECK(loop.remove_signal_handler(SIGCHLD));
        // The watcher still works after the program's handler went.
        Process again = co_await asyncio::create_subprocess_shell("exit 3");
        const int again_code = co_await again.wait();
        CHECK(again_code == 3);
    };
    run_guarded(main());
}

TEST_CASE("loops in two threads each run and reap their own children") {
    // Each thread's loop sees only its children's exits, with either watcher
    // (the SIGCHLD one polls its own children on a delivery that any exit sends).
    auto run_children = [](int base) {
        auto main = [](int base) -> Coro<int> {
            int sum = 0;
            for (int i = 0; i < 10; ++i) {
                std::vector<std::string> args{"-c", "exit $0", std::to_string(base + i)};
                auto starting = asyncio::create_subprocess_exec("sh", args);
                Process proc = co_await std::move(starting);
                sum += co_await proc.wait();
            }
            co_return sum;
        };
        return asyncio::run(main(base));
    };
    int first = 0, second = 0;
    std::thread other([&] { second = run_children(100); });
    first = run_children(10);
    other.join();
    CHECK(first == 10 * 10 + 45);
    CHECK(second == 10 * 100 + 45);
}

// -- the backend's process_exit op, which the child watcher submits ---------------------

namespace {

/// A child that exits with 7 once `release` is closed.
pid_t spawn_waiting_child(int (&release)[2]) {
    REQUIRE(::pipe(release) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(release[1]);
        char byte;
        while (::read(release[0], &byte, 1) < 0 && errno == EINTR) {
        }
        ::_exit(7);
    }
    ::close(release[0]);
    return child;
}

/// A pidfd for `pid` where the OS has them (Linux), else -1.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    REQUIRE(pidfd >= 0);
    return pidfd;
#else
    (void)pid;
    return -1;
#endif
}

Coro<std::int64_t> wait_exit(pid_t child, int pidfd) {
    IoAwaiter op(asyncio::get_running_loop().backend());
    op.kind = IoOp::Kind::process_exit;
    op.pid = child;
    op.fd = pidfd;
    co_return co_await op;
}

void reap_exit_7(pid_t child) {
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 7);
}

}  // namespace

TEST_CASE("a process_exit op completes once its process has exited") {
    int release[2];
    const pid_t child = spawn_waiting_child(release);
    const int pidfd = open_pidfd(child);
    auto main = [](pid_t child, int pidfd, int release) -> Coro<std::int64_t> {
        auto waiting = asyncio::create_task(wait_exit(child, pidfd));
        co_await asyncio::sleep(0.02);
        CHECK_FALSE(waiting.done());
        ::close(release);
        const std::int64_t r = co_await waiting;
        if (pidfd >= 0) asyncio::get_running_loop().backend().forget_fd(pidfd);
        co_return r;
    };
    CHECK(run_guarded(main(child, pidfd, release[1])) >= 0);
    if (pidfd >= 0) ::close(pidfd);
    reap_exit_7(child);
}

TEST_CASE("a process_exit op without a pidfd: kqueue watches the pid, others refuse it") {
    int release[2];
    const pid_t child = spawn_waiting_child(release);
    ::close(release[1]);
    auto main = [](pid_t child) -> Coro<std::int64_t> { co_return co_await wait_exit(child, -1); };
    const std::int64_t r = run_guarded(main(child));
    if (asyncio::default_backend() == asyncio::Backend::kqueue) {
        CHECK(r >= 0);
    } else {
        CHECK(r == -ENOSYS);
    }
    reap_exit_7(child);
}
