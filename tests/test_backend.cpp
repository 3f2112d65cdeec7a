// The backend interface, exercised directly with IoOps on pipes and
// sockets: try-first completion, waiting, FIFO order, cancellation of an
// operation through its task, discard, forget_fd. Runs on every backend.
#ifndef _WIN32
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Coro;
using asyncio::IoOp;
using asyncio::detail::IoAwaiter;
using asyncio_test::run_guarded;

namespace {

struct SocketPair {
    int a = -1, b = -1;
    SocketPair() {
        const auto sv = asyncio_test::socket_pair(/*non_blocking=*/true);
        a = sv[0];
        b = sv[1];
    }
    ~SocketPair() {
        asyncio_test::close_socket(a);
        asyncio_test::close_socket(b);
    }
};

/// A raw non-blocking TCP socket the test closes with close_socket.
int tcp_socket() {
    return asyncio::Socket(AF_INET, SOCK_STREAM).detach();
}

/// Writes all of `data` to the raw socket `fd` (the tests' peer).
void write_all(int fd, std::string_view data) {
    REQUIRE(asyncio_test::raw_send(fd, data.data(), data.size()) ==
            static_cast<long long>(data.size()));
}

/// Awaits one recv of up to `n` bytes on `fd`.
Coro<std::string> recv_some(int fd, std::size_t n) {
    std::string buf(n, '\0');
    IoAwaiter op(asyncio::get_running_loop().backend());
    op.kind = IoOp::Kind::recv;
    op.fd = fd;
    op.buf = buf.data();
    op.len = n;
    const std::int64_t r = co_await op;
    // An errno value on every OS (Windows' system category holds Win32 codes).
    if (r < 0) throw std::system_error(static_cast<int>(-r), std::generic_category(), "recv");
    buf.resize(static_cast<std::size_t>(r));
    co_return buf;
}

Coro<std::int64_t> send_some(int fd, const std::string& data) {
    IoAwaiter op(asyncio::get_running_loop().backend());
    op.kind = IoOp::Kind::send;
    op.fd = fd;
    op.buf = const_cast<char*>(data.data());
    op.len = data.size();
    co_return co_await op;
}

Coro<std::int64_t> wait_readable(int fd) {
    IoAwaiter op(asyncio::get_running_loop().backend());
    op.kind = IoOp::Kind::poll_readable;
    op.fd = fd;
    co_return co_await op;
}

}  // namespace

TEST_CASE("backend names round-trip") {
    for (auto b : {asyncio::Backend::epoll, asyncio::Backend::io_uring, asyncio::Backend::kqueue,
                   asyncio::Backend::iocp, asyncio::Backend::poll}) {
        CHECK(asyncio::backend_from_string(asyncio::to_string(b)) == b);
    }
    CHECK_FALSE(asyncio::backend_from_string("select").has_value());
    const auto available = asyncio::available_backends();
    REQUIRE_FALSE(available.empty());
    for (auto b : available)
        CHECK(asyncio::backend_available(b));
}

#ifndef _WIN32
namespace {

#if defined(__x86_64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#endif

/// In a forked child: refuses io_uring_setup with EPERM, as Docker's default
/// seccomp profile does, then checks what a default loop does. Returns the
/// child's exit code: 0 when it ran on epoll and debug mode said why.
int default_loop_under_seccomp(bool expect_refusal_logged) {
    ::unsetenv("ASYNCIO_BACKEND");
    ::setenv("ASYNCIO_DEBUG", "1", 1);
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 10;
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) return 11;
    if (asyncio::backend_available(asyncio::Backend::io_uring)) return 12;
    asyncio_test::CapturedLog log;
    asyncio::EventLoop loop;
    if (loop.backend_name() != "epoll") return 13;
    if (expect_refusal_logged && !log.contains("io_uring_setup: Operation not permitted"))
        return 14;
    auto ping = []() -> Coro<int> {
        co_await asyncio::sleep(0);
        co_return 7;
    };
    if (loop.run_until_complete(ping()) != 7) return 15;
    return 0;
}

}  // namespace
#endif

TEST_CASE("io_uring refused by a seccomp filter: the default loop runs on epoll", "[posix]") {
#ifndef _WIN32
    // Where io_uring works here, the child proves the fallback and its log;
    // elsewhere it proves at least that a default loop still runs.
    const bool uring_here = asyncio::backend_available(asyncio::Backend::io_uring);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(default_loop_under_seccomp(uring_here));
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
#endif
}

TEST_CASE("an unavailable backend is refused with a clear error") {
#ifdef _WIN32
    CHECK_THROWS_WITH(asyncio::EventLoop(asyncio::Backend::epoll),
                      "the epoll backend is not available on this machine");
#else
    CHECK_THROWS_WITH(asyncio::EventLoop(asyncio::Backend::iocp),
                      "the iocp backend is not available on this machine");
#endif
}

TEST_CASE("an op whose data is already there completes at once") {
    SocketPair sp;
    write_all(sp.b, "ready");
    auto main = [](int fd) -> Coro<std::string> {
        int iterations = 0;
        asyncio::get_running_loop().call_soon([&] { ++iterations; });
        std::string got = co_await recv_some(fd, 16);
        // A readiness backend tries the call and does not suspend; a
        // completion backend hands it to the kernel in the next iteration's
        // single submission, and it is done when that iteration ends.
        CHECK(iterations == (asyncio::get_running_loop().backend().completes_inline() ? 0 : 1));
        co_return got;
    };
    CHECK(run_guarded(main(sp.a)) == "ready");
}

TEST_CASE("an op waits until the fd is ready") {
    SocketPair sp;
    auto main = [](int reader, int writer) -> Coro<std::string> {
        auto pending = asyncio::create_task(recv_some(reader, 16));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK_FALSE(pending.done());
        asyncio::get_running_loop().call_later(5ms, [writer] { write_all(writer, "later"); });
        co_return co_await pending;
    };
    CHECK(run_guarded(main(sp.a, sp.b)) == "later");
}

TEST_CASE("ops waiting on one fd complete in FIFO order") {
    SocketPair sp;
    auto main = [](int reader, int writer) -> Coro<std::vector<std::string>> {
        auto first = asyncio::create_task(recv_some(reader, 3));
        auto second = asyncio::create_task(recv_some(reader, 3));
        co_await asyncio::sleep(0);
        write_all(writer, "abcdef");
        std::vector<std::string> got;
        got.push_back(co_await first);
        got.push_back(co_await second);
        co_return got;
    };
    CHECK(run_guarded(main(sp.a, sp.b)) == std::vector<std::string>{"abc", "def"});
}

TEST_CASE("a large send waits for the peer to drain") {
    SocketPair sp;
    auto main = [](int a, int b) -> Coro<std::pair<std::size_t, std::size_t>> {
        const std::string chunk(1 << 20, 'x');
        std::size_t sent = 0;
        auto writer = [&]() -> Coro<void> {
            while (sent < 8 * chunk.size()) {
                const std::int64_t r = co_await send_some(a, chunk);
                REQUIRE(r > 0);
                sent += static_cast<std::size_t>(r);
            }
            ::shutdown(a, SHUT_WR);
        };
        auto w = asyncio::create_task(writer());
        std::size_t received = 0;
        for (;;) {
            std::string part = co_await recv_some(b, 1 << 16);
            if (part.empty()) break;
            CHECK(part.find_first_not_of('x') == std::string::npos);
            received += part.size();
        }
        co_await w;
        co_return std::pair{sent, received};
    };
    const auto [sent, received] = run_guarded(main(sp.a, sp.b));
    CHECK(sent >= 8u << 20);
    CHECK(received == sent);
}

TEST_CASE("cancelling a task cancels the operation it waits on") {
    SocketPair sp;
    auto main = [](int reader, int writer) -> Coro<std::string> {
        auto victim = asyncio::create_task(recv_some(reader, 16));
        co_await asyncio::sleep(0);
        victim.cancel("no more waiting");
        std::string outcome;
        try {
            co_await victim;
        } catch (const asyncio::CancelledError& e) {
            outcome = e.message();
        }
        // The cancelled op is gone: new data goes to the next reader.
        write_all(writer, "next");
        outcome += "/" + co_await recv_some(reader, 16);
        co_return outcome;
    };
    CHECK(run_guarded(main(sp.a, sp.b)) == "no more waiting/next");
}

TEST_CASE("an op in a task destroyed at loop close is discarded") {
    SocketPair sp;
    auto loop = asyncio::new_event_loop();
    asyncio_test::RecordedReports reports(*loop);
    auto task = loop->create_task(recv_some(sp.a, 16));
    loop->call_soon([&] { loop->stop(); });
    loop->run_forever();
    loop->close();  // the op's awaiter dies with the task's frame
    CHECK(reports.contains("Task was destroyed but it is pending!"));
    write_all(sp.b, "x");  // nothing may touch the dead op
#ifdef _WIN32
    // IOCP ties a socket to one completion port for the socket's life (as
    // with CPython's proactor, a fresh loop gets EINVAL): a blocking recv
    // shows that the byte is still there for a reader.
    asyncio_test::set_blocking(sp.a, true);
    char byte = 0;
    CHECK(asyncio_test::raw_recv(sp.a, &byte, 1) == 1);
    CHECK(byte == 'x');
#else
    auto fresh = asyncio::new_event_loop();
    CHECK(fresh->run_until_complete(recv_some(sp.a, 16)) == "x");
#endif
}

TEST_CASE("more completions at once than the completion queue holds all arrive") {
    // 10,000 one-byte reads wait on one socket, then 10,000 bytes arrive at
    // once: io_uring's completion queue (8,192 entries) overflows, and the
    // kernel keeps the rest until the backend has room.
    SocketPair sp;
    auto main = [](int reader, int writer) -> Coro<std::size_t> {
        constexpr int kReads = 10'000;
        std::vector<asyncio::Task<std::string>> reads;
        for (int i = 0; i < kReads; ++i)
            reads.push_back(asyncio::create_task(recv_some(reader, 1)));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        const std::string bytes(kReads, 'z');
        std::size_t written = 0;
        while (written < bytes.size()) {
            const long long n =
                asyncio_test::raw_send(writer, bytes.data() + written, bytes.size() - written);
            REQUIRE(n > 0);
            written += static_cast<std::size_t>(n);
        }
        std::size_t got = 0;
        for (auto& read : reads) {
            std::string one = co_await read;
            got += one == "z" ? 1 : 0;
        }
        co_return got;
    };
    CHECK(run_guarded(main(sp.a, sp.b)) == 10'000u);
}

TEST_CASE("poll ops complete when the fd is ready", "[posix]") {
    // IOCP reports completions, not readiness (add_reader's NotImplementedError).
    SocketPair sp;
    auto main = [](int reader, int writer) -> Coro<std::int64_t> {
        auto waiting = asyncio::create_task(wait_readable(reader));
        co_await asyncio::sleep(0);
        CHECK_FALSE(waiting.done());
        write_all(writer, "p");
        co_return co_await waiting;
    };
    CHECK(run_guarded(main(sp.a, sp.b)) >= 0);
}

TEST_CASE("accept and connect over loopback TCP") {
    const int listener = tcp_socket();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener, 16) == 0);
    ::socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);

    auto main = [](int lfd, sockaddr_in target) -> Coro<std::string> {
        auto& backend = asyncio::get_running_loop().backend();
        auto server = [&]() -> Coro<std::string> {
            IoAwaiter accept_op(backend);
            accept_op.kind = IoOp::Kind::accept;
            accept_op.fd = lfd;
            const std::int64_t conn = co_await accept_op;
            REQUIRE(conn >= 0);
#ifndef _WIN32  // winsock cannot tell whether a socket is non-blocking
            CHECK((::fcntl(static_cast<int>(conn), F_GETFL) & O_NONBLOCK) != 0);
#endif
            std::string got = co_await recv_some(static_cast<int>(conn), 64);
            asyncio::get_running_loop().backend().forget_fd(static_cast<int>(conn));
            asyncio_test::close_socket(static_cast<int>(conn));
            co_return got;
        };
        auto accepted = asyncio::create_task(server());
        const int client = tcp_socket();
        IoAwaiter connect_op(backend);
        connect_op.kind = IoOp::Kind::connect;
        connect_op.fd = client;
        connect_op.addr = reinterpret_cast<sockaddr*>(&target);
        connect_op.addrlen = sizeof target;
        const std::int64_t r = co_await connect_op;
        REQUIRE(r == 0);
        const std::int64_t sent = co_await send_some(client, "over tcp");
        CHECK(sent == 8);
        std::string got = co_await accepted;
        backend.forget_fd(client);
        asyncio_test::close_socket(client);
        co_return got;
    };
    CHECK(run_guarded(main(listener, addr)) == "over tcp");
    asyncio_test::close_socket(listener);
}

TEST_CASE("connect to a closed port fails with ECONNREFUSED") {
    // Bind a port and do not listen there. The socket stays open: a port
    // closed before the connect could become the client's own (a connect
    // from a port to itself succeeds), as under IOCP, whose ConnectEx binds
    // the client to an ephemeral port first.
    const int probe = tcp_socket();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::socklen_t len = sizeof addr;
    REQUIRE(::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len) == 0);

    auto main = [](sockaddr_in target) -> Coro<std::int64_t> {
        const int fd = tcp_socket();
        IoAwaiter op(asyncio::get_running_loop().backend());
        op.kind = IoOp::Kind::connect;
        op.fd = fd;
        op.addr = reinterpret_cast<sockaddr*>(&target);
        op.addrlen = sizeof target;
        const std::int64_t r = co_await op;
        asyncio::get_running_loop().backend().forget_fd(fd);
        asyncio_test::close_socket(fd);
        co_return r;
    };
    CHECK(run_guarded(main(addr)) == -ECONNREFUSED);
    asyncio_test::close_socket(probe);
}

TEST_CASE("forget_fd completes the ops still waiting with EBADF") {
    SocketPair sp;
    auto main = [](int fd) -> Coro<std::string> {
        auto waiting = asyncio::create_task(recv_some(fd, 8));
        co_await asyncio::sleep(0);
        asyncio::get_running_loop().backend().forget_fd(fd);
        try {
            co_await waiting;
        } catch (const std::system_error& e) {
            co_return std::to_string(e.code().value());
        }
        co_return "no error";
    };
    CHECK(run_guarded(main(sp.a)) == std::to_string(EBADF));
}

TEST_CASE("pipes: read and write ops", "[posix]") {
#ifndef _WIN32
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    auto main = [](int r, int w) -> Coro<std::string> {
        auto& backend = asyncio::get_running_loop().backend();
        std::string buf(16, '\0');
        auto reader = [&]() -> Coro<std::int64_t> {
            IoAwaiter op(backend);
            op.kind = IoOp::Kind::read;
            op.fd = r;
            op.buf = buf.data();
            op.len = buf.size();
            co_return co_await op;
        };
        auto pending = asyncio::create_task(reader());
        co_await asyncio::sleep(0);
        std::string msg = "piped";
        IoAwaiter write_op(backend);
        write_op.kind = IoOp::Kind::write;
        write_op.fd = w;
        write_op.buf = msg.data();
        write_op.len = msg.size();
        const std::int64_t written = co_await write_op;
        CHECK(written == 5);
        const std::int64_t n = co_await pending;
        buf.resize(static_cast<std::size_t>(n));
        backend.forget_fd(r);
        backend.forget_fd(w);
        co_return buf;
    };
    CHECK(run_guarded(main(fds[0], fds[1])) == "piped");
    ::close(fds[0]);
    ::close(fds[1]);
#endif
}
