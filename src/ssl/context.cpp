// ssl.SSLContext over OpenSSL's SSL_CTX.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cctype>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "asyncio/ssl.hpp"

namespace asyncio {

namespace detail {

/// The SSLError for OpenSSL's oldest queued error (the cause), with
/// `context` when the queue is empty; the queue is cleared.
SSLError ssl_error_from_queue(const char* context) {
    const unsigned long packed = ERR_get_error();
    ERR_clear_error();
    if (packed == 0) return SSLError(SSLError::ssl, context);
    const char* library = ERR_lib_error_string(packed);
    const char* reason = ERR_reason_error_string(packed);
    std::string reason_text = reason != nullptr ? reason : fmt::format("error {:#x}", packed);
    // Python shows the reason's mnemonic: upper case, spaces as underscores.
    std::string mnemonic = reason_text;
    for (char& c : mnemonic)
        c = c == ' ' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string library_name = library != nullptr ? library : "";
    // OpenSSL 3 names the SSL library "SSL routines"; Python says "SSL".
    const std::string shown = library_name == "SSL routines" ? "SSL" : library_name;
    return SSLError(SSLError::ssl,
                    fmt::format("[{}: {}] {} ({})", shown, mnemonic, reason_text, context), shown,
                    mnemonic);
}

[[noreturn]] void throw_ssl_error(const char* context) {
    throw ssl_error_from_queue(context);
}

// -- the context ---------------------------------------------------------------------------

struct SSLContextState {
    explicit SSLContextState(Purpose purpose) {
        ctx = SSL_CTX_new(TLS_method());
        if (ctx == nullptr) throw_ssl_error("SSL_CTX_new");
        server_side = purpose == Purpose::CLIENT_AUTH;
        // Python's PROTOCOL_TLS_CLIENT / PROTOCOL_TLS_SERVER defaults, and
        // 3.10's minimum of TLS 1.2; renegotiation refused, no compression.
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_options(
            ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (server_side) {
            check_hostname = false;
            set_verify(VerifyMode::CERT_NONE);
        } else {
            check_hostname = true;
            set_verify(VerifyMode::CERT_REQUIRED);
        }
    }
    ~SSLContextState() { SSL_CTX_free(ctx); }
    SSLContextState(const SSLContextState&) = delete;
    SSLContextState& operator=(const SSLContextState&) = delete;

    void set_verify(VerifyMode mode) {
        int flags = SSL_VERIFY_NONE;
        if (mode == VerifyMode::CERT_OPTIONAL) flags = SSL_VERIFY_PEER;
        if (mode == VerifyMode::CERT_REQUIRED)
            flags = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, flags, nullptr);
        verify_mode = mode;
    }

    SSL_CTX* ctx = nullptr;
    bool server_side = false;
    bool check_hostname = false;
    VerifyMode verify_mode = VerifyMode::CERT_NONE;
    std::vector<std::string> alpn;
    std::string alpn_wire;  // the same, as ALPN's length-prefixed list
};

namespace {

int version_number(TLSVersion version, bool minimum) {
    switch (version) {
        case TLSVersion::TLSv1_2:
            return TLS1_2_VERSION;
        case TLSVersion::TLSv1_3:
            return TLS1_3_VERSION;
        case TLSVersion::MINIMUM_SUPPORTED:
        case TLSVersion::MAXIMUM_SUPPORTED:
            break;
    }
    (void)minimum;
    return 0;  // OpenSSL: the lowest or highest it supports
}

TLSVersion version_of(long number, bool minimum) {
    if (number == TLS1_2_VERSION) return TLSVersion::TLSv1_2;
    if (number == TLS1_3_VERSION) return TLSVersion::TLSv1_3;
    return minimum ? TLSVersion::MINIMUM_SUPPORTED : TLSVersion::MAXIMUM_SUPPORTED;
}

bool get_check_hostname(const SSLContextState& s) {
    return s.check_hostname;
}
void set_check_hostname(SSLContextState& s, bool enabled) {
    // ssl.py: enabling it upgrades CERT_NONE to CERT_REQUIRED.
    if (enabled && s.verify_mode == VerifyMode::CERT_NONE) s.set_verify(VerifyMode::CERT_REQUIRED);
    s.check_hostname = enabled;
}
VerifyMode get_verify_mode(const SSLContextState& s) {
    return s.verify_mode;
}
void set_verify_mode(SSLContextState& s, VerifyMode mode) {
    if (mode == VerifyMode::CERT_NONE && s.check_hostname) {
        throw std::invalid_argument(
            "Cannot set verify_mode to CERT_NONE when check_hostname is enabled.");
    }
    s.set_verify(mode);
}
TLSVersion get_minimum_version(const SSLContextState& s) {
    return version_of(SSL_CTX_get_min_proto_version(s.ctx), true);
}
void set_minimum_version(SSLContextState& s, TLSVersion version) {
    if (SSL_CTX_set_min_proto_version(s.ctx, version_number(version, true)) != 1)
        throw_ssl_error("minimum_version");
}
TLSVersion get_maximum_version(const SSLContextState& s) {
    return version_of(SSL_CTX_get_max_proto_version(s.ctx), false);
}
void set_maximum_version(SSLContextState& s, TLSVersion version) {
    if (SSL_CTX_set_max_proto_version(s.ctx, version_number(version, false)) != 1)
        throw_ssl_error("maximum_version");
}

/// A server's ALPN choice; no overlap means no ALPN (not an error), as
/// CPython's _selectALPN_cb answers SSL_TLSEXT_ERR_NOACK.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length,
                const unsigned char* offered, unsigned offered_length, void* user) {
    const auto& state = *static_cast<const SSLContextState*>(user);
    unsigned char* chosen = nullptr;
    const auto* ours = reinterpret_cast<const unsigned char*>(state.alpn_wire.data());
    if (SSL_select_next_proto(&chosen, out_length, ours,
                              static_cast<unsigned>(state.alpn_wire.size()), offered,
                              offered_length) != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/// The password callback's bridge: OpenSSL asks through a C function.
int password_bridge(char* buffer, int size, int, void* user) {
    auto& ask = *static_cast<std::function<std::string()>*>(user);
    std::string password;
    try {
        password = ask();
    } catch (...) {
        return -1;
    }
    if (password.size() > static_cast<std::size_t>(size)) return -1;
    password.copy(buffer, password.size());
    return static_cast<int>(password.size());
}

}  // namespace
}  // namespace detail

SSLContext::SSLContext(Purpose purpose)
    : check_hostname(nullptr, detail::get_check_hostname, detail::set_check_hostname),
      verify_mode(nullptr, detail::get_verify_mode, detail::set_verify_mode),
      minimum_version(nullptr, detail::get_minimum_version, detail::set_minimum_version),
      maximum_version(nullptr, detail::get_maximum_version, detail::set_maximum_version),
      state_(std::make_shared<detail::SSLContextState>(purpose)) {
    for (auto* setting : {&check_hostname.state_, &verify_mode.state_, &minimum_version.state_,
                          &maximum_version.state_})
        *setting = state_.get();
}

SSLContext::SSLContext(const SSLContext& other)
    : check_hostname(other.state_.get(), detail::get_check_hostname, detail::set_check_hostname),
      verify_mode(other.state_.get(), detail::get_verify_mode, detail::set_verify_mode),
      minimum_version(other.state_.get(), detail::get_minimum_version, detail::set_minimum_version),
      maximum_version(other.state_.get(), detail::get_maximum_version, detail::set_maximum_version),
      state_(other.state_) {}

SSLContext& SSLContext::operator=(const SSLContext& other) {
    state_ = other.state_;
    for (auto* setting : {&check_hostname.state_, &verify_mode.state_, &minimum_version.state_,
                          &maximum_version.state_})
        *setting = state_.get();
    return *this;
}

SSLContext::~SSLContext() = default;

SSLContext SSLContext::create_default_context(Purpose purpose) {
    // ssl.create_default_context: SERVER_AUTH is a client's context, which
    // verifies against the system's trust store.
    SSLContext context(purpose == Purpose::SERVER_AUTH ? Purpose::SERVER_AUTH
                                                       : Purpose::CLIENT_AUTH);
    context.load_default_certs();
    return context;
}

void SSLContext::load_cert_chain(std::string certfile, std::optional<std::string> keyfile,
                                 std::function<std::string()> password) {
    SSL_CTX* ctx = state_->ctx;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, certfile.c_str()) != 1)
        detail::throw_ssl_error("load_cert_chain: certificate");
    if (password) {
        SSL_CTX_set_default_passwd_cb(ctx, detail::password_bridge);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, &password);
    }
    const std::string& key = keyfile ? *keyfile : certfile;
    const int loaded = SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM);
    // The callback refers to `password`, which ends with this call.
    SSL_CTX_set_default_passwd_cb(ctx, nullptr);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
    if (loaded != 1) detail::throw_ssl_error("load_cert_chain: private key");
    if (SSL_CTX_check_private_key(ctx) != 1) detail::throw_ssl_error("load_cert_chain");
}

void SSLContext::load_verify_locations(std::optional<std::string> cafile,
                                       std::optional<std::string> capath) {
    if (!cafile && !capath) throw std::invalid_argument("cafile and capath cannot be both omitted");
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(state_->ctx, cafile ? cafile->c_str() : nullptr,
                                      capath ? capath->c_str() : nullptr) != 1) {
        detail::throw_ssl_error("load_verify_locations");
    }
}

void SSLContext::load_default_certs() {
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(state_->ctx) != 1)
        detail::throw_ssl_error("load_default_certs");
}

void SSLContext::set_alpn_protocols(std::vector<std::string> protocols) {
    std::string wire;
    for (const std::string& protocol : protocols) {
        if (protocol.empty() || protocol.size() > 255)
            throw std::invalid_argument(
                fmt::format("ALPN protocol name too long or empty: '{}'", protocol));
        wire += static_cast<char>(protocol.size());
        wire += protocol;
    }
    // A client offers the list; a server picks the first of its own that
    // the client offered (SSL_select_next_proto: the server's preference).
    if (SSL_CTX_set_alpn_protos(state_->ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
        detail::throw_ssl_error("set_alpn_protocols");
    }
    state_->alpn = std::move(protocols);
    state_->alpn_wire = std::move(wire);
    SSL_CTX_set_alpn_select_cb(state_->ctx, detail::select_alpn, state_.get());
}

void SSLContext::set_ciphers(std::string ciphers) {
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(state_->ctx, ciphers.c_str()) != 1) {
        // ssl.py: "No cipher can be selected."
        ERR_clear_error();
        throw SSLError(SSLError::ssl, "No cipher can be selected.");
    }
}

std::vector<std::string> SSLContext::alpn_protocols() const {
    return state_->alpn;
}

ssl_ctx_st* SSLContext::native_handle() const noexcept {
    return state_->ctx;
}

}  // namespace asyncio
