// SSLContext: ports of the context cases of CPython's Lib/test/test_ssl.py
// (ContextTests) that asyncio relies on, with certificates made by openssl.
#include <asyncio/ssl.hpp>
#include <string>
#include <vector>

#include "support.hpp"
#include "tls_certs.hpp"

using asyncio::SSLContext;
using asyncio::VerifyMode;
using asyncio_test::TlsCerts;

TEST_CASE("a client context checks hostnames and requires a certificate; a server's does not") {
    SSLContext client(asyncio::Purpose::SERVER_AUTH);
    CHECK(client.check_hostname);
    CHECK(client.verify_mode == VerifyMode::CERT_REQUIRED);
    SSLContext server(asyncio::Purpose::CLIENT_AUTH);
    CHECK_FALSE(server.check_hostname);
    CHECK(server.verify_mode == VerifyMode::CERT_NONE);
    CHECK(client.minimum_version == asyncio::TLSVersion::TLSv1_2);
    CHECK(client.native_handle() != nullptr);
}

TEST_CASE("copies share the context and its settings") {
    SSLContext context;
    SSLContext copy = context;
    copy.check_hostname = false;
    CHECK_FALSE(context.check_hostname);
    context.verify_mode = VerifyMode::CERT_OPTIONAL;
    CHECK(copy.verify_mode == VerifyMode::CERT_OPTIONAL);
    CHECK(copy.native_handle() == context.native_handle());
    SSLContext assigned(asyncio::Purpose::CLIENT_AUTH);
    assigned = context;
    CHECK(assigned.native_handle() == context.native_handle());
    CHECK(assigned.verify_mode == VerifyMode::CERT_OPTIONAL);
}

TEST_CASE("check_hostname and verify_mode keep each other consistent, as in ssl.py") {
    // test_check_hostname
    SSLContext context;
    CHECK_THROWS_AS(context.verify_mode = VerifyMode::CERT_NONE, std::invalid_argument);
    context.check_hostname = false;
    context.verify_mode = VerifyMode::CERT_NONE;
    CHECK(context.verify_mode == VerifyMode::CERT_NONE);
    context.check_hostname = true;  // upgrades CERT_NONE
    CHECK(context.verify_mode == VerifyMode::CERT_REQUIRED);
}

TEST_CASE("minimum_version and maximum_version") {
    SSLContext context;
    context.minimum_version = asyncio::TLSVersion::TLSv1_3;
    CHECK(context.minimum_version == asyncio::TLSVersion::TLSv1_3);
    context.maximum_version = asyncio::TLSVersion::TLSv1_3;
    CHECK(context.maximum_version == asyncio::TLSVersion::TLSv1_3);
    context.maximum_version = asyncio::TLSVersion::MAXIMUM_SUPPORTED;
    CHECK(context.maximum_version == asyncio::TLSVersion::MAXIMUM_SUPPORTED);
}

TEST_CASE("load_cert_chain: a matching pair, a key from another pair, an encrypted key") {
    const TlsCerts& certs = TlsCerts::get();
    SSLContext server(asyncio::Purpose::CLIENT_AUTH);
    server.load_cert_chain(certs.server_cert(), certs.server_key());

    std::string reason;
    try {
        server.load_cert_chain(certs.server_cert(), certs.other_key());
    } catch (const asyncio::SSLError& e) {
        reason = e.reason();
        CHECK(std::string(e.what()).find("KEY_VALUES_MISMATCH") != std::string::npos);
    }
    CHECK(reason == "KEY_VALUES_MISMATCH");

    int asked = 0;
    server.load_cert_chain(certs.server_cert(), certs.encrypted_key(), [&asked] {
        ++asked;
        return std::string("secret");
    });
    CHECK(asked == 1);
    CHECK_THROWS_AS(server.load_cert_chain(certs.server_cert(), certs.encrypted_key(),
                                           [] { return std::string("wrong"); }),
                    asyncio::SSLError);
    CHECK_THROWS_AS(server.load_cert_chain(certs.path("missing.pem")), asyncio::SSLError);
}

TEST_CASE("load_verify_locations: a CA file, nothing, a missing file") {
    const TlsCerts& certs = TlsCerts::get();
    SSLContext client;
    client.load_verify_locations(certs.ca());
    CHECK_THROWS_AS(client.load_verify_locations(std::nullopt), std::invalid_argument);
    CHECK_THROWS_AS(client.load_verify_locations(certs.path("missing.pem")), asyncio::SSLError);
}

TEST_CASE("create_default_context loads the system's trust store") {
    SSLContext context = SSLContext::create_default_context();
    CHECK(context.check_hostname);
    CHECK(context.verify_mode == VerifyMode::CERT_REQUIRED);
    SSLContext server = SSLContext::create_default_context(asyncio::Purpose::CLIENT_AUTH);
    CHECK_FALSE(server.check_hostname);
}

TEST_CASE("set_alpn_protocols and set_ciphers") {
    SSLContext context;
    context.set_alpn_protocols({"h2", "http/1.1"});
    CHECK(context.alpn_protocols() == std::vector<std::string>{"h2", "http/1.1"});
    CHECK_THROWS_AS(context.set_alpn_protocols({""}), std::invalid_argument);
    CHECK_THROWS_AS(context.set_alpn_protocols({std::string(256, 'x')}), std::invalid_argument);
    context.set_ciphers("ECDHE+AESGCM");
    std::string what;
    try {
        context.set_ciphers("NO-SUCH-CIPHER");
    } catch (const asyncio::SSLError& e) {
        what = e.what();
    }
    CHECK(what == "No cipher can be selected.");
}

TEST_CASE("SSL errors are OS errors in the ssl category") {
    asyncio::SSLEOFError eof;
    CHECK(eof.code().category() == asyncio::ssl_category());
    CHECK(eof.code().value() == asyncio::SSLError::eof);
    const std::system_error& as_os_error = eof;
    CHECK(std::string(as_os_error.what()).find("EOF occurred in violation of protocol") !=
          std::string::npos);
    asyncio::SSLCertVerificationError verify(
        62, "Hostname mismatch, certificate is not valid for 'x'.");
    CHECK(verify.verify_code() == 62);
    CHECK(std::string(verify.what()).find("CERTIFICATE_VERIFY_FAILED") != std::string::npos);
}
