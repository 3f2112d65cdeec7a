// The TLS layer (sslproto): ports of CPython's Lib/test/test_asyncio/
// test_sslproto.py and the start_tls cases of test_ssl.py's asyncio tests,
// over a socket pair, on every backend. The certificates come from openssl.
#include <sys/socket.h>

#include <asyncio/ssl.hpp>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "support.hpp"
#include "tls_certs.hpp"

using asyncio::Coro;
using asyncio_test::client_context;
using asyncio_test::run_guarded;
using asyncio_test::server_context;
using asyncio_test::ServerCert;
using namespace std::chrono_literals;

namespace {

/// Records what the application side of a connection sees.
struct Peer : asyncio::Protocol {
    std::shared_ptr<asyncio::BaseTransport> transport;
    std::string data;
    std::size_t want = 0;
    int eofs = 0;
    std::exception_ptr lost_error;
    asyncio::Future<> got = asyncio::get_running_loop().create_future();
    asyncio::Future<> lost = asyncio::get_running_loop().create_future();
    int pauses = 0;
    asyncio::Future<> resumed = asyncio::get_running_loop().create_future();

    void connection_made(asyncio::BaseTransport& t) override { transport = t.shared_from_this(); }
    void pause_writing() override { ++pauses; }
    void resume_writing() override {
        if (!resumed.done()) resumed.set_result();
    }
    void data_received(std::string_view d) override {
        data += d;
        if (want != 0 && data.size() >= want && !got.done()) got.set_result();
    }
    bool eof_received() override {
        ++eofs;
        return false;
    }
    void connection_lost(std::exception_ptr e) override {
        lost_error = e;
        if (!lost.done()) lost.set_result();
    }
    asyncio::Transport& plain() { return dynamic_cast<asyncio::Transport&>(*transport); }
};

struct Pair {
    std::shared_ptr<Peer> client = std::make_shared<Peer>();
    std::shared_ptr<Peer> server = std::make_shared<Peer>();
};

/// Two plain transports over a socket pair.
Coro<Pair> connected_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    Pair pair;
    auto& loop = asyncio::get_running_loop();
    auto client_factory = [&pair] { return pair.client; };
    auto server_factory = [&pair] { return pair.server; };
    co_await loop.connect_accepted_socket(client_factory, asyncio::Socket::from_fd(fds[0]));
    co_await loop.connect_accepted_socket(server_factory, asyncio::Socket::from_fd(fds[1]));
    co_return pair;
}

/// Upgrades both ends at once; each result is the TLS transport or the error.
struct Upgraded {
    asyncio::Outcome<asyncio::Transport*> client;
    asyncio::Outcome<asyncio::Transport*> server;
};

Coro<Upgraded> upgrade_both(Pair& pair, asyncio::SSLContext client, asyncio::SSLContext server,
                            asyncio::TlsOptions client_options) {
    auto& loop = asyncio::get_running_loop();
    asyncio::TlsOptions server_options{.server_side = true};
    auto client_side = loop.create_task(
        loop.start_tls(pair.client->plain(), *pair.client, client, client_options));
    auto server_side = loop.create_task(
        loop.start_tls(pair.server->plain(), *pair.server, server, server_options));
    auto [c, s] = co_await asyncio::gather(asyncio::return_exceptions, client_side, server_side);
    co_return Upgraded{std::move(c), std::move(s)};
}

template <class E>
bool holds(const asyncio::Outcome<asyncio::Transport*>& outcome) {
    if (outcome.has_value()) return false;
    try {
        std::rethrow_exception(outcome.exception());
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace

TEST_CASE("start_tls on both ends: data both ways, then close_notify ends it cleanly") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        // Named options: GCC 12 destroys a braced temporary with a string in
        // a co_await twice (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100611).
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        asyncio::Transport* client = std::move(up.client).get();
        asyncio::Transport* server = std::move(up.server).get();
        auto cipher = std::any_cast<std::optional<std::tuple<std::string, std::string, int>>>(
            client->get_extra_info("cipher"));
        REQUIRE(cipher.has_value());
        CHECK(std::get<1>(*cipher) == "TLSv1.3");
        CHECK_FALSE(client->can_write_eof());

        pair.server->want = 5;
        client->write("hello");
        co_await pair.server->got;
        CHECK(pair.server->data == "hello");

        // More than a record both ways.
        const std::string big(1 << 20, 'b');
        pair.client->want = big.size();
        server->write(big);
        co_await pair.client->got;
        CHECK(pair.client->data == big);

        client->close();
        co_await pair.server->lost;
        co_await pair.client->lost;
        CHECK(pair.server->eofs == 1);
        CHECK(pair.server->lost_error == nullptr);
        CHECK(pair.client->lost_error == nullptr);
    };
    run_guarded(main());
}

TEST_CASE("an untrusted certificate fails the client's handshake with SSLCertVerificationError") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client_context(),
                                            server_context(ServerCert::self_signed), options);
        CHECK(holds<asyncio::SSLCertVerificationError>(up.client));
        CHECK_FALSE(up.server.has_value());
    };
    run_guarded(main());
}

TEST_CASE("a hostname mismatch fails with verify code 62") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::TlsOptions options{.server_hostname = "example.com"};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(holds<asyncio::SSLCertVerificationError>(up.client));
        try {
            std::rethrow_exception(up.client.exception());
        } catch (const asyncio::SSLCertVerificationError& e) {
            CHECK(e.verify_code() == 62);
        }
    };
    run_guarded(main());
}

TEST_CASE("flow control through the layer: a peer that stops reading pauses the writer") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        asyncio::Transport* client = std::move(up.client).get();
        asyncio::Transport* server = std::move(up.server).get();
        server->pause_reading();
        CHECK_FALSE(server->is_reading());

        // Each write is encrypted and handed down at once; what the socket
        // cannot take stays in the transport below, and past its high-water
        // mark the application's protocol is paused.
        const std::string chunk(64 * 1024, 'f');
        std::size_t sent = 0;
        int writes = 0;
        while (pair.client->pauses == 0 && sent < (64u << 20)) {
            client->write(chunk);
            sent += chunk.size();
            ++writes;
            co_await asyncio::sleep(0);
        }
        CHECK(pair.client->pauses == 1);
        CHECK(client->get_write_buffer_size() > client->get_write_buffer_limits().second);
        CHECK(pair.server->data.size() == 0);

        pair.server->want = sent;
        server->resume_reading();
        co_await pair.client->resumed;
        co_await pair.server->got;
        CHECK(pair.server->data.size() == sent);
        CHECK(pair.server->data.find_first_not_of('f') == std::string::npos);
        CHECK(client->get_write_buffer_size() == 0);
        INFO("writes before the pause: " << writes);
    };
    run_guarded(main());
}

namespace {

/// A BufferedProtocol with a small buffer: many get_buffer calls per record.
struct BufferedPeer : asyncio::BufferedProtocol {
    std::vector<std::byte> buffer = std::vector<std::byte>(100);
    std::string data;
    std::size_t want = 0;
    int eofs = 0;
    asyncio::Future<> got = asyncio::get_running_loop().create_future();
    asyncio::Future<> lost = asyncio::get_running_loop().create_future();
    std::shared_ptr<asyncio::BaseTransport> transport;

    void connection_made(asyncio::BaseTransport& t) override { transport = t.shared_from_this(); }
    std::span<std::byte> get_buffer(std::size_t) override { return buffer; }
    void buffer_updated(std::size_t n) override {
        data.append(reinterpret_cast<const char*>(buffer.data()), n);
        if (data.size() >= want && !got.done()) got.set_result();
    }
    bool eof_received() override {
        ++eofs;
        return false;
    }
    void connection_lost(std::exception_ptr) override { lost.set_result(); }
};

}  // namespace

TEST_CASE("a BufferedProtocol over TLS gets every byte through its buffers, then EOF") {
    auto main = []() -> Coro<void> {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        auto& loop = asyncio::get_running_loop();
        auto client = std::make_shared<Peer>();
        auto server = std::make_shared<BufferedPeer>();
        auto client_factory = [&client] { return client; };
        auto server_factory = [&server] { return server; };
        co_await loop.connect_accepted_socket(client_factory, asyncio::Socket::from_fd(fds[0]));
        co_await loop.connect_accepted_socket(server_factory, asyncio::Socket::from_fd(fds[1]));

        asyncio::TlsOptions client_options{.server_hostname = "localhost"};
        asyncio::TlsOptions server_options{.server_side = true};
        asyncio::SSLContext client_ctx = client_context();
        asyncio::SSLContext server_ctx = server_context();
        auto& client_plain = dynamic_cast<asyncio::Transport&>(*client->transport);
        auto& server_plain = dynamic_cast<asyncio::Transport&>(*server->transport);
        auto client_side =
            loop.create_task(loop.start_tls(client_plain, *client, client_ctx, client_options));
        auto server_side =
            loop.create_task(loop.start_tls(server_plain, *server, server_ctx, server_options));
        asyncio::Transport* tls_client = co_await client_side;
        co_await server_side;

        std::string big(300 * 1024, 'x');
        for (std::size_t i = 0; i < big.size(); ++i)
            big[i] = static_cast<char>('a' + i % 26);
        server->want = big.size();
        tls_client->write(big);
        co_await server->got;
        CHECK(server->data == big);

        tls_client->close();
        co_await server->lost;
        CHECK(server->eofs == 1);
    };
    run_guarded(main());
}

TEST_CASE("a handshake that never completes times out") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();  // the server end stays plain and silent
        std::error_code code;
        try {
            asyncio::TlsOptions options{.server_hostname = "localhost",
                                        .ssl_handshake_timeout = 100ms};
            asyncio::SSLContext context = client_context();
            co_await asyncio::get_running_loop().start_tls(pair.client->plain(), *pair.client,
                                                           context, options);
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::connection_aborted);
    };
    run_guarded(main());
}

TEST_CASE("plain text to a TLS server fails its handshake with SSLError") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        pair.client->plain().write("GET / HTTP/1.0\r\n\r\n");
        bool refused = false;
        try {
            asyncio::SSLContext context = server_context();
            co_await asyncio::get_running_loop().start_tls(pair.server->plain(), *pair.server,
                                                           context, {.server_side = true});
        } catch (const asyncio::SSLError&) {
            refused = true;
        }
        CHECK(refused);
    };
    run_guarded(main());
}

TEST_CASE("a connection cut without close_notify is reported as SSLEOFError") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        // Named options: GCC 12 destroys a braced temporary with a string in
        // a co_await twice (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=100611).
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        // The server's plain transport closes under its TLS session: no
        // close_notify reaches the client.
        pair.server->plain().close();
        co_await pair.client->lost;
        bool eof_error = false;
        try {
            std::rethrow_exception(pair.client->lost_error);
        } catch (const asyncio::SSLEOFError&) {
            eof_error = true;
        } catch (...) {
        }
        CHECK(eof_error);
        CHECK(pair.client->eofs == 0);
    };
    run_guarded(main());
}

namespace {

/// An echo server's protocol: answers each chunk with "echo:" and the data.
struct Echo : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view data) override {
        transport->write("echo:" + std::string(data));
    }
};

}  // namespace

TEST_CASE("create_server and create_connection with ssl=: connection_made after the handshake") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        asyncio::ServerOptions server_options{.ssl = server_context()};
        auto echo_factory = [] { return std::make_shared<Echo>(); };
        asyncio::Server server =
            co_await loop.create_server(echo_factory, "127.0.0.1", 0, server_options);
        const int port = server.sockets().front().port();

        auto client = std::make_shared<Peer>();
        auto client_factory = [&client] { return client; };
        asyncio::ConnectionOptions options{.ssl = client_context(), .server_hostname = "localhost"};
        auto [transport, protocol] =
            co_await loop.create_connection(client_factory, "127.0.0.1", port, options);
        CHECK(client->transport.get() == transport);  // the TLS transport, not the socket's
        CHECK(std::any_cast<asyncio::SSLContext>(transport->get_extra_info("sslcontext"))
                  .native_handle() == options.ssl->native_handle());
        client->want = 9;
        transport->write("ping");
        co_await client->got;
        CHECK(client->data == "echo:ping");
        transport->close();
        co_await client->lost;
        CHECK(client->lost_error == nullptr);

        // Without server_hostname, the host is the name: 127.0.0.1 is in
        // the certificate's SAN.
        auto second = std::make_shared<Peer>();
        auto second_factory = [&second] { return second; };
        asyncio::ConnectionOptions by_host{.ssl = client_context()};
        auto [t2, p2] = co_await loop.create_connection(second_factory, "127.0.0.1", port, by_host);
        t2->close();
        co_await second->lost;

        server.close();
        co_await server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("ssl options without ssl= are refused, as in CPython") {
    auto main = []() -> Coro<void> {
        auto& loop = asyncio::get_running_loop();
        auto factory = [] { return std::make_shared<Peer>(); };
        bool refused = false;
        try {
            asyncio::ConnectionOptions options{.server_hostname = "localhost"};
            co_await loop.create_connection(factory, "127.0.0.1", 1, options);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
    };
    run_guarded(main());
}

TEST_CASE("streams: open_connection and start_server with ssl=, and STARTTLS with start_tls") {
    auto main = []() -> Coro<void> {
        // An echo server over TLS from the start.
        auto tls_echo = [](asyncio::StreamReader reader,
                           asyncio::StreamWriter writer) -> Coro<void> {
            std::string line = co_await reader.readline();
            writer.write("tls:" + line);
            co_await writer.drain();
            writer.close();
        };
        asyncio::StartOptions tls_start{.ssl = server_context()};
        asyncio::Server tls_server =
            co_await asyncio::start_server(tls_echo, "127.0.0.1", 0, tls_start);
        const int tls_port = tls_server.sockets().front().port();
        asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
        auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", tls_port, open);
        writer.write("hi\n");
        std::string answer = co_await reader.readline();
        CHECK(answer == "tls:hi\n");
        writer.close();
        co_await writer.wait_closed();
        tls_server.close();
        co_await tls_server.wait_closed();

        // Plain first, then STARTTLS on both ends.
        auto starttls = [](asyncio::StreamReader reader,
                           asyncio::StreamWriter writer) -> Coro<void> {
            std::string command = co_await reader.readline();
            writer.write(command == "STARTTLS\n" ? "OK\n" : "NO\n");
            co_await writer.drain();
            asyncio::SSLContext context = server_context();
            co_await writer.start_tls(context);
            std::string line = co_await reader.readline();
            writer.write("secret:" + line);
            co_await writer.drain();
            writer.close();
        };
        asyncio::Server plain_server = co_await asyncio::start_server(starttls, "127.0.0.1", 0);
        const int plain_port = plain_server.sockets().front().port();
        auto [r2, w2] = co_await asyncio::open_connection("127.0.0.1", plain_port);
        w2.write("STARTTLS\n");
        std::string ok = co_await r2.readline();
        CHECK(ok == "OK\n");
        asyncio::SSLContext context = client_context();
        asyncio::TlsOptions tls{.server_hostname = "localhost"};
        co_await w2.start_tls(context, tls);
        CHECK(w2.get_extra_info("ssl_object").has_value());
        w2.write("x\n");
        std::string secret = co_await r2.readline();
        CHECK(secret == "secret:x\n");
        w2.close();
        co_await w2.wait_closed();
        plain_server.close();
        co_await plain_server.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("extra info: ssl_object, peercert as getpeercert(), cipher, compression") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        asyncio::Transport* client = std::move(up.client).get();
        asyncio::Transport* server = std::move(up.server).get();

        auto peercert = std::any_cast<std::optional<asyncio::PeerCertificate>>(
            client->get_extra_info("peercert"));
        REQUIRE(peercert.has_value());
        using Pairs = std::vector<std::pair<std::string, std::string>>;
        CHECK(peercert->subject == Pairs{{"commonName", "localhost"}});
        CHECK(peercert->issuer == Pairs{{"commonName", "asyncio test CA"}});
        CHECK(peercert->version == 3);
        CHECK_FALSE(peercert->serial_number.empty());
        CHECK(peercert->not_after.ends_with(" GMT"));
        CHECK(peercert->subject_alt_name == Pairs{{"DNS", "localhost"},
                                                  {"IP Address", "127.0.0.1"},
                                                  {"IP Address", "0:0:0:0:0:0:0:1"}});
        // The client sent no certificate: the server's peercert is None.
        CHECK_FALSE(std::any_cast<std::optional<asyncio::PeerCertificate>>(
                        server->get_extra_info("peercert"))
                        .has_value());

        auto object = std::any_cast<asyncio::SSLObject>(client->get_extra_info("ssl_object"));
        CHECK(object.version() == std::optional<std::string>("TLSv1.3"));
        CHECK_FALSE(object.server_side());
        CHECK(object.server_hostname() == std::optional<std::string>("localhost"));
        REQUIRE(object.getpeercert_der().has_value());
        CHECK(object.getpeercert_der()->size() > 100);
        auto server_object =
            std::any_cast<asyncio::SSLObject>(server->get_extra_info("ssl_object"));
        CHECK(server_object.server_side());
        CHECK(server_object.server_hostname() == std::optional<std::string>("localhost"));
        CHECK_FALSE(std::any_cast<std::optional<std::string>>(client->get_extra_info("compression"))
                        .has_value());
        // What the TLS layer does not know comes from the connection below.
        CHECK(client->get_extra_info("socket").has_value());

        // A client that does not verify gets Python's empty dict: none here.
        Pair unverified = co_await connected_pair();
        asyncio::SSLContext trusting(asyncio::Purpose::SERVER_AUTH);
        trusting.check_hostname = false;
        trusting.verify_mode = asyncio::VerifyMode::CERT_NONE;
        Upgraded up2 = co_await upgrade_both(unverified, trusting, server_context(), options);
        REQUIRE(up2.client.has_value());
        asyncio::Transport* unverified_client = std::move(up2.client).get();
        CHECK_FALSE(std::any_cast<std::optional<asyncio::PeerCertificate>>(
                        unverified_client->get_extra_info("peercert"))
                        .has_value());
        CHECK(std::any_cast<asyncio::SSLObject>(unverified_client->get_extra_info("ssl_object"))
                  .getpeercert_der()
                  .has_value());
    };
    run_guarded(main());
}

TEST_CASE("ALPN: the server picks the first of its protocols that the client offers") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::SSLContext client = client_context();
        client.set_alpn_protocols({"spdy/1", "http/1.1", "h2"});
        asyncio::SSLContext server = server_context();
        server.set_alpn_protocols({"h2", "http/1.1"});
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client, server, options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        auto chosen = [](asyncio::Transport* t) {
            return std::any_cast<std::optional<std::string>>(
                t->get_extra_info("selected_alpn_protocol"));
        };
        CHECK(chosen(std::move(up.client).get()) == std::optional<std::string>("h2"));
        CHECK(chosen(std::move(up.server).get()) == std::optional<std::string>("h2"));
    };
    run_guarded(main());
}

TEST_CASE("ALPN without a common protocol: no ALPN, not an error") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::SSLContext client = client_context();
        client.set_alpn_protocols({"spdy/1"});
        asyncio::SSLContext server = server_context();
        server.set_alpn_protocols({"h2"});
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        Upgraded up = co_await upgrade_both(pair, client, server, options);
        REQUIRE(up.client.has_value());
        auto alpn = std::any_cast<std::optional<std::string>>(
            std::move(up.client).get()->get_extra_info("selected_alpn_protocol"));
        CHECK_FALSE(alpn.has_value());
    };
    run_guarded(main());
}

TEST_CASE("close waits for the peer's close_notify, and times out on a silent peer") {
    auto main = []() -> Coro<void> {
        Pair pair = co_await connected_pair();
        asyncio::TlsOptions options{.server_hostname = "localhost", .ssl_shutdown_timeout = 100ms};
        Upgraded up = co_await upgrade_both(pair, client_context(), server_context(), options);
        REQUIRE(up.client.has_value());
        REQUIRE(up.server.has_value());
        // The server stops reading its socket: our close_notify gets no answer.
        pair.server->plain().pause_reading();
        std::move(up.client).get()->close();
        co_await pair.client->lost;
        bool timed_out = false;
        try {
            std::rethrow_exception(pair.client->lost_error);
        } catch (const asyncio::TimeoutError&) {
            timed_out = true;
        } catch (...) {
        }
        CHECK(timed_out);
    };
    run_guarded(main());
}

TEST_CASE("connect_accepted_socket with ssl= is the TLS server of the connection") {
    auto main = []() -> Coro<void> {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        auto& loop = asyncio::get_running_loop();
        asyncio::AcceptedSocketOptions accepted{.ssl = server_context()};
        auto echo_factory = [] { return std::make_shared<Echo>(); };
        auto serving = loop.create_task(
            loop.connect_accepted_socket(echo_factory, asyncio::Socket::from_fd(fds[1]), accepted));

        auto client = std::make_shared<Peer>();
        auto client_factory = [&client] { return client; };
        co_await loop.connect_accepted_socket(client_factory, asyncio::Socket::from_fd(fds[0]));
        asyncio::SSLContext context = client_context();
        asyncio::TlsOptions options{.server_hostname = "localhost"};
        asyncio::Transport* tls =
            co_await loop.start_tls(client->plain(), *client, context, options);
        co_await serving;
        client->want = 7;
        tls->write("hi");
        co_await client->got;
        CHECK(client->data == "echo:hi");
        tls->close();
        co_await client->lost;
    };
    run_guarded(main());
}
