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
using asyncio_test::run_guarded;
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
        asyncio::SSLContext context;
        context.load_verify_locations(certs.ca());
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
        asyncio::SSLContext context(asyncio::Purpose::CLIENT_AUTH);
        context.load_cert_chain(certs.server_cert(), certs.server_key());
        asyncio::ServerOptions server_options{.ssl = context};
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
