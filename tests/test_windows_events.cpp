// What only Windows has (Lib/test/test_asyncio/test_windows_events.py and
// test_windows_utils.py): Ctrl-C for the Runner, and children started with
// CreateProcessW whose stdio are named pipes read through the IOCP backend.
// The children are cmd.exe and this test program itself, which copies its
// stdin to its stdout when ASYNCIO_TEST_CAT is set (a `cat` to pipe into).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support.hpp"

using asyncio::Coro;
using asyncio::PIPE;
using asyncio::Process;
using asyncio_test::run_guarded;

namespace {

/// Before Catch2 runs: the child role, a cat that exits with 7.
const bool child_role = [] {
    if (std::getenv("ASYNCIO_TEST_CAT") == nullptr) return false;
    int c;
    while ((c = std::getchar()) != EOF)
        std::putchar(c);
    std::fflush(stdout);
    std::_Exit(7);
}();

/// This program, which acts as cat under ASYNCIO_TEST_CAT.
std::string this_program() {
    char path[MAX_PATH];
    const DWORD n = ::GetModuleFileNameA(nullptr, path, MAX_PATH);
    REQUIRE(n > 0);
    return std::string(path, n);
}

asyncio::SubprocessOptions cat_options() {
    std::map<std::string, std::string> env{{"ASYNCIO_TEST_CAT", "1"}};
    // What a Windows program needs from its environment to start: PATH finds
    // its DLLs (libasyncio's, in the DLL build).
    for (const char* name : {"SystemRoot", "PATH"}) {
        if (const char* value = std::getenv(name)) env[name] = value;
    }
    return {.stdin_ = PIPE, .stdout_ = PIPE, .env = std::move(env)};
}

/// Text-mode output, as a Windows program writes it, read back as lines.
std::string without_cr(std::string text) {
    std::erase(text, '\r');
    return text;
}

}  // namespace

TEST_CASE("create_subprocess_exec: stdin and stdout are pipes through IOCP") {
    static_cast<void>(child_role);
    auto main = []() -> Coro<std::pair<int, std::string>> {
        std::string input = asyncio_test::pattern(200'000);  // more than a pipe buffer
        std::vector<std::string> no_args;
        Process cat =
            co_await asyncio::create_subprocess_exec(this_program(), no_args, cat_options());
        auto [out, err] = co_await cat.communicate(input);
        co_return std::pair{*cat.returncode(), without_cr(out)};
    };
    auto [returncode, out] = run_guarded(main());
    CHECK(returncode == 7);
    CHECK(out == asyncio_test::pattern(200'000));
}

TEST_CASE("create_subprocess_shell runs COMSPEC /c, with stdout and stderr apart") {
    auto main = []() -> Coro<std::vector<std::string>> {
        asyncio::SubprocessOptions opts{.stdout_ = PIPE, .stderr_ = PIPE};
        Process shell =
            co_await asyncio::create_subprocess_shell("echo out& echo err 1>&2& exit 3", opts);
        auto [out, err] = co_await shell.communicate();
        co_return std::vector<std::string>{std::to_string(*shell.returncode()), without_cr(out),
                                           without_cr(err)};
    };
    const std::vector<std::string> result = run_guarded(main());
    CHECK(result[0] == "3");
    CHECK(result[1] == "out\n");
    CHECK(result[2].rfind("err", 0) == 0);
}

TEST_CASE("terminate() and kill() end a running child with exit code 1") {
    auto main = [](bool use_kill) -> Coro<int> {
        std::vector<std::string> no_args;
        Process cat =
            co_await asyncio::create_subprocess_exec(this_program(), no_args, cat_options());
        CHECK_FALSE(cat.returncode().has_value());
        if (use_kill) {
            cat.kill();
        } else {
            cat.terminate();
        }
        const int returncode = co_await cat.wait();
        co_return returncode;
    };
    CHECK(run_guarded(main(false)) == 1);
    CHECK(run_guarded(main(true)) == 1);
}

TEST_CASE("send_signal refuses what Windows cannot send, as CPython's Popen") {
    auto main = []() -> Coro<bool> {
        std::vector<std::string> no_args;
        Process cat =
            co_await asyncio::create_subprocess_exec(this_program(), no_args, cat_options());
        bool refused = false;
        try {
            cat.send_signal(SIGINT);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        cat.terminate();
        co_await cat.wait();
        co_return refused;
    };
    CHECK(run_guarded(main()));
}

TEST_CASE("a program that does not exist is FileNotFoundError") {
    auto main = []() -> Coro<int> {
        std::vector<std::string> no_args;
        try {
            co_await asyncio::create_subprocess_exec("Z:\\no\\such\\program.exe", no_args);
        } catch (const std::system_error& error) {
            co_return error.code().value();
        }
        co_return 0;
    };
    CHECK(run_guarded(main()) == ENOENT);
}

TEST_CASE("the child runs in cwd and sees only env") {
    auto main = []() -> Coro<std::string> {
        std::map<std::string, std::string> env{{"ASYNCIO_ONLY", "this"}};
        if (const char* root = std::getenv("SystemRoot")) env["SystemRoot"] = root;
        asyncio::SubprocessOptions opts{.stdout_ = PIPE, .cwd = "C:\\", .env = std::move(env)};
        Process shell = co_await asyncio::create_subprocess_shell("cd& echo %ASYNCIO_ONLY%", opts);
        auto [out, err] = co_await shell.communicate();
        co_return without_cr(out);
    };
    CHECK(run_guarded(main()) == "C:\\\nthis\n");
}

// Wine: GenerateConsoleCtrlEvent fails with ERROR_INVALID_ACCESS, since a
// program under wine has no console to send the event through.
TEST_CASE("Ctrl-C cancels asyncio::run's main task, which throws KeyboardInterrupt", "[wine]") {
    bool cancelled = false;
    auto main = [](bool* cancelled) -> Coro<void> {
        REQUIRE(::GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0));
        try {
            co_await asyncio::sleep(30);
        } catch (const asyncio::CancelledError&) {
            *cancelled = true;
            throw;
        }
    };
    CHECK_THROWS_AS(asyncio::run(main(&cancelled)), asyncio::KeyboardInterrupt);
    CHECK(cancelled);
}
