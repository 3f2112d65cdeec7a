// TLS contexts and errors (the parts of Lib/ssl.py that asyncio uses), with
// OpenSSL underneath.
//
// clang-format off
//     ctx = ssl.create_default_context()          auto ctx = asyncio::SSLContext::create_default_context();
//     ctx.load_verify_locations("ca.pem")         ctx.load_verify_locations("ca.pem");
//     ctx.check_hostname = False                  ctx.check_hostname = false;
//     ctx.verify_mode = ssl.CERT_NONE             ctx.verify_mode = asyncio::VerifyMode::CERT_NONE;
// clang-format on
//
// An SSLContext is a cheap handle to a reference-counted SSL_CTX: copies
// share it, settings included, so `.ssl = ctx` hands over the same context.
// This header does not include OpenSSL's, nor any layer above the core: the
// transports' options hold an SSLContext, and loop.start_tls (loop.hpp) is
// the TLS layer's way in.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "asyncio/export.hpp"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX
struct ssl_st;      // OpenSSL's SSL

namespace asyncio {

/// ssl.Purpose: what the peer's certificate is checked for.
enum class Purpose {
    SERVER_AUTH,  ///< a client's context: the server is authenticated
    CLIENT_AUTH   ///< a server's context
};

/// ssl.VerifyMode.
enum class VerifyMode { CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED };

/// ssl.TLSVersion (the versions a context may still allow).
enum class TLSVersion { MINIMUM_SUPPORTED, TLSv1_2, TLSv1_3, MAXIMUM_SUPPORTED };

/// The category of SSLError's codes: Python's ssl.SSL_ERROR_* numbers.
ASYNCIO_EXPORT const std::error_category& ssl_category() noexcept;

/// ssl.SSLError (an OSError, so a std::system_error): what() is OpenSSL's
/// reason, as Python shows it: "[SSL: WRONG_VERSION_NUMBER] wrong version number".
class ASYNCIO_EXPORT SSLError : public std::system_error {
  public:
    /// Python's ssl.SSL_ERROR_* values, the codes in ssl_category(). (Not
    /// Python's names: OpenSSL defines most of them as macros.)
    enum Code {
        ssl = 1,          ///< SSL_ERROR_SSL
        want_read = 2,    ///< SSL_ERROR_WANT_READ
        want_write = 3,   ///< SSL_ERROR_WANT_WRITE
        syscall = 5,      ///< SSL_ERROR_SYSCALL
        zero_return = 6,  ///< SSL_ERROR_ZERO_RETURN
        eof = 8,          ///< SSL_ERROR_EOF
    };
    SSLError(Code code, std::string message, std::string library = {}, std::string reason = {});

    /// The message alone, as str() of Python's SSLError shows it (without
    /// std::system_error's ": " and category text).
    const char* what() const noexcept override { return message_.c_str(); }
    /// OpenSSL's library name ("SSL"), empty if none.
    const std::string& library() const noexcept { return library_; }
    /// OpenSSL's reason mnemonic ("WRONG_VERSION_NUMBER"), empty if none.
    const std::string& reason() const noexcept { return reason_; }

  private:
    std::string message_;
    std::string library_;
    std::string reason_;
};

/// ssl.SSLCertVerificationError: the peer's certificate was refused.
class ASYNCIO_EXPORT SSLCertVerificationError : public SSLError {
  public:
    SSLCertVerificationError(long verify_code, std::string verify_message);
    /// X509_V_ERR_* (62: hostname mismatch).
    long verify_code() const noexcept { return verify_code_; }
    const std::string& verify_message() const noexcept { return verify_message_; }

  private:
    long verify_code_;
    std::string verify_message_;
};

/// ssl.SSLZeroReturnError: the peer closed the TLS session.
class ASYNCIO_EXPORT SSLZeroReturnError : public SSLError {
  public:
    SSLZeroReturnError();
};

/// ssl.SSLEOFError: the connection ended without close_notify (truncation).
class ASYNCIO_EXPORT SSLEOFError : public SSLError {
  public:
    SSLEOFError();
};

class SSLContext;

namespace detail {
struct SSLContextState;

/// An attribute of SSLContext (check_hostname, verify_mode, ...): reads and
/// assignments go to the shared context, so that every copy sees them.
template <class T>
class ContextSetting {
  public:
    using Get = T (*)(const SSLContextState&);
    using Set = void (*)(SSLContextState&, T);

    operator T() const { return get_(*state_); }  // NOLINT: reads like Python's attribute
    ContextSetting& operator=(T value) {
        set_(*state_, value);
        return *this;
    }
    ContextSetting& operator=(const ContextSetting& other) { return *this = T(other); }
    ContextSetting(const ContextSetting&) = delete;

  private:
    friend class asyncio::SSLContext;
    ContextSetting(SSLContextState* state, Get get, Set set) noexcept
        : state_(state), get_(get), set_(set) {}

    SSLContextState* state_;
    Get get_;
    Set set_;
};
}  // namespace detail

/// ssl.SSLContext: certificates, trust, versions and ALPN for TLS
/// connections. Errors carry OpenSSL's reason text.
class ASYNCIO_EXPORT SSLContext {
  public:
    /// ssl.SSLContext(PROTOCOL_TLS_CLIENT) for SERVER_AUTH (hostname checked,
    /// CERT_REQUIRED, no CA loaded), PROTOCOL_TLS_SERVER for CLIENT_AUTH.
    explicit SSLContext(Purpose purpose = Purpose::SERVER_AUTH);
    SSLContext(const SSLContext& other);
    SSLContext& operator=(const SSLContext& other);
    ~SSLContext();

    /// ssl.create_default_context(purpose): TLS 1.2 and up, the system's
    /// trust store, hostname checking for a client.
    static SSLContext create_default_context(Purpose purpose = Purpose::SERVER_AUTH);

    /// The certificate chain (PEM) and its private key (in `certfile` if no
    /// `keyfile`). `password` is asked for an encrypted key. SSLError if the
    /// key does not match the certificate, or for a wrong password.
    void load_cert_chain(std::string certfile, std::optional<std::string> keyfile = {},
                         std::function<std::string()> password = {});
    /// Trusted CA certificates: a PEM file, a hashed directory, or both.
    void load_verify_locations(std::optional<std::string> cafile,
                               std::optional<std::string> capath = {});
    /// The system's trust store (load_default_certs).
    void load_default_certs();
    /// ALPN protocols, most preferred first ("h2", "http/1.1").
    void set_alpn_protocols(std::vector<std::string> protocols);
    /// OpenSSL's cipher list for TLS 1.2 and below.
    void set_ciphers(std::string ciphers);

    /// Whether a client checks the server's name against server_hostname.
    /// Setting it true makes verify_mode CERT_REQUIRED if it was CERT_NONE.
    detail::ContextSetting<bool> check_hostname;
    /// std::invalid_argument (ValueError) for CERT_NONE while check_hostname.
    detail::ContextSetting<VerifyMode> verify_mode;
    detail::ContextSetting<TLSVersion> minimum_version;
    detail::ContextSetting<TLSVersion> maximum_version;

    /// The ALPN protocols set (empty: none).
    std::vector<std::string> alpn_protocols() const;
    /// The context's SSL_CTX, for settings this class does not cover.
    ssl_ctx_st* native_handle() const noexcept;

  private:
    std::shared_ptr<detail::SSLContextState> state_;
};

/// SSLSocket.getpeercert()'s dict, as a struct: the fields Python fills in.
/// Names are (attribute, value) pairs with OpenSSL's long names
/// ("commonName"); Python nests them per RDN, one level this flattens.
struct PeerCertificate {
    using Name = std::vector<std::pair<std::string, std::string>>;
    Name subject;
    Name issuer;
    int version = 0;            ///< 3 for X.509 v3
    std::string serial_number;  ///< "serialNumber": upper-case hex
    std::string not_before;     ///< "notBefore": "Dec  4 11:23:49 2026 GMT"
    std::string not_after;      ///< "notAfter"
    /// "subjectAltName": ("DNS", "localhost"), ("IP Address", "127.0.0.1"), ...
    std::vector<std::pair<std::string, std::string>> subject_alt_name;
};

/// ssl.SSLObject: one end of a TLS session, as a TLS transport's
/// get_extra_info("ssl_object") gives it. A handle that keeps OpenSSL's SSL
/// alive (copies share it); read it while the connection is open.
class ASYNCIO_EXPORT SSLObject {
  public:
    /// Takes a reference to `ssl` (SSL_up_ref).
    explicit SSLObject(ssl_st* ssl);
    SSLObject(const SSLObject& other);
    SSLObject& operator=(const SSLObject& other);
    ~SSLObject();

    /// "TLSv1.3", ...; none before the handshake.
    std::optional<std::string> version() const;
    /// (name, protocol version, secret bits); none before the handshake.
    std::optional<std::tuple<std::string, std::string, int>> cipher() const;
    /// The compression method's name; none (OpenSSL 3 builds have none).
    std::optional<std::string> compression() const;
    /// The protocol ALPN chose; none if none was.
    std::optional<std::string> selected_alpn_protocol() const;
    /// getpeercert(): the peer's certificate once verified; none if the
    /// peer sent none (a client, usually) or it was not verified (CERT_NONE:
    /// Python's empty dict).
    std::optional<PeerCertificate> getpeercert() const;
    /// getpeercert(binary_form=True): the DER bytes, verified or not.
    std::optional<std::string> getpeercert_der() const;
    /// The name the client asked for (SNI); none on a server without SNI.
    std::optional<std::string> server_hostname() const;
    bool server_side() const;
    /// OpenSSL's SSL, for what this class does not cover.
    ssl_st* native_handle() const noexcept { return ssl_; }

  private:
    ssl_st* ssl_;
};

/// Keyword arguments of loop.start_tls / StreamWriter::start_tls.
struct TlsOptions {
    /// The name the server's certificate must match (and SNI); a client
    /// whose context checks hostnames needs it.
    std::optional<std::string> server_hostname{};
    /// How long the handshake may take (default 60 s).
    std::optional<std::chrono::nanoseconds> ssl_handshake_timeout{};
    /// This end is the server of the TLS session.
    bool server_side = false;
    /// How long close() waits for the peer's close_notify (default 30 s).
    std::optional<std::chrono::nanoseconds> ssl_shutdown_timeout{};
};

}  // namespace asyncio
