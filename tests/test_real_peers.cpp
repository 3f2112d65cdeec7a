// Interoperability with a peer this project did not write: CPython's own
// asyncio streams (the python3 on PATH), as client of the library's
// start_server and as server for the library's open_connection, checking
// every byte of a 1 MiB payload. Skipped (exit code 77) without python3.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::StreamReader;
using asyncio::StreamWriter;
using asyncio_test::run_guarded;

namespace {

/// The payload both sides build: byte i is (7 * i + i / 251) % 256.
std::string payload(std::size_t n) {
    std::string out(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<char>((7 * i + i / 251) % 256);
    return out;
}

constexpr const char* kPayloadPython = "bytes((7 * i + i // 251) % 256 for i in range(1 << 20))";

bool python_available() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        const std::string candidate = (dir.empty() ? "." : dir) + "/python3";
        if (::access(candidate.c_str(), X_OK) == 0) return true;
    }
    return false;
}

void skip_without_python() {
    if (!python_available()) {
        std::fprintf(stderr, "python3 is not on PATH: test skipped\n");
        std::exit(77);
    }
}

/// A python3 -c `code` child whose stdout is the read end returned.
struct PythonChild {
    pid_t pid = -1;
    int stdout_fd = -1;
};

PythonChild spawn_python(const std::string& code, std::vector<std::string> args) {
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> argv_strings{"python3", "-c", code};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_strings)
        argv.push_back(arg.data());
    argv.push_back(nullptr);
    PythonChild child;
    const int rc = ::posix_spawnp(&child.pid, "python3", &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (rc != 0) ::close(out[0]);
    REQUIRE(rc == 0);
    child.stdout_fd = out[0];
    return child;
}

int wait_exit_status(pid_t pid) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Collects a pipe's bytes; `changed` is set on every arrival and at the end.
struct PipeText : asyncio::Protocol {
    std::string text;
    bool done = false;
    asyncio::Event changed;
    void data_received(std::string_view data) override {
        text += data;
        changed.set();
    }
    void connection_lost(std::exception_ptr) override {
        done = true;
        changed.set();
    }
    Coro<void> wait_line() {
        while (text.find('\n') == std::string::npos && !done) {
            changed.clear();
            co_await changed.wait();
        }
    }
    Coro<void> wait_done() {
        while (!done) {
            changed.clear();
            co_await changed.wait();
        }
    }
};

Coro<std::shared_ptr<PipeText>> read_pipe(int fd) {
    auto text = std::make_shared<PipeText>();
    auto factory = [text] { return text; };
    co_await asyncio::get_running_loop().connect_read_pipe(factory, fd);
    co_return text;
}

Coro<std::string> read_to_eof(StreamReader reader) {
    std::string all;
    for (;;) {
        std::string part = co_await reader.read(1 << 16);
        if (part.empty()) co_return all;
        all += part;
    }
}

}  // namespace

TEST_CASE("a Python asyncio client against the library's echo server") {
    skip_without_python();
    const std::string client_code = std::string(R"(
import asyncio, hashlib, sys
async def main(port):
    r, w = await asyncio.open_connection('127.0.0.1', port)
    payload = )") + kPayloadPython + R"(
    w.write(b'hello\n')
    line = await r.readline()
    w.write(payload)
    w.write_eof()
    got = await r.read()
    w.close()
    await w.wait_closed()
    print(repr(line), len(got), got == payload, hashlib.sha256(got).hexdigest(), flush=True)
asyncio.run(main(int(sys.argv[1])))
)";
    auto main = [](std::string code) -> Coro<std::string> {
        auto received = std::make_shared<std::string>();
        auto echo = [received](StreamReader reader, StreamWriter writer) -> Coro<void> {
            for (;;) {
                std::string part = co_await reader.read(1 << 16);
                if (part.empty()) break;
                *received += part;
                writer.write(part);
                co_await writer.drain();
            }
            writer.close();
            co_await writer.wait_closed();
        };
        auto server = co_await asyncio::start_server(echo, "127.0.0.1", 0);
        const int port = server.sockets().front().port();
        std::vector<std::string> args{std::to_string(port)};
        PythonChild child = spawn_python(code, std::move(args));
        auto out = co_await read_pipe(child.stdout_fd);
        co_await out->wait_done();
        CHECK(wait_exit_status(child.pid) == 0);
        server.close();
        co_await server.wait_closed();
        CHECK(received->size() == 6 + (1u << 20));
        CHECK(*received == "hello\n" + payload(1 << 20));
        co_return out->text;
    };
    const std::string report = run_guarded(main(client_code));
    CHECK(report.rfind("b'hello\\n' 1048576 True ", 0) == 0);
}

TEST_CASE("the library's open_connection against a Python asyncio echo server") {
    skip_without_python();
    const std::string server_code = R"(
import asyncio
async def handle(r, w):
    while True:
        data = await r.read(65536)
        if not data:
            break
        w.write(data)
        await w.drain()
    w.close()
    await w.wait_closed()
    done.set()
async def main():
    global done
    done = asyncio.Event()
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done.wait()
    server.close()
    await server.wait_closed()
asyncio.run(main())
)";
    auto main = [](std::string code) -> Coro<void> {
        PythonChild child = spawn_python(code, {});
        auto out = co_await read_pipe(child.stdout_fd);
        co_await out->wait_line();
        REQUIRE(out->text.find('\n') != std::string::npos);
        const int port = std::stoi(out->text);
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
        CHECK(writer.peername() == asyncio::Address::parse("127.0.0.1", port));
        writer.write("hello\n");
        const std::string line = co_await reader.readline();
        CHECK(line == "hello\n");
        // Read while writing: the peer stops reading when its replies back up.
        auto reading = asyncio::create_task(read_to_eof(reader));
        const std::string data = payload(1 << 20);
        writer.write(data);
        co_await writer.drain();
        writer.write_eof();
        const std::string echoed = co_await reading;
        CHECK(echoed.size() == data.size());
        CHECK(echoed == data);
        writer.close();
        co_await writer.wait_closed();
        co_await out->wait_done();
        CHECK(wait_exit_status(child.pid) == 0);
    };
    run_guarded(main(server_code));
}
