// loop.sendfile and loop.sock_sendfile: ports of CPython's test_sendfile.py
// (SendfileMixin and SockSendfileMixin: whole file, partial, data before and
// after, the fallback, peers closing early, file position, bare writes
// refused meanwhile) plus offsets and counts past the end of the file and
// files that are not regular.
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "support.hpp"

using namespace std::chrono_literals;
using asyncio::Address;
using asyncio::Coro;
using asyncio::Socket;
using asyncio_test::run_guarded;
using asyncio_test::TempFile;

namespace {

// 128 KiB plus a little, not aligned to any buffer size.
std::string make_data() {
    std::string data;
    for (int i = 0; i < 1024 * 8 + 1; ++i)
        data += "SendfileBaseData";
    return data;
}

const std::string kData = make_data();
constexpr int kBufSize = 4 * 1024;  // socket buffers shrunk to test on small data

/// test_sendfile.MySendfileProto: counts what arrives, optionally closing
/// after `close_after` bytes.
struct SendfileProto : asyncio::Protocol {
    explicit SendfileProto(std::size_t close_after_ = 0) : close_after(close_after_) {}
    asyncio::Transport* transport = nullptr;
    std::string data;
    std::size_t close_after;
    int eofs = 0;
    std::exception_ptr lost_error;
    asyncio::Future<> done;

    std::shared_ptr<asyncio::BaseTransport> keep;

    void connection_made(asyncio::BaseTransport& t) override {
        keep = t.shared_from_this();  // usable after connection_lost
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view d) override {
        data += d;
        if (close_after != 0 && data.size() >= close_after) transport->close();
    }
    bool eof_received() override {
        ++eofs;
        return false;
    }
    void connection_lost(std::exception_ptr e) override {
        lost_error = e;
        done.set_result();
    }
};

/// test_sendfile.prepare_sendfile: a server whose receive buffer and a
/// client whose send buffer (and write high-water mark) are small.
struct Connection {
    std::shared_ptr<SendfileProto> server_proto, client_proto;
    std::optional<asyncio::Server> server;
    asyncio::Transport* client = nullptr;
};

Coro<void> prepare(Connection& c, std::size_t close_after = 0) {
    auto& loop = asyncio::get_running_loop();
    c.server_proto = std::make_shared<SendfileProto>(close_after);
    c.client_proto = std::make_shared<SendfileProto>();
    Socket listening(AF_INET, SOCK_STREAM);
    listening.setsockopt(SOL_SOCKET, SO_RCVBUF, kBufSize);  // inherited by accepted sockets
    listening.bind(Address::parse("127.0.0.1", 0));
    const int port = listening.getsockname().port();
    auto server_factory = [&c] { return c.server_proto; };
    c.server = co_await loop.create_server(server_factory, std::move(listening));
    auto client_factory = [&c] { return c.client_proto; };
    auto [transport, protocol] = co_await loop.create_connection(client_factory, "127.0.0.1", port);
    c.client = transport;
    const int fd = std::any_cast<int>(transport->get_extra_info("socket"));
    REQUIRE(asyncio_test::set_socket_option(fd, SOL_SOCKET, SO_SNDBUF, &kBufSize,
                                            sizeof kBufSize) == 0);
    transport->set_write_buffer_limits(kBufSize);
}

/// Closes the client, waits for both ends and the server.
Coro<void> finish(Connection& c) {
    c.client->close();
    co_await c.server_proto->done;
    co_await c.client_proto->done;
    c.server->close();
    co_await c.server->wait_closed();
}

/// A pipe holding `content` (at most its capacity) whose writer is closed.
int filled_pipe(const std::string& content) {
    const auto fds = asyncio_test::os_pipe();
    asyncio_test::write_fd(fds[1], content);
    asyncio_test::close_fd(fds[1]);
    return fds[0];
}

}  // namespace

// -- loop.sendfile -----------------------------------------------------------------------

TEST_CASE("sendfile sends the whole file and moves the file position") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        const std::size_t sent = co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        co_await finish(c);
        CHECK(sent == kData.size());
        CHECK(c.server_proto->data == kData);
        CHECK(file.tell() == static_cast<long long>(kData.size()));
    };
    run_guarded(main());
}

TEST_CASE("sendfile with data written before and after") {
    // test_sendfile_pre_and_post_data: the buffer is flushed first, and the
    // transport takes writes again afterwards.
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        std::string prefix, suffix;
        for (int i = 0; i < 1024; ++i) {
            prefix += "PREFIX__";
            suffix += "--SUFFIX";
        }
        c.client->write(prefix);
        const std::size_t sent = co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        c.client->write(suffix);
        CHECK(c.client->is_reading());  // reading was resumed
        co_await finish(c);
        CHECK(sent == kData.size());
        CHECK(c.server_proto->data == prefix + kData + suffix);
        CHECK(file.tell() == static_cast<long long>(kData.size()));
    };
    run_guarded(main());
}

TEST_CASE("sendfile with an offset and a count") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        const std::size_t sent =
            co_await asyncio::get_running_loop().sendfile(*c.client, file.fd, 1000, 100);
        co_await finish(c);
        CHECK(sent == 100);
        CHECK(c.server_proto->data == kData.substr(1000, 100));
        CHECK(file.tell() == 1100);
    };
    run_guarded(main());
}

TEST_CASE("sendfile stops at the end of the file") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        const std::size_t offset = kData.size() - 100;
        const std::size_t tail = co_await loop.sendfile(*c.client, file.fd, offset, 1000);
        CHECK(tail == 100);
        const std::size_t beyond = co_await loop.sendfile(*c.client, file.fd, kData.size() + 10);
        CHECK(beyond == 0);
        c.client->write("!");
        co_await finish(c);
        CHECK(c.server_proto->data == kData.substr(offset) + "!");
    };
    run_guarded(main());
}

TEST_CASE("sendfile of an empty file sends nothing") {
    auto main = []() -> Coro<void> {
        TempFile file("");
        Connection c;
        co_await prepare(c);
        const std::size_t sent = co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        co_await finish(c);
        CHECK(sent == 0);
        CHECK(c.server_proto->data.empty());
        CHECK(file.tell() == 0);
    };
    run_guarded(main());
}

TEST_CASE("sendfile falls back to reading and writing when zero-copy is impossible") {
    // test_sendfile_force_fallback, with a pipe: sendfile(2) cannot read it.
    auto main = []() -> Coro<void> {
        const std::string content = kData.substr(0, 48 * 1024);
        const int pipe_fd = filled_pipe(content);
        Connection c;
        co_await prepare(c);
        const std::size_t sent = co_await asyncio::get_running_loop().sendfile(*c.client, pipe_fd);
        c.client->write("after");
        co_await finish(c);
        asyncio_test::close_fd(pipe_fd);
        CHECK(sent == content.size());
        CHECK(c.server_proto->data == content + "after");
    };
    run_guarded(main());
}

TEST_CASE("sendfile's fallback reads a slow source without stalling the loop") {
    // CPython reads in the executor: the source is a pipe nobody has written
    // to yet, and the task that writes to it must still get to run.
    auto main = []() -> Coro<void> {
        const auto fds = asyncio_test::os_pipe();
        Connection c;
        co_await prepare(c);
        auto& loop = asyncio::get_running_loop();
        auto sending = loop.create_task(loop.sendfile(*c.client, fds[0]));
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
        CHECK_FALSE(sending.done());
        asyncio_test::write_fd(fds[1], "late");
        asyncio_test::close_fd(fds[1]);
        const std::size_t sent = co_await sending;
        co_await finish(c);
        asyncio_test::close_fd(fds[0]);
        CHECK(sent == 4);
        CHECK(c.server_proto->data == "late");
    };
    asyncio_test::run_guarded(main());
}

TEST_CASE("sendfile's fallback honours count") {
    auto main = []() -> Coro<void> {
        const int pipe_fd = filled_pipe(kData.substr(0, 10000));
        Connection c;
        co_await prepare(c);
        const std::size_t sent =
            co_await asyncio::get_running_loop().sendfile(*c.client, pipe_fd, 0, 3000);
        co_await finish(c);
        asyncio_test::close_fd(pipe_fd);
        CHECK(sent == 3000);
        CHECK(c.server_proto->data == kData.substr(0, 3000));
    };
    run_guarded(main());
}

TEST_CASE("sendfile without fallback raises SendfileNotAvailableError and sends nothing") {
    // test_sendfile_force_unsupported_native
    auto main = []() -> Coro<void> {
        const int pipe_fd = filled_pipe("data");
        Connection c;
        co_await prepare(c);
        bool unavailable = false;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, pipe_fd, 0, std::nullopt,
                                                          false);
        } catch (const asyncio::SendfileNotAvailableError&) {
            unavailable = true;
        }
        CHECK(unavailable);
        CHECK(c.client->is_reading());
        co_await finish(c);
        asyncio_test::close_fd(pipe_fd);
        CHECK(c.server_proto->data.empty());
    };
    run_guarded(main());
}

TEST_CASE("sendfile of a directory raises the read error", "[posix]") {
    // Windows' C runtime cannot open a directory as a descriptor.
#ifndef _WIN32
    auto main = []() -> Coro<std::error_code> {
        const int dir = ::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        REQUIRE(dir >= 0);
        Connection c;
        co_await prepare(c);
        std::error_code code;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, dir);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        ::close(dir);
        co_await finish(c);
        co_return code;
    };
    CHECK(run_guarded(main()) == std::errc::is_a_directory);
#endif
}

TEST_CASE("sendfile on a closing transport raises RuntimeError") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        c.client->close();
        std::optional<std::string> error;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        REQUIRE(error);
        CHECK_THAT(*error, Catch::Contains("is closing"));
        co_await c.server_proto->done;
        co_await c.client_proto->done;
        c.server->close();
        co_await c.server->wait_closed();
        CHECK(c.server_proto->data.empty());
        CHECK(file.tell() == 0);
    };
    run_guarded(main());
}

TEST_CASE("sendfile refuses count 0 as ValueError") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        bool invalid = false;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, file.fd, 0, 0);
        } catch (const std::invalid_argument&) {
            invalid = true;
        }
        CHECK(invalid);
        co_await finish(c);
    };
    run_guarded(main());
}

TEST_CASE("a bare write during sendfile raises RuntimeError") {
    // test_sendfile_prevents_bare_write
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        TempFile file(kData);
        Connection c;
        co_await prepare(c);
        auto sending = [](asyncio::Transport* t, int fd) -> Coro<std::size_t> {
            co_return co_await asyncio::get_running_loop().sendfile(*t, fd);
        };
        auto task = loop.create_task(sending(c.client, file.fd));
        // The small socket buffers make the first sendfile(2) stop short: the
        // task waits inside sendfile after its first step.
        co_await asyncio::sleep(0);
        REQUIRE_FALSE(task.done());
        std::optional<std::string> error;
        try {
            c.client->write("data");
        } catch (const asyncio::RuntimeError& e) {
            error = e.what();
        }
        REQUIRE(error);
        CHECK_THAT(*error, Catch::Contains("sendfile is in progress"));
        const std::size_t sent = co_await task;
        CHECK(sent == kData.size());
        co_await finish(c);
        CHECK(c.server_proto->data == kData);
    };
    run_guarded(main());
}

TEST_CASE("sendfile when the peer closes after receiving everything") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c, kData.size());
        const std::size_t sent = co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        co_await finish(c);
        CHECK(sent == kData.size());
        CHECK(c.server_proto->data == kData);
        CHECK(file.tell() == static_cast<long long>(kData.size()));
    };
    run_guarded(main());
}

namespace {

bool is_connection_error(const std::error_code& code) {
    return code == std::errc::connection_reset || code == std::errc::broken_pipe ||
           code == std::errc::connection_aborted;
}

}  // namespace

TEST_CASE("sendfile when the peer closes in the middle raises ConnectionError") {
    // test_sendfile_close_peer_in_the_middle_of_receiving: also, no SIGPIPE.
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        Connection c;
        co_await prepare(c, 1024);
        std::error_code code;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, file.fd);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(is_connection_error(code));
        co_await c.server_proto->done;
        co_await c.client_proto->done;  // the client transport closes too
        CHECK(c.client->is_closing());
        c.server->close();
        co_await c.server->wait_closed();
        CHECK(c.server_proto->data.size() >= 1024);
        CHECK(c.server_proto->data.size() < kData.size());
#ifndef _WIN32
        // As CPython's test skips it on the proactor: TransmitFile sends the
        // file in one call, and a failed call does not say how much left.
        CHECK(file.tell() >= 1024);
        CHECK(file.tell() < static_cast<long long>(kData.size()));
#endif
    };
    run_guarded(main());
}

TEST_CASE("sendfile's fallback when the peer closes in the middle raises ConnectionError") {
    auto main = []() -> Coro<void> {
        const int pipe_fd = filled_pipe(kData.substr(0, 60 * 1024));
        Connection c;
        co_await prepare(c, 1024);
        std::error_code code;
        try {
            co_await asyncio::get_running_loop().sendfile(*c.client, pipe_fd);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        asyncio_test::close_fd(pipe_fd);
        CHECK(is_connection_error(code));
        co_await c.server_proto->done;
        co_await c.client_proto->done;
        c.server->close();
        co_await c.server->wait_closed();
        CHECK(c.server_proto->data.size() >= 1024);
        CHECK(c.server_proto->data.size() < 60 * 1024);
    };
    run_guarded(main());
}

// -- loop.sock_sendfile ------------------------------------------------------------------

namespace {

/// test_sendfile.prepare_socksendfile: a connected client socket with a
/// small send buffer and a collecting server protocol.
struct SockConnection {
    std::shared_ptr<SendfileProto> server_proto;
    std::optional<asyncio::Server> server;
    Socket client;
};

Coro<void> prepare_sock(SockConnection& c) {
    auto& loop = asyncio::get_running_loop();
    c.server_proto = std::make_shared<SendfileProto>();
    Socket listening(AF_INET, SOCK_STREAM);
    listening.setsockopt(SOL_SOCKET, SO_RCVBUF, kBufSize);
    listening.bind(Address::parse("127.0.0.1", 0));
    const Address address = listening.getsockname();
    auto factory = [&c] { return c.server_proto; };
    c.server = co_await loop.create_server(factory, std::move(listening));
    c.client = Socket(AF_INET, SOCK_STREAM);
    co_await loop.sock_connect(c.client, address);
    c.client.setsockopt(SOL_SOCKET, SO_SNDBUF, kBufSize);
}

Coro<void> finish_sock(SockConnection& c) {
    c.client.close();
    co_await c.server_proto->done;
    c.server->close();
    co_await c.server->wait_closed();
}

}  // namespace

TEST_CASE("sock_sendfile with offset and count moves the file position") {
    auto main = []() -> Coro<void> {
        TempFile file(kData);
        SockConnection c;
        co_await prepare_sock(c);
        const std::size_t sent =
            co_await asyncio::get_running_loop().sock_sendfile(c.client, file.fd, 1000, 2000);
        co_await finish_sock(c);
        CHECK(sent == 2000);
        CHECK(c.server_proto->data == kData.substr(1000, 2000));
        CHECK(file.tell() == 3000);
    };
    run_guarded(main());
}

TEST_CASE("sock_sendfile of an empty file returns 0") {
    auto main = []() -> Coro<void> {
        TempFile file("");
        SockConnection c;
        co_await prepare_sock(c);
        const std::size_t sent =
            co_await asyncio::get_running_loop().sock_sendfile(c.client, file.fd, 0);
        co_await finish_sock(c);
        CHECK(sent == 0);
        CHECK(c.server_proto->data.empty());
        CHECK(file.tell() == 0);
    };
    run_guarded(main());
}

TEST_CASE("sock_sendfile mixed with sock_sendall") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        TempFile file(kData);
        SockConnection c;
        co_await prepare_sock(c);
        std::string buf;
        for (int i = 0; i < 4 * 1024; ++i)
            buf += "mix_regular_send";
        co_await loop.sock_sendall(c.client, buf);
        const std::size_t sent = co_await loop.sock_sendfile(c.client, file.fd);
        co_await loop.sock_sendall(c.client, buf);
        co_await finish_sock(c);
        CHECK(sent == kData.size());
        CHECK(c.server_proto->data == buf + kData + buf);
        CHECK(file.tell() == static_cast<long long>(kData.size()));
    };
    run_guarded(main());
}

TEST_CASE("sock_sendfile refuses bad arguments as ValueError") {
    // base_events._check_sendfile_params
    auto main = [](int which) -> Coro<void> {
        TempFile file(kData);
        auto& loop = asyncio::get_running_loop();
        if (which == 0) {
            Socket udp(AF_INET, SOCK_DGRAM);
            co_await loop.sock_sendfile(udp, file.fd);
        } else if (which == 1) {
            Socket tcp(AF_INET, SOCK_STREAM);
            co_await loop.sock_sendfile(tcp, file.fd, 0, 0);
        } else {
            Socket closed(AF_INET, SOCK_STREAM);
            closed.close();
            co_await loop.sock_sendfile(closed, file.fd);
        }
    };
    CHECK_THROWS_AS(run_guarded(main(0)), std::invalid_argument);
    CHECK_THROWS_AS(run_guarded(main(1)), std::invalid_argument);
    CHECK_THROWS_AS(run_guarded(main(2)), std::invalid_argument);
}

TEST_CASE("sock_sendfile of a bad descriptor or a directory raises the OS error", "[wine]") {
    // [wine]: wine's msvcrt _fstat64(-1) fails without setting errno (Windows
    // sets EBADF), so the error reported is a stale errno.
    auto main = [](int fd) -> Coro<std::error_code> {
        SockConnection c;
        co_await prepare_sock(c);
        std::error_code code;
        try {
            co_await asyncio::get_running_loop().sock_sendfile(c.client, fd);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        co_await finish_sock(c);
        co_return code;
    };
    CHECK(run_guarded(main(-1)) == std::errc::bad_file_descriptor);
#ifndef _WIN32  // Windows' C runtime cannot open a directory as a descriptor
    const int dir = ::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(dir >= 0);
    CHECK(run_guarded(main(dir)) == std::errc::is_a_directory);
    ::close(dir);
#endif
}

// [wine]: wine 8's TransmitFile waits forever for writability once the
// peer has reset the connection under it; Windows fails it with a reset.
TEST_CASE("sock_sendfile to a peer that closed raises EPIPE or ECONNRESET, not SIGPIPE", "[wine]") {
    auto main = []() -> Coro<std::error_code> {
        auto& loop = asyncio::get_running_loop();
        TempFile file(kData);
        Socket listening(AF_INET, SOCK_STREAM);
        listening.bind(Address::parse("127.0.0.1", 0));
        listening.listen();
        Socket client(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(client, listening.getsockname());
        {
            auto [conn, peer] = co_await loop.sock_accept(listening);
            conn.close();  // with nothing unread: FIN
        }
        const std::string eof = co_await loop.sock_recv(client, 1);
        CHECK(eof.empty());
        std::error_code code;
        try {
            // The first write draws a RST; a later one fails.
            for (int i = 0; i < 10; ++i)
                co_await loop.sock_sendfile(client, file.fd);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        co_return code;
    };
    CHECK(is_connection_error(run_guarded(main())));
}
