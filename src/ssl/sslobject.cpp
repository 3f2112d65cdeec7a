// ssl.SSLObject over OpenSSL's SSL: what a TLS transport tells about its
// session (version, cipher, ALPN, the peer's certificate as getpeercert()).
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include <fmt/format.h>

#include "asyncio/ssl.hpp"

namespace asyncio {

namespace {

using X509Pointer = std::unique_ptr<X509, decltype(&X509_free)>;

std::string asn1_text(const ASN1_STRING* value) {
    unsigned char* utf8 = nullptr;
    const int length = ASN1_STRING_to_UTF8(&utf8, value);
    if (length < 0) return {};
    std::string text(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
    OPENSSL_free(utf8);
    return text;
}

PeerCertificate::Name name_entries(const X509_NAME* name) {
    PeerCertificate::Name entries;
    for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
        const X509_NAME_ENTRY* entry = X509_NAME_get_entry(name, i);
        const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
        const char* attribute = nid != NID_undef ? OBJ_nid2ln(nid) : "unknown";
        entries.emplace_back(attribute, asn1_text(X509_NAME_ENTRY_get_data(entry)));
    }
    return entries;
}

/// ASN1_TIME_print's form, which is Python's: "Dec  4 11:23:49 2026 GMT".
std::string time_text(const ASN1_TIME* time) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!bio || ASN1_TIME_print(bio.get(), time) != 1) return {};
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string serial_text(const X509* cert) {
    BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    if (number == nullptr) return {};
    char* hex = BN_bn2hex(number);
    std::string text = hex != nullptr ? hex : "";
    OPENSSL_free(hex);
    BN_free(number);
    return text;
}

/// _ssl.c's _get_peer_alt_names: IPv6 written as eight upper-case groups.
std::string ip_text(const ASN1_OCTET_STRING* address) {
    const unsigned char* bytes = ASN1_STRING_get0_data(address);
    if (ASN1_STRING_length(address) == 4) {
        return fmt::format("{}.{}.{}.{}", bytes[0], bytes[1], bytes[2], bytes[3]);
    }
    if (ASN1_STRING_length(address) == 16) {
        std::string text;
        for (int i = 0; i < 16; i += 2) {
            if (i != 0) text += ':';
            text += fmt::format("{:X}", (bytes[i] << 8) | bytes[i + 1]);
        }
        return text;
    }
    return "<invalid>";
}

std::vector<std::pair<std::string, std::string>> alt_names(const X509* cert) {
    std::vector<std::pair<std::string, std::string>> names;
    auto* general =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (general == nullptr) return names;
    for (int i = 0; i < sk_GENERAL_NAME_num(general); ++i) {
        const GENERAL_NAME* name = sk_GENERAL_NAME_value(general, i);
        switch (name->type) {
            case GEN_DNS:
                names.emplace_back("DNS", asn1_text(name->d.dNSName));
                break;
            case GEN_IPADD:
                names.emplace_back("IP Address", ip_text(name->d.iPAddress));
                break;
            case GEN_EMAIL:
                names.emplace_back("email", asn1_text(name->d.rfc822Name));
                break;
            case GEN_URI:
                names.emplace_back("URI", asn1_text(name->d.uniformResourceIdentifier));
                break;
            default:
                break;
        }
    }
    GENERAL_NAMES_free(general);
    return names;
}

}  // namespace

SSLObject::SSLObject(ssl_st* ssl) : ssl_(ssl) {
    SSL_up_ref(ssl_);
}
SSLObject::SSLObject(const SSLObject& other) : SSLObject(other.ssl_) {}
SSLObject& SSLObject::operator=(const SSLObject& other) {
    SSL_up_ref(other.ssl_);
    SSL_free(ssl_);
    ssl_ = other.ssl_;
    return *this;
}
SSLObject::~SSLObject() {
    SSL_free(ssl_);
}

std::optional<std::string> SSLObject::version() const {
    if (!SSL_is_init_finished(ssl_)) return std::nullopt;
    return std::string(SSL_get_version(ssl_));
}

std::optional<std::tuple<std::string, std::string, int>> SSLObject::cipher() const {
    const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
    if (cipher == nullptr) return std::nullopt;
    return std::tuple<std::string, std::string, int>(SSL_CIPHER_get_name(cipher),
                                                     SSL_CIPHER_get_version(cipher),
                                                     SSL_CIPHER_get_bits(cipher, nullptr));
}

std::optional<std::string> SSLObject::compression() const {
    const COMP_METHOD* method = SSL_get_current_compression(ssl_);
    if (method == nullptr) return std::nullopt;
    return std::string(SSL_COMP_get_name(method));
}

std::optional<std::string> SSLObject::selected_alpn_protocol() const {
    const unsigned char* protocol = nullptr;
    unsigned length = 0;
    SSL_get0_alpn_selected(ssl_, &protocol, &length);
    if (protocol == nullptr) return std::nullopt;
    return std::string(reinterpret_cast<const char*>(protocol), length);
}

std::optional<PeerCertificate> SSLObject::getpeercert() const {
    X509Pointer cert(SSL_get1_peer_certificate(ssl_), X509_free);
    if (!cert || (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) == 0) return std::nullopt;
    PeerCertificate info;
    info.subject = name_entries(X509_get_subject_name(cert.get()));
    info.issuer = name_entries(X509_get_issuer_name(cert.get()));
    info.version = static_cast<int>(X509_get_version(cert.get())) + 1;
    info.serial_number = serial_text(cert.get());
    info.not_before = time_text(X509_get0_notBefore(cert.get()));
    info.not_after = time_text(X509_get0_notAfter(cert.get()));
    info.subject_alt_name = alt_names(cert.get());
    return info;
}

std::optional<std::string> SSLObject::getpeercert_der() const {
    X509Pointer cert(SSL_get1_peer_certificate(ssl_), X509_free);
    if (!cert) return std::nullopt;
    unsigned char* der = nullptr;
    const int length = i2d_X509(cert.get(), &der);
    if (length < 0) return std::nullopt;
    std::string bytes(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
    OPENSSL_free(der);
    return bytes;
}

std::optional<std::string> SSLObject::server_hostname() const {
    const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr) return std::nullopt;
    return std::string(name);
}

bool SSLObject::server_side() const {
    return SSL_is_server(ssl_) == 1;
}

}  // namespace asyncio
