// The SSL error types: they need no OpenSSL, so a build without TLS
// (ASYNCIO_WITH_SSL=OFF) has them too.
#include <utility>

#include <fmt/format.h>

#include "asyncio/ssl.hpp"

namespace asyncio {

namespace {

class SSLCategory final : public std::error_category {
  public:
    const char* name() const noexcept override { return "ssl"; }
    std::string message(int code) const override {
        switch (code) {
            case SSLError::ssl:
                return "SSL error";
            case SSLError::want_read:
                return "The operation did not complete (read)";
            case SSLError::want_write:
                return "The operation did not complete (write)";
            case SSLError::syscall:
                return "Some I/O error occurred";
            case SSLError::zero_return:
                return "TLS/SSL connection has been closed (EOF)";
            case SSLError::eof:
                return "EOF occurred in violation of protocol";
            default:
                return "unknown SSL error";
        }
    }
};

}  // namespace

const std::error_category& ssl_category() noexcept {
    static const SSLCategory category;
    return category;
}

SSLError::SSLError(Code code, std::string message, std::string library, std::string reason)
    : std::system_error(static_cast<int>(code), ssl_category(), message),
      message_(std::move(message)),
      library_(std::move(library)),
      reason_(std::move(reason)) {}

SSLCertVerificationError::SSLCertVerificationError(long verify_code, std::string verify_message)
    : SSLError(ssl,
               fmt::format("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {}",
                           verify_message),
               "SSL", "CERTIFICATE_VERIFY_FAILED"),
      verify_code_(verify_code),
      verify_message_(std::move(verify_message)) {}

SSLZeroReturnError::SSLZeroReturnError()
    : SSLError(zero_return, "TLS/SSL connection has been closed (EOF)") {}

SSLEOFError::SSLEOFError() : SSLError(eof, "EOF occurred in violation of protocol") {}

}  // namespace asyncio
