// Fuzzes the TLS layer (sslproto.cpp) as loop.start_tls puts it over a
// connection: a fake in-memory transport carries its records, and a real
// OpenSSL peer on the other end lets handshakes finish, so that the layer's
// life after the handshake (reading, pausing, close_notify, shutdown,
// truncation) is reached too, not only its handshake's error paths.
//
// Input: the first byte picks the layer's side (server or client), TLS 1.2
// or 1.3, whether the client verifies the certificate (and against which
// name), zero handshake / shutdown timeouts, and whether the handshake runs
// untouched first. The rest is a list of steps, each one loop iteration
// apart: deliver some or all of what the peer sent (records split at
// arbitrary points), corrupt or drop bytes of it, inject raw bytes of the
// input (a fuzzed ClientHello, say), EOF or a reset from below, flow
// control from below, the peer's writes and close_notify, and the
// application's write, write_eof, pause_reading, resume_reading, close and
// abort. The input ends with the connection lost.
//
// Invariants (abort() on violation): the application's protocol (the one
// start_tls was given) gets no second connection_made, and connection_lost
// at most once, with nothing after it, exactly when start_tls had succeeded;
// no data reaches it before the handshake is done, and what does is a
// prefix of what the peer wrote (and what the peer reads a prefix of what
// the application wrote): TLS lets nothing forged or reordered through;
// eof_received only after the peer's close_notify; start_tls fails only
// with SSLError or std::system_error, the application's calls throw only
// documented errors, and nothing reaches the loop's exception handler.
//
// OpenSSL's random numbers come from a generator reset for each input, so
// that the peer's records, and what the fuzzer learns about them, repeat.
// The seeds follow FuzzedDataProvider's layout: the flags and the steps are
// read from the end of the input backwards, injected bytes from the front.
#define OPENSSL_SUPPRESS_DEPRECATED  // RAND_set_rand_method: the only way to make it repeatable
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <any>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "asyncio/exceptions.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/protocols.hpp"
#include "asyncio/ssl.hpp"
#include "asyncio/tasks.hpp"
#include "asyncio/transports.hpp"

namespace {

using asyncio::Coro;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
}

#define CHECK(condition) \
    if (!(condition)) fail(#condition)

// -- repeatable randomness ---------------------------------------------------------------

std::uint64_t rng_state = 0;

int rng_bytes(unsigned char* out, int count) {
    for (int i = 0; i < count; ++i) {
        // splitmix64: any fixed sequence will do, it only has to repeat.
        std::uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        out[i] = static_cast<unsigned char>(z ^ (z >> 31));
    }
    return 1;
}
int rng_status() {
    return 1;
}

RAND_METHOD rng_method = {nullptr, rng_bytes, nullptr, nullptr, rng_bytes, rng_status};

// -- contexts -------------------------------------------------------------------------------

/// What the layer and the peer use; made once, at initialization.
struct Contexts {
    std::optional<asyncio::SSLContext> server;         // the layer as server
    std::optional<asyncio::SSLContext> client;         // CERT_NONE
    std::optional<asyncio::SSLContext> client_verify;  // trusts the certificate, checks names
    SSL_CTX* peer_server = nullptr;                    // the peer as server
    SSL_CTX* peer_client = nullptr;
};
Contexts contexts;

[[noreturn]] void init_failed(const char* what) {
    std::fprintf(stderr, "fuzz_tls_records: setup failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    std::abort();
}

void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) init_failed("fopen");
    const bool ok = cert != nullptr ? PEM_write_X509(file, cert) == 1
                                    : PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr,
                                                           nullptr) == 1;
    std::fclose(file);
    if (!ok) init_failed("PEM_write");
}

void make_contexts() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    if (key == nullptr || cert == nullptr) init_failed("key");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3650L * 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    // Hostname checks look at subjectAltName only.
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    if (san == nullptr || X509_add_ext(cert, san, -1) != 1) init_failed("subjectAltName");
    X509_EXTENSION_free(san);
    if (X509_sign(cert, key, EVP_sha256()) == 0) init_failed("X509_sign");

    // SSLContext loads files only: the pair goes to a directory of its own.
    char dir_template[] = "/tmp/fuzz_tls_records.XXXXXX";
    const char* dir = ::mkdtemp(dir_template);
    if (dir == nullptr) init_failed("mkdtemp");
    const std::string cert_path = std::string(dir) + "/cert.pem";
    const std::string key_path = std::string(dir) + "/key.pem";
    write_pem(cert_path, cert, nullptr);
    write_pem(key_path, nullptr, key);

    contexts.server.emplace(asyncio::Purpose::CLIENT_AUTH);
    contexts.server->load_cert_chain(cert_path, key_path);
    contexts.client.emplace(asyncio::Purpose::SERVER_AUTH);
    contexts.client->check_hostname = false;
    contexts.client->verify_mode = asyncio::VerifyMode::CERT_NONE;
    contexts.client_verify.emplace(asyncio::Purpose::SERVER_AUTH);
    contexts.client_verify->load_verify_locations(cert_path);
    ::unlink(cert_path.c_str());
    ::unlink(key_path.c_str());
    ::rmdir(dir);

    contexts.peer_server = SSL_CTX_new(TLS_server_method());
    contexts.peer_client = SSL_CTX_new(TLS_client_method());
    if (contexts.peer_server == nullptr || contexts.peer_client == nullptr) init_failed("SSL_CTX");
    if (SSL_CTX_use_certificate(contexts.peer_server, cert) != 1 ||
        SSL_CTX_use_PrivateKey(contexts.peer_server, key) != 1) {
        init_failed("peer certificate");
    }
    SSL_CTX_set_verify(contexts.peer_client, SSL_VERIFY_NONE, nullptr);
    // A session cache would carry state from one input to the next.
    for (SSL_CTX* ctx :
         {contexts.server->native_handle(), contexts.client->native_handle(),
          contexts.client_verify->native_handle(), contexts.peer_server, contexts.peer_client}) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    X509_free(cert);
    EVP_PKEY_free(key);
}

// -- the world of one input -------------------------------------------------------------

char pattern(std::size_t i) {
    return static_cast<char>((i * 131 + (i >> 9)) & 0xff);
}

std::string patterned(std::size_t from, std::size_t size) {
    std::string out(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        out[i] = pattern(from + i);
    return out;
}

/// The other end: plain OpenSSL over memory BIOs.
struct Peer {
    SSL* ssl = nullptr;
    BIO* in = nullptr;
    BIO* out = nullptr;
    std::string wire;         // records it sent, not yet delivered to the layer
    std::size_t written = 0;  // application bytes it wrote (patterned(0, written))
    std::string read;         // application bytes it read
    bool sent_close_notify = false;
    bool dead = false;  // failed: reads nothing more

    Peer(bool server, bool tls12) {
        ssl = SSL_new(server ? contexts.peer_server : contexts.peer_client);
        in = BIO_new(BIO_s_mem());
        out = BIO_new(BIO_s_mem());
        if (ssl == nullptr || in == nullptr || out == nullptr) init_failed("peer");
        BIO_set_mem_eof_return(in, -1);
        SSL_set_bio(ssl, in, out);
        if (tls12) SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
        if (server) {
            SSL_set_accept_state(ssl);
        } else {
            SSL_set_connect_state(ssl);
            SSL_set_tlsext_host_name(ssl, "localhost");
        }
    }
    ~Peer() { SSL_free(ssl); }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    /// Takes what the layer sent, advances the handshake, reads.
    void receive(std::string_view records) {
        if (!records.empty()) BIO_write(in, records.data(), static_cast<int>(records.size()));
        ERR_clear_error();
        if (!dead && !SSL_is_init_finished(ssl)) {
            const int result = SSL_do_handshake(ssl);
            if (result != 1) {
                const int error = SSL_get_error(ssl, result);
                if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) dead = true;
            }
        }
        while (!dead && SSL_is_init_finished(ssl)) {
            char buffer[16 * 1024];
            std::size_t got = 0;
            if (SSL_read_ex(ssl, buffer, sizeof buffer, &got) == 1) {
                read.append(buffer, got);
                continue;
            }
            const int error = SSL_get_error(ssl, 0);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE &&
                error != SSL_ERROR_ZERO_RETURN) {
                dead = true;
            }
            break;
        }
        ERR_clear_error();
        collect();
    }

    void write(std::size_t size) {
        if (dead || sent_close_notify || !SSL_is_init_finished(ssl) || size == 0) return;
        const std::string data = patterned(written, size);
        std::size_t done = 0;
        ERR_clear_error();
        if (SSL_write_ex(ssl, data.data(), data.size(), &done) == 1) written += done;
        ERR_clear_error();
        collect();
    }

    void close_notify() {
        if (dead || sent_close_notify || !SSL_is_init_finished(ssl)) return;
        ERR_clear_error();
        SSL_shutdown(ssl);
        ERR_clear_error();
        sent_close_notify = true;
        collect();
    }

    void collect() {
        char buffer[16 * 1024];
        while (BIO_ctrl_pending(out) > 0) {
            const int got = BIO_read(out, buffer, sizeof buffer);
            if (got <= 0) break;
            wire.append(buffer, static_cast<std::size_t>(got));
        }
    }
};

/// What the application's protocol saw.
struct AppState {
    int made = 0;
    int lost = 0;
    int eofs = 0;
    bool writing_paused = false;
    std::string received;
};

struct World;

/// A connection without a socket: bytes the fuzzer delivers reach the
/// protocol as a socket transport would deliver them (not while reading is
/// paused, nothing after close), and what the protocol writes waits for the
/// peer.
class FakeTransport final : public asyncio::Transport {
  public:
    explicit FakeTransport(World& world) : world_(world) {}

    void attach(std::shared_ptr<asyncio::BaseProtocol> protocol) {
        protocol_ = std::move(protocol);
        protocol_->connection_made(*this);
    }

    /// Bytes from the network.
    void feed(std::string_view data) {
        if (closing_ || eof_ || data.empty()) return;
        inbound_ += data;
        deliver();
    }
    void feed_eof() {
        if (closing_ || eof_) return;
        eof_ = true;
        deliver();
    }
    /// The connection is gone (a reset, or the end of the input).
    void lose(std::exception_ptr error) {
        closing_ = true;
        if (lost_scheduled_) return;
        lost_scheduled_ = true;
        auto self = std::dynamic_pointer_cast<FakeTransport>(shared_from_this());
        asyncio::get_running_loop().call_soon([self, error] {
            std::shared_ptr<asyncio::BaseProtocol> protocol = std::move(self->protocol_);
            self->lost_ = true;
            protocol->connection_lost(error);
        });
    }

    /// Flow control of the write side, as a socket's buffer would signal it.
    void signal_writing(bool pause) {
        if (protocol_ == nullptr || lost_scheduled_ || pause == writing_paused_) return;
        writing_paused_ = pause;
        if (pause) {
            protocol_->pause_writing();
        } else {
            protocol_->resume_writing();
        }
    }

    std::string take_written() { return std::exchange(written_, {}); }
    bool lost() const { return lost_; }

    // -- asyncio::Transport --------------------------------------------------------------
    void write(std::string_view data) override {
        if (eof_written_) throw asyncio::RuntimeError("Cannot call write() after write_eof()");
        if (closing_) return;  // as a closed socket transport: dropped
        written_ += data;
    }
    void write_eof() override { eof_written_ = true; }
    bool can_write_eof() const override { return true; }
    void abort() override { lose(nullptr); }
    void close() override { lose(nullptr); }
    bool is_closing() const override { return closing_; }
    std::size_t get_write_buffer_size() const override { return 0; }
    void set_write_buffer_limits(std::optional<std::size_t> high,
                                 std::optional<std::size_t> low) override {
        limits_ = asyncio::detail::water_marks(high, low);
    }
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const override { return limits_; }
    bool is_reading() const override { return reading_ && !closing_; }
    void pause_reading() override { reading_ = false; }
    void resume_reading() override {
        if (reading_) return;
        reading_ = true;
        auto self = std::dynamic_pointer_cast<FakeTransport>(shared_from_this());
        asyncio::get_running_loop().call_soon([self] { self->deliver(); });
    }
    void set_protocol(std::shared_ptr<asyncio::BaseProtocol> protocol) override;
    std::shared_ptr<asyncio::BaseProtocol> get_protocol() const override { return protocol_; }

  private:
    void deliver() {
        // A protocol's data_received may pause, resume or close: one
        // delivery at a time, each checking again.
        if (delivering_) return;
        delivering_ = true;
        while (reading_ && !closing_ && !inbound_.empty() && protocol_ != nullptr) {
            const std::string chunk = std::exchange(inbound_, {});
            dynamic_cast<asyncio::Protocol&>(*protocol_).data_received(chunk);
        }
        if (reading_ && !closing_ && eof_ && !eof_delivered_ && inbound_.empty() &&
            protocol_ != nullptr) {
            eof_delivered_ = true;
            if (!dynamic_cast<asyncio::Protocol&>(*protocol_).eof_received()) close();
        }
        delivering_ = false;
    }

    World& world_;
    std::shared_ptr<asyncio::BaseProtocol> protocol_;
    std::string inbound_;
    std::string written_;
    std::pair<std::size_t, std::size_t> limits_{16 * 1024, 64 * 1024};
    bool reading_ = true;
    bool closing_ = false;
    bool eof_ = false;
    bool eof_delivered_ = false;
    bool eof_written_ = false;
    bool lost_scheduled_ = false;
    bool lost_ = false;
    bool writing_paused_ = false;
    bool delivering_ = false;
};

struct World {
    explicit World(bool server_side, bool tls12) : peer(!server_side, tls12) {}

    Peer peer;
    AppState app;
    SSL* layer_ssl = nullptr;           // the layer's session, once start_tls inserted it
    asyncio::Transport* tls = nullptr;  // start_tls's result
    bool start_done = false;
    bool start_failed = false;
    std::size_t app_written = 0;  // patterned(0, app_written) went to tls->write
};

void FakeTransport::set_protocol(std::shared_ptr<asyncio::BaseProtocol> protocol) {
    // The layer's session tells the application's protocol whether the
    // handshake is done.
    if (auto* layer = dynamic_cast<asyncio::Transport*>(protocol.get())) {
        std::any ssl = layer->get_extra_info("ssl_object");
        if (auto* session = std::any_cast<asyncio::SSLObject>(&ssl))
            world_.layer_ssl = session->native_handle();
    }
    protocol_ = std::move(protocol);
}

bool allowed_error(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error&) {  // SSLError is one
        return true;
    } catch (const asyncio::TimeoutError&) {  // the shutdown's
        return true;
    } catch (...) {
        return false;
    }
}

class App final : public asyncio::Protocol {
  public:
    explicit App(World& world) : world_(world) {}

    void connection_made(asyncio::BaseTransport&) override {
        CHECK(state().made == 0);
        ++state().made;
    }
    void data_received(std::string_view data) override {
        CHECK(state().made == 1 && state().lost == 0 && state().eofs == 0);
        CHECK(world_.layer_ssl != nullptr && SSL_is_init_finished(world_.layer_ssl));
        CHECK(!data.empty());
        const std::size_t at = state().received.size();
        CHECK(at + data.size() <= world_.peer.written);
        CHECK(data == patterned(at, data.size()));
        state().received += data;
    }
    bool eof_received() override {
        CHECK(state().lost == 0 && state().eofs == 0);
        CHECK(world_.peer.sent_close_notify);
        CHECK(state().received.size() == world_.peer.written);
        ++state().eofs;
        return false;
    }
    void connection_lost(std::exception_ptr error) override {
        CHECK(state().made == 1 && state().lost == 0);
        CHECK(!error || allowed_error(error));
        ++state().lost;
    }
    void pause_writing() override {
        CHECK(state().lost == 0 && !state().writing_paused);
        state().writing_paused = true;
    }
    void resume_writing() override {
        CHECK(state().lost == 0 && state().writing_paused);
        state().writing_paused = false;
    }

  private:
    AppState& state() { return world_.app; }
    World& world_;
};

Coro<void> start_tls(FakeTransport& below, App& app, asyncio::SSLContext& context,
                     asyncio::TlsOptions options, World& world) {
    try {
        asyncio::Transport* tls =
            co_await asyncio::get_running_loop().start_tls(below, app, context, options);
        CHECK(tls != nullptr);
        // Valid until the application's connection_lost returned, which may
        // already be (the peer closed at once).
        if (world.app.lost == 0) world.tls = tls;
    } catch (const std::system_error&) {
        world.start_failed = true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "start_tls threw: %s\n", e.what());
        fail("start_tls fails only with SSLError or std::system_error");
    }
    world.start_done = true;
}

/// Runs the application's call; only documented errors may come out.
template <class F>
void app_call(F&& call) {
    try {
        call();
    } catch (const asyncio::RuntimeError&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "the application's call threw: %s\n", e.what());
        fail("undocumented exception");
    }
}

enum Step {
    deliver_some,
    deliver_all,
    corrupt,
    drop,
    inject,
    eof,
    reset,
    below_pause_writing,
    below_resume_writing,
    peer_write,
    peer_close_notify,
    app_write,
    app_write_eof,
    app_pause_reading,
    app_resume_reading,
    app_close,
    app_abort,
    app_queries,
    spin,
    last_step = spin
};

std::size_t fuzzed_size(FuzzedDataProvider& in) {
    // Mostly small, sometimes past the layer's 256 KiB read-ahead limit.
    const std::size_t base = in.ConsumeIntegralInRange<std::size_t>(1, 64);
    return base << (2 * in.ConsumeIntegralInRange(0, 6));
}

Coro<void> play(FuzzedDataProvider& in) {
    const auto flags = in.ConsumeIntegral<std::uint8_t>();
    const bool server_side = (flags & 1) != 0;
    const bool tls12 = (flags & 2) != 0;
    const bool verify = (flags & 4) != 0;
    const bool wrong_name = (flags & 8) != 0;
    const bool no_handshake_time = (flags & 0x30) == 0x30;  // rarely: it ends everything
    const bool no_shutdown_time = (flags & 0x40) != 0;
    const bool handshake_first = (flags & 0x80) != 0;

    World world(server_side, tls12);
    auto below = std::make_shared<FakeTransport>(world);
    auto app = std::make_shared<App>(world);
    below->attach(app);

    asyncio::TlsOptions options{.server_side = server_side};
    if (!server_side) options.server_hostname = wrong_name ? "example.org" : "localhost";
    if (no_handshake_time) options.ssl_handshake_timeout = std::chrono::nanoseconds(0);
    if (no_shutdown_time) options.ssl_shutdown_timeout = std::chrono::nanoseconds(0);
    asyncio::SSLContext& context = server_side ? *contexts.server
                                   : verify    ? *contexts.client_verify
                                               : *contexts.client;
    auto starting = asyncio::create_task(start_tls(*below, *app, context, options, world));
    world.peer.receive({});  // a client peer's ClientHello
    // start_tls inserts the layer (reading paused until its connection_made):
    // what the steps deliver from now on is the layer's.
    co_await asyncio::sleep(0);

    Peer& peer = world.peer;
    if (handshake_first) {
        // Most steps matter only on a live session, which takes several
        // steps in a row to reach: half the inputs start there.
        for (int i = 0; i < 16 && !world.start_done; ++i) {
            below->feed(std::exchange(peer.wire, {}));
            peer.receive(below->take_written());
            co_await asyncio::sleep(0);
        }
    }
    while (in.remaining_bytes() > 0) {
        const bool usable = world.tls != nullptr && world.app.lost == 0;
        switch (static_cast<Step>(in.ConsumeIntegralInRange<int>(0, last_step))) {
            case deliver_some: {
                const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, 2048);
                const std::string chunk = peer.wire.substr(0, n);
                peer.wire.erase(0, chunk.size());
                below->feed(chunk);
                break;
            }
            case deliver_all:
                below->feed(std::exchange(peer.wire, {}));
                break;
            case corrupt: {
                const auto at = in.ConsumeIntegral<std::uint16_t>();
                const auto bits = in.ConsumeIntegralInRange<std::uint8_t>(1, 255);
                if (!peer.wire.empty()) peer.wire[at % peer.wire.size()] ^= static_cast<char>(bits);
                break;
            }
            case drop: {
                const std::size_t at = in.ConsumeIntegral<std::uint16_t>();
                const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, 64);
                if (!peer.wire.empty()) peer.wire.erase(at % peer.wire.size(), n);
                break;
            }
            case inject:
                below->feed(in.ConsumeRandomLengthString(1024));
                break;
            case eof:
                below->feed_eof();
                break;
            case reset:
                below->lose(std::make_exception_ptr(std::system_error(
                    std::make_error_code(std::errc::connection_reset), "reset by the fuzzer")));
                break;
            case below_pause_writing:
                below->signal_writing(true);
                break;
            case below_resume_writing:
                below->signal_writing(false);
                break;
            case peer_write:
                peer.write(fuzzed_size(in));
                break;
            case peer_close_notify:
                peer.close_notify();
                break;
            case app_write: {
                const std::size_t n = fuzzed_size(in);
                if (!usable) break;
                const std::string data = patterned(world.app_written, n);
                // What is written after close() may be dropped: only what
                // came before counts as sent.
                const bool counts = !world.tls->is_closing();
                app_call([&] { world.tls->write(data); });
                if (counts) world.app_written += n;
                break;
            }
            case app_write_eof:
                if (!usable) break;
                CHECK(!world.tls->can_write_eof());
                app_call([&] { world.tls->write_eof(); });
                break;
            case app_pause_reading:
                if (usable) app_call([&] { world.tls->pause_reading(); });
                break;
            case app_resume_reading:
                if (usable) app_call([&] { world.tls->resume_reading(); });
                break;
            case app_close:
                if (usable) app_call([&] { world.tls->close(); });
                break;
            case app_abort:
                if (usable) app_call([&] { world.tls->abort(); });
                break;
            case app_queries:
                if (!usable) break;
                for (const char* name :
                     {"cipher", "selected_alpn_protocol", "ssl_object", "sslcontext", "peername"}) {
                    (void)world.tls->get_extra_info(name);
                }
                (void)world.tls->get_write_buffer_size();
                (void)world.tls->is_reading();
                app_call([&] {
                    world.tls->set_write_buffer_limits(in.ConsumeIntegral<std::uint16_t>());
                });
                (void)world.tls->get_write_buffer_limits();
                break;
            case spin:
                for (int i = in.ConsumeIntegralInRange(0, 4); i > 0; --i)
                    co_await asyncio::sleep(0);
                break;
        }
        peer.receive(below->take_written());
        CHECK(world.app_written >= peer.read.size());
        CHECK(peer.read == patterned(0, peer.read.size()));
        co_await asyncio::sleep(0);
    }

    // The end of the input: the connection goes, and everything settles.
    below->lose(nullptr);
    for (int i = 0; i < 100 && !(world.start_done && below->lost()); ++i)
        co_await asyncio::sleep(0);
    CHECK(world.start_done && below->lost());
    co_await starting;
    CHECK(world.app.made == 1);
    // The application hears of the connection's end iff start_tls handed
    // it the connection; otherwise start_tls's caller got the error.
    CHECK(world.app.lost == (world.start_failed ? 0 : 1));
    CHECK(world.app.eofs <= 1);
    if (std::getenv("FUZZ_TLS_TRACE") != nullptr) {
        // What an input did, to check that a seed reaches what it is for.
        std::fprintf(stderr,
                     "%s: start_tls %s, app got %zu of %zu bytes (eof %d), peer got %zu of %zu\n",
                     server_side ? "server" : "client", world.start_failed ? "failed" : "ok",
                     world.app.received.size(), peer.written, world.app.eofs, peer.read.size(),
                     world.app_written);
    }
    // Callbacks still queued (a resume_reading's) run now, not in the next input.
    co_await asyncio::sleep(0);
    co_await asyncio::sleep(0);
}

asyncio::EventLoop& shared_loop() {
    static const std::unique_ptr<asyncio::EventLoop> loop = [] {
        auto made = asyncio::new_event_loop();
        made->set_exception_handler([](asyncio::EventLoop&, const asyncio::ExceptionContext& c) {
            std::fprintf(stderr, "the loop's exception handler was called: %s\n",
                         c.message.c_str());
            std::abort();
        });
        return made;
    }();
    return *loop;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    RAND_set_rand_method(&rng_method);
    make_contexts();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    rng_state = 0x243f6a8885a308d3ULL;  // the same randomness for every input
    FuzzedDataProvider in(data, size);
    try {
        shared_loop().run_until_complete(play(in));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "undocumented exception: %s\n", e.what());
        std::abort();
    }
    ERR_clear_error();
    return 0;
}
