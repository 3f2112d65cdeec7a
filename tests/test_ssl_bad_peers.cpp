// Bad input at a TLS connection: each case fails with a clear error at the
// caller, and the server goes on serving the next client. The misbehaving
// peers that no tool plays are written with OpenSSL's blocking API on a
// thread of their own: renegotiation on TLS 1.2, a reset in the middle of a
// record.
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asyncio/ssl.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "support.hpp"
#include "tls_certs.hpp"

using asyncio::Coro;
using asyncio_test::client_context;
using asyncio_test::run_guarded;
using asyncio_test::server_context;
using asyncio_test::TlsCerts;
using namespace std::chrono_literals;

namespace {

/// The server's side of each connection: echoes, and records how it ended.
struct EchoRecorder : asyncio::Protocol {
    asyncio::Transport* transport = nullptr;
    std::exception_ptr lost_error;
    asyncio::Future<> lost = asyncio::get_running_loop().create_future();

    void connection_made(asyncio::BaseTransport& t) override {
        transport = &dynamic_cast<asyncio::Transport&>(t);
    }
    void data_received(std::string_view data) override {
        transport->write("echo:" + std::string(data));
    }
    void connection_lost(std::exception_ptr error) override {
        lost_error = error;
        lost.set_result();
    }
};

/// A TLS echo server whose connections' protocols the test can inspect.
struct EchoServer {
    std::vector<std::shared_ptr<EchoRecorder>> connections;
    asyncio::Future<> first_connection = asyncio::get_running_loop().create_future();
    std::optional<asyncio::Server> server;
    int port = 0;
};

Coro<void> start_echo_server(EchoServer& echo, asyncio::ServerOptions options) {
    auto factory = [&echo] {
        echo.connections.push_back(std::make_shared<EchoRecorder>());
        if (!echo.first_connection.done()) echo.first_connection.set_result();
        return echo.connections.back();
    };
    echo.server =
        co_await asyncio::get_running_loop().create_server(factory, "127.0.0.1", 0, options);
    echo.port = echo.server->sockets().front().port();
}

/// The server still serves: a good client's line comes back.
Coro<bool> serves_a_good_client(int port) {
    asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port, open);
    writer.write("still here\n");
    std::string answer = co_await reader.readline();
    writer.close();
    co_await writer.wait_closed();
    co_return answer == "echo:still here\n";
}

/// What an exception_ptr holds, as what().
std::string message_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "not a std::exception";
    }
}

/// The code of a std::system_error; none for anything else.
std::error_code code_of(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code();
    } catch (...) {
        return {};
    }
}

template <class E>
bool holds(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// A client written with OpenSSL's blocking API over its own socket, run on
/// a thread: the test's loop goes on meanwhile. `script` plays the peer once
/// the handshake is done; the thread owns the socket and the SSL.
class BlockingTlsClient {
  public:
    using Script = std::function<void(SSL*, int fd)>;

    BlockingTlsClient(int port, int max_version, Script script)
        : thread_([port, max_version, script = std::move(script)] {
              run(port, max_version, script);
          }) {}
    ~BlockingTlsClient() {
        if (thread_.joinable()) thread_.join();
    }

  private:
    static void run(int port, int max_version, const Script& script) {
        SSL_CTX* context = SSL_CTX_new(TLS_client_method());
        SSL_CTX_load_verify_locations(context, TlsCerts::get().ca().c_str(), nullptr);
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_max_proto_version(context, max_version);
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        SSL* ssl = SSL_new(context);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
            SSL_set_fd(ssl, fd);
            SSL_set_tlsext_host_name(ssl, "localhost");
            if (SSL_connect(ssl) == 1) script(ssl, fd);
        }
        SSL_free(ssl);
        ::close(fd);
        SSL_CTX_free(context);
        ERR_clear_error();
    }

    std::thread thread_;
};

}  // namespace

TEST_CASE("a TLS 1.2 peer's renegotiation is refused; the server goes on serving") {
    auto main = []() -> Coro<void> {
        EchoServer echo;
        asyncio::ServerOptions options{.ssl = server_context()};
        co_await start_echo_server(echo, options);
        std::atomic<bool> echoed{false};
        std::atomic<bool> renegotiated{false};
        {
            BlockingTlsClient peer(echo.port, TLS1_2_VERSION, [&](SSL* ssl, int) {
                char buffer[64];
                SSL_write(ssl, "one", 3);
                const int got = SSL_read(ssl, buffer, sizeof buffer);
                echoed = got == 8 && std::string_view(buffer, 8) == "echo:one";
                // A renegotiation the server must refuse: the handshake never
                // completes a second time.
                if (SSL_renegotiate(ssl) == 1 && SSL_do_handshake(ssl) == 1) {
                    SSL_write(ssl, "two", 3);
                    renegotiated = SSL_read(ssl, buffer, sizeof buffer) > 0 &&
                                   SSL_renegotiate_pending(ssl) == 0;
                }
            });
            co_await echo.first_connection;
            co_await echo.connections.front()->lost;
        }
        CHECK(echoed);
        CHECK_FALSE(renegotiated);
        // The refused peer's connection ended with a TLS error, not silently.
        INFO(message_of(echo.connections.front()->lost_error));
        CHECK(holds<asyncio::SSLError>(echo.connections.front()->lost_error));
        const bool serves = co_await serves_a_good_client(echo.port);
        CHECK(serves);
        echo.server->close();
        co_await echo.server->wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("a peer that resets in the middle of a record: ConnectionResetError") {
    auto main = []() -> Coro<void> {
        EchoServer echo;
        asyncio::ServerOptions options{.ssl = server_context()};
        co_await start_echo_server(echo, options);
        {
            BlockingTlsClient peer(echo.port, TLS1_3_VERSION, [](SSL* ssl, int fd) {
                // An echo first: the server's side of the handshake is done.
                char buffer[64];
                SSL_write(ssl, "x", 1);
                if (SSL_read(ssl, buffer, sizeof buffer) <= 0) return;
                // The next record goes to memory; half of it goes out, then
                // a reset (SO_LINGER with a zero timeout).
                BIO* memory = BIO_new(BIO_s_mem());
                SSL_set0_wbio(ssl, memory);
                const std::string message(1000, 'r');
                SSL_write(ssl, message.data(), static_cast<int>(message.size()));
                char* record = nullptr;
                const long size = BIO_get_mem_data(memory, &record);
                (void)!::send(fd, record, static_cast<std::size_t>(size / 2), MSG_NOSIGNAL);
                linger reset{1, 0};
                ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            });
            co_await echo.first_connection;
            co_await echo.connections.front()->lost;
        }
        INFO(message_of(echo.connections.front()->lost_error));
        CHECK(code_of(echo.connections.front()->lost_error) == std::errc::connection_reset);
        const bool serves = co_await serves_a_good_client(echo.port);
        CHECK(serves);
        echo.server->close();
        co_await echo.server->wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("a TLS client on a plain port fails with SSLError, WRONG_VERSION_NUMBER") {
    auto main = []() -> Coro<void> {
        // A plain-text server that greets first, as SMTP or Redis would.
        auto greet = [](asyncio::StreamReader, asyncio::StreamWriter writer) -> Coro<void> {
            writer.write("hello\r\n");
            co_await writer.drain();
            writer.close();
        };
        asyncio::Server plain = co_await asyncio::start_server(greet, "127.0.0.1", 0);
        const int port = plain.sockets().front().port();
        std::string reason;
        try {
            asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
            co_await asyncio::open_connection("127.0.0.1", port, open);
        } catch (const asyncio::SSLError& e) {
            reason = e.reason();
        }
        CHECK(reason == "WRONG_VERSION_NUMBER");
        plain.close();
        co_await plain.wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("bad clients of a TLS server each fail clearly, and the server goes on serving") {
    auto main = []() -> Coro<void> {
        EchoServer echo;
        asyncio::ServerOptions options{.ssl = server_context(), .ssl_handshake_timeout = 200ms};
        co_await start_echo_server(echo, options);

        // A plain-text client: the server's alert at most, then the end;
        // never an answer in clear.
        auto [plain_reader, plain_writer] =
            co_await asyncio::open_connection("127.0.0.1", echo.port);
        plain_writer.write("GET / HTTP/1.0\r\n\r\n");
        std::string plain_answer = co_await plain_reader.read();
        CHECK(plain_answer.find("HTTP") == std::string::npos);
        plain_writer.close();

        // A client that does not trust the certificate.
        long untrusted_code = 0;
        try {
            asyncio::SSLContext untrusting(asyncio::Purpose::SERVER_AUTH);
            asyncio::OpenOptions open{.ssl = untrusting, .server_hostname = "localhost"};
            co_await asyncio::open_connection("127.0.0.1", echo.port, open);
        } catch (const asyncio::SSLCertVerificationError& e) {
            untrusted_code = e.verify_code();
        }
        CHECK(untrusted_code == 20);  // X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY

        // A client that wants another name.
        long mismatch_code = 0;
        try {
            asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "example.com"};
            co_await asyncio::open_connection("127.0.0.1", echo.port, open);
        } catch (const asyncio::SSLCertVerificationError& e) {
            mismatch_code = e.verify_code();
        }
        CHECK(mismatch_code == 62);  // X509_V_ERR_HOSTNAME_MISMATCH

        // A client that never starts the handshake: the server's timeout
        // ends the connection.
        auto [silent_reader, silent_writer] =
            co_await asyncio::open_connection("127.0.0.1", echo.port);
        std::string silent_answer = co_await silent_reader.read();
        CHECK(silent_answer.empty());
        CHECK(silent_reader.at_eof());
        silent_writer.close();

        const bool serves = co_await serves_a_good_client(echo.port);
        CHECK(serves);
        echo.server->close();
        co_await echo.server->wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("a certificate with the wrong key is refused where it is loaded") {
    asyncio::SSLContext context(asyncio::Purpose::CLIENT_AUTH);
    std::string reason;
    try {
        context.load_cert_chain(TlsCerts::get().server_cert(), TlsCerts::get().path("other.key"));
    } catch (const asyncio::SSLError& e) {
        reason = e.reason();
    }
    CHECK(reason == "KEY_VALUES_MISMATCH");
}

TEST_CASE("open_connection(sock=) with ssl=: this end is the TLS client") {
    auto main = []() -> Coro<void> {
        EchoServer echo;
        asyncio::ServerOptions options{.ssl = server_context()};
        co_await start_echo_server(echo, options);
        auto& loop = asyncio::get_running_loop();

        asyncio::Socket refused_sock(AF_INET, SOCK_STREAM);
        bool refused = false;
        try {
            asyncio::OpenOptions no_name{.ssl = client_context()};
            co_await asyncio::open_connection(std::move(refused_sock), no_name);
        } catch (const std::invalid_argument&) {
            refused = true;
        }
        CHECK(refused);
        CHECK(refused_sock.fileno() >= 0);  // left to the caller

        asyncio::Socket sock(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(sock, asyncio::Address::parse("127.0.0.1", echo.port));
        asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
        auto [reader, writer] = co_await asyncio::open_connection(std::move(sock), open);
        CHECK(writer.get_extra_info("ssl_object").has_value());
        writer.write("over sock\n");
        std::string answer = co_await reader.readline();
        CHECK(answer == "echo:over sock\n");
        writer.close();
        co_await writer.wait_closed();

        // A failed handshake closes the socket it was given.
        asyncio::Socket mismatched(AF_INET, SOCK_STREAM);
        co_await loop.sock_connect(mismatched, asyncio::Address::parse("127.0.0.1", echo.port));
        bool failed = false;
        try {
            asyncio::OpenOptions wrong{.ssl = client_context(), .server_hostname = "example.com"};
            co_await asyncio::open_connection(std::move(mismatched), wrong);
        } catch (const asyncio::SSLCertVerificationError&) {
            failed = true;
        }
        CHECK(failed);

        echo.server->close();
        co_await echo.server->wait_closed();
    };
    run_guarded(main());
}

TEST_CASE("TLS over a Unix socket: create_unix_server and open_unix_connection with ssl=") {
    auto main = []() -> Coro<void> {
        char dir[] = "/tmp/asyncio-tls-unix-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        const std::string path = std::string(dir) + "/socket";
        auto handle = [](asyncio::StreamReader reader, asyncio::StreamWriter writer) -> Coro<void> {
            std::string line = co_await reader.readline();
            writer.write("unix:" + line);
            co_await writer.drain();
            writer.close();
        };
        asyncio::StartOptions start{.ssl = server_context()};
        asyncio::Server server = co_await asyncio::start_unix_server(handle, path, start);
        asyncio::OpenOptions open{.ssl = client_context(), .server_hostname = "localhost"};
        auto [reader, writer] = co_await asyncio::open_unix_connection(path, open);
        writer.write("hi\n");
        std::string answer = co_await reader.readline();
        CHECK(answer == "unix:hi\n");
        std::string rest = co_await reader.read();
        CHECK(rest.empty());  // the server's close_notify: a clean EOF
        writer.close();
        co_await writer.wait_closed();
        server.close();
        co_await server.wait_closed();
        ::unlink(path.c_str());
        ::rmdir(dir);
    };
    run_guarded(main());
}
