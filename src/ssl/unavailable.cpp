// A build without TLS (ASYNCIO_WITH_SSL=OFF): the same API, and a clear
// error where TLS would start, as Python without its ssl module. Code that
// names SSLContext (every entry point's options do) still links.
#include <stdexcept>

#include "asyncio/exceptions.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/ssl.hpp"

namespace asyncio {

namespace {
[[noreturn]] void unavailable() {
    throw RuntimeError("TLS is not available: asyncio was built with ASYNCIO_WITH_SSL=OFF");
}
}  // namespace

// No SSLContext can exist: its constructor throws, so the members below are
// never reached on an object; they are defined so that callers link.
SSLContext::SSLContext(Purpose)
    : check_hostname(nullptr, nullptr, nullptr),
      verify_mode(nullptr, nullptr, nullptr),
      minimum_version(nullptr, nullptr, nullptr),
      maximum_version(nullptr, nullptr, nullptr) {
    unavailable();
}
SSLContext::SSLContext(const SSLContext&) : SSLContext(Purpose::SERVER_AUTH) {}
SSLContext& SSLContext::operator=(const SSLContext&) {
    unavailable();
}
SSLContext::~SSLContext() = default;
SSLContext SSLContext::create_default_context(Purpose) {
    unavailable();
}
void SSLContext::load_cert_chain(std::string, std::optional<std::string>,
                                 std::function<std::string()>) {
    unavailable();
}
void SSLContext::load_verify_locations(std::optional<std::string>, std::optional<std::string>) {
    unavailable();
}
void SSLContext::load_default_certs() {
    unavailable();
}
void SSLContext::set_alpn_protocols(std::vector<std::string>) {
    unavailable();
}
void SSLContext::set_ciphers(std::string) {
    unavailable();
}
std::vector<std::string> SSLContext::alpn_protocols() const {
    unavailable();
}
ssl_ctx_st* SSLContext::native_handle() const noexcept {
    return nullptr;
}

SSLObject::SSLObject(ssl_st*) : ssl_(nullptr) {
    unavailable();
}
SSLObject::SSLObject(const SSLObject&) : SSLObject(nullptr) {}
SSLObject& SSLObject::operator=(const SSLObject&) {
    unavailable();
}
SSLObject::~SSLObject() = default;
std::optional<std::string> SSLObject::version() const {
    unavailable();
}
std::optional<std::tuple<std::string, std::string, int>> SSLObject::cipher() const {
    unavailable();
}
std::optional<std::string> SSLObject::compression() const {
    unavailable();
}
std::optional<std::string> SSLObject::selected_alpn_protocol() const {
    unavailable();
}
std::optional<PeerCertificate> SSLObject::getpeercert() const {
    unavailable();
}
std::optional<std::string> SSLObject::getpeercert_der() const {
    unavailable();
}
std::optional<std::string> SSLObject::server_hostname() const {
    unavailable();
}
bool SSLObject::server_side() const {
    unavailable();
}

Coro<Transport*> EventLoop::start_tls(Transport&, BaseProtocol&, SSLContext&, TlsOptions) {
    unavailable();
}
Coro<Transport*> EventLoop::start_tls(Transport& transport, BaseProtocol& protocol,
                                      SSLContext& sslcontext) {
    return start_tls(transport, protocol, sslcontext, TlsOptions{});
}

}  // namespace asyncio
