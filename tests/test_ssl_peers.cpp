// TLS against peers nobody here wrote: the openssl command's s_server and
// s_client, started as subprocesses.
#include <asyncio/ssl.hpp>
#include <asyncio/subprocess.hpp>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"
#include "tls_certs.hpp"

using asyncio::Coro;
using asyncio::PIPE;
using asyncio_test::client_context;
using asyncio_test::run_guarded;
using asyncio_test::server_context;
using asyncio_test::TlsCerts;

namespace {

struct Client : asyncio::Protocol {
    std::string data;
    std::string want;
    std::exception_ptr lost_error;
    asyncio::Future<> got = asyncio::get_running_loop().create_future();
    asyncio::Future<> lost = asyncio::get_running_loop().create_future();
    void data_received(std::string_view d) override {
        data += d;
        if (!want.empty() && data.find(want) != std::string::npos && !got.done()) got.set_result();
    }
    void connection_lost(std::exception_ptr e) override {
        lost_error = e;
        if (!lost.done()) lost.set_result();
    }
};

struct Echo : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view data) override {
        transport->write("echo:" + std::string(data));
    }
};

/// Reads `reader` until a line contains `needle`; returns that line.
Coro<std::string> line_with(asyncio::StreamReader reader, std::string needle) {
    while (true) {
        std::string line = co_await reader.readline();
        if (line.empty()) co_return line;  // EOF
        if (line.find(needle) != std::string::npos) co_return line;
    }
}

}  // namespace

TEST_CASE("our client against openssl s_server: data both ways, ALPN, then close") {
    auto main = []() -> Coro<void> {
        const TlsCerts& certs = TlsCerts::get();
        std::vector<std::string> args{
            "s_server",         "-accept",  "127.0.0.1:0", "-cert", certs.server_cert(), "-key",
            certs.server_key(), "-naccept", "1",           "-alpn", "h2,http/1.1"};
        asyncio::SubprocessOptions options{
            .stdin_ = PIPE, .stdout_ = PIPE, .stderr_ = asyncio::DEVNULL};
        asyncio::Process server =
            co_await asyncio::create_subprocess_exec("openssl", args, options);
        // "ACCEPT 127.0.0.1:PORT"
        std::string accept = co_await line_with(*server.stdout_, "ACCEPT");
        REQUIRE(accept.rfind("ACCEPT ", 0) == 0);
        const int port = std::stoi(accept.substr(accept.rfind(':') + 1));

        auto& loop = asyncio::get_running_loop();
        auto client = std::make_shared<Client>();
        auto factory = [&client] { return client; };
        asyncio::SSLContext context = client_context();
        context.set_alpn_protocols({"http/1.1"});
        asyncio::ConnectionOptions connect{.ssl = context, .server_hostname = "localhost"};
        auto [transport, protocol] =
            co_await loop.create_connection(factory, "127.0.0.1", port, connect);
        auto alpn = std::any_cast<std::optional<std::string>>(
            transport->get_extra_info("selected_alpn_protocol"));
        CHECK(alpn == std::optional<std::string>("http/1.1"));

        transport->write("hello from asyncio\n");
        std::string seen = co_await line_with(*server.stdout_, "hello from asyncio");
        CHECK(seen == "hello from asyncio\n");

        client->want = "hello from openssl";
        server.stdin_->write("hello from openssl\n");
        co_await server.stdin_->drain();
        co_await client->got;

        transport->close();
        co_await client->lost;
        CHECK(client->lost_error == nullptr);
        server.stdin_->close();
        const int code = co_await server.wait();
        CHECK(code == 0);
    };
    run_guarded(main());
}

TEST_CASE("openssl s_client against our server: it verifies us, and gets the echo") {
    auto main = []() -> Coro<void> {
        const TlsCerts& certs = TlsCerts::get();
        auto& loop = asyncio::get_running_loop();
        asyncio::ServerOptions server_options{.ssl = server_context()};
        auto factory = [] { return std::make_shared<Echo>(); };
        asyncio::Server server =
            co_await loop.create_server(factory, "127.0.0.1", 0, server_options);
        const int port = server.sockets().front().port();

        std::vector<std::string> args{
            "s_client",         "-connect",  "127.0.0.1:" + std::to_string(port),
            "-CAfile",          certs.ca(),  "-verify_return_error",
            "-verify_hostname", "localhost", "-servername",
            "localhost",        "-quiet",    "-no_ign_eof"};
        asyncio::SubprocessOptions options{
            .stdin_ = PIPE, .stdout_ = PIPE, .stderr_ = asyncio::DEVNULL};
        asyncio::Process client =
            co_await asyncio::create_subprocess_exec("openssl", args, options);
        client.stdin_->write("ping\n");
        co_await client.stdin_->drain();
        std::string answer = co_await client.stdout_->readline();
        CHECK(answer == "echo:ping\n");
        client.stdin_->close();  // s_client sends close_notify and exits
        const int code = co_await client.wait();
        CHECK(code == 0);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

namespace {

/// Sends back what it receives.
struct PlainEcho : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view data) override { transport->write(data); }
};

std::string megabyte() {
    std::string data(1 << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(i % 251);
    return data;
}

}  // namespace

TEST_CASE("Python's asyncio with ssl as the client of our TLS server, 1 MiB echoed") {
    auto main = []() -> Coro<void> {
        const TlsCerts& certs = TlsCerts::get();
        auto& loop = asyncio::get_running_loop();
        asyncio::ServerOptions server_options{.ssl = server_context()};
        auto factory = [] { return std::make_shared<PlainEcho>(); };
        asyncio::Server server =
            co_await loop.create_server(factory, "127.0.0.1", 0, server_options);
        const int port = server.sockets().front().port();
        const std::string code = R"(
import asyncio, ssl, sys
async def main(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    payload = bytes(i % 251 for i in range(1 << 20))
    w.write(payload)
    await w.drain()
    got = await r.readexactly(len(payload))
    print("ok" if got == payload else "mismatch", w.get_extra_info("ssl_object").version())
    w.close()
    await w.wait_closed()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
)";
        std::vector<std::string> args{"-c", code, std::to_string(port), certs.ca()};
        asyncio::SubprocessOptions options{.stdout_ = PIPE};
        asyncio::Process python =
            co_await asyncio::create_subprocess_exec("python3", args, options);
        auto [out, err] = co_await python.communicate();
        CHECK(out == "ok TLSv1.3\n");
        CHECK(python.returncode() == 0);
        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("our streams client against Python's asyncio TLS server, 1 MiB echoed") {
    auto main = []() -> Coro<void> {
        const TlsCerts& certs = TlsCerts::get();
        const std::string code = R"(
import asyncio, ssl, sys
async def main(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    done = asyncio.Event()
    async def handle(r, w):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()
        done.set()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await done.wait()
asyncio.run(main(sys.argv[1], sys.argv[2]))
)";
        std::vector<std::string> args{"-c", code, certs.server_cert(), certs.server_key()};
        asyncio::SubprocessOptions options{.stdout_ = PIPE};
        asyncio::Process python =
            co_await asyncio::create_subprocess_exec("python3", args, options);
        std::string port_line = co_await python.stdout_->readline();
        REQUIRE_FALSE(port_line.empty());
        const int port = std::stoi(port_line);

        asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port, open);
        const std::string payload = megabyte();
        writer.write(payload);
        co_await writer.drain();
        std::string echoed = co_await reader.readexactly(payload.size());
        CHECK(echoed == payload);
        writer.close();
        co_await writer.wait_closed();
        const int status = co_await python.wait();
        CHECK(status == 0);
    };
    run_guarded(main());
}
