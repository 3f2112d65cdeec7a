// Fuzzes the parsing of numeric addresses, ports and Unix paths: everything
// that turns a string into an Address without a resolver (no DNS).
//
// Input: one byte picks the function, then a port for Address::parse, then
// the text. Invariants: only std::invalid_argument is thrown; an address
// that parsed survives a round trip through its text forms; an accepted text
// was read whole (no byte of it silently ignored).
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "asyncio/socket.hpp"

namespace {

using asyncio::Address;

[[noreturn]] void fail(const char* what, std::string_view input) {
    std::fprintf(stderr, "invariant broken: %s\ninput (%zu bytes): ", what, input.size());
    for (unsigned char c : input)
        std::fprintf(stderr, "\\x%02x", c);
    std::fprintf(stderr, "\n");
    std::abort();
}

#define CHECK(condition, input) \
    if (!(condition)) fail(#condition, input)

bool numeric_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':';
}

// What an accepted host may look like: an optional pair of brackets around
// hex digits, dots and colons, then optionally '%' and a scope (an interface
// name or a number: never a NUL, which no C string can carry).
bool looks_numeric(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const auto percent = host.find('%');
    for (char c : host.substr(0, percent)) {
        if (!numeric_char(c)) return false;
    }
    return percent == std::string_view::npos ||
           host.substr(percent).find('\0') == std::string_view::npos;
}

// A port's text: decimal digits only (leading zeros allowed) worth `port`.
bool is_port_text(std::string_view text, int port) {
    if (text.empty()) return false;
    int value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = std::min(value * 10 + (c - '0'), 1'000'000);
    }
    return value == port;
}

void check_inet(const Address& a, std::string_view input) {
    CHECK(a.family() == AF_INET || a.family() == AF_INET6, input);
    CHECK(Address::parse(a.host(), a.port()) == a, input);
    CHECK(Address::from_string(a.to_string()) == a, input);
}

void check_unix(const Address& a, std::string_view path, std::string_view input) {
    CHECK(a.family() == AF_UNIX, input);
    CHECK(path.size() < sizeof(::sockaddr_un::sun_path), input);
    CHECK(a.host() == path, input);
    CHECK(Address::unix_path(a.host()) == a, input);
}

void parse(int port, const std::string& host, std::string_view input) {
    Address a;
    try {
        a = Address::parse(host, port);
    } catch (const std::overflow_error&) {
        // CPython's OverflowError("port must be 0-65535"), and only for that.
        CHECK(port < 0 || port > 65535, input);
        return;
    } catch (const std::invalid_argument&) {
        CHECK(port >= 0 && port <= 65535, input);  // the range is checked first
        return;
    }
    CHECK(port >= 0 && port <= 65535, input);
    CHECK(a.port() == port, input);
    CHECK(looks_numeric(host), input);
    check_inet(a, input);
}

void from_string(const std::string& text, std::string_view input) {
    Address a;
    try {
        a = Address::from_string(text);
    } catch (const std::invalid_argument&) {
        return;
    }
    if (a.family() == AF_UNIX) {
        CHECK(text.find('/') != std::string::npos || text.front() == '@', input);
        check_unix(a, text, input);
        return;
    }
    const auto colon = text.rfind(':');
    CHECK(colon != std::string::npos, input);
    CHECK(looks_numeric(std::string_view(text).substr(0, colon)), input);
    CHECK(is_port_text(std::string_view(text).substr(colon + 1), a.port()), input);
    check_inet(a, input);
}

void unix_path(const std::string& path, std::string_view input) {
    Address a;
    try {
        a = Address::unix_path(path);
    } catch (const std::invalid_argument&) {
        return;
    }
    check_unix(a, path, input);
}

// Whether strtoll, as glibc reads a numeric service, finds a number outside
// 0-65535 at the start of `text`.
bool outside_port_range(const std::string& text) {
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    return end != text.c_str() && (errno == ERANGE || value < 0 || value > 65535);
}

// getaddrinfo's numeric fast path: it answers for numeric hosts and ports
// and must leave everything else (names, service names) to the resolver.
void resolve_numeric(FuzzedDataProvider& provider, std::string_view input) {
    asyncio::AddrInfoOptions options;
    options.family = provider.PickValueInArray<int>({AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX});
    options.type = provider.PickValueInArray<int>({0, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW});
    options.proto = provider.PickValueInArray<int>({0, IPPROTO_TCP, IPPROTO_UDP});
    options.flags = provider.PickValueInArray<int>({0, AI_PASSIVE, AI_NUMERICHOST});
    const std::string port = provider.ConsumeRandomLengthString(8);
    const std::string host = provider.ConsumeRemainingBytesAsString();
    std::optional<std::vector<asyncio::AddrInfo>> result;
    try {
        result = asyncio::detail::resolve_numeric(host, port, options);
    } catch (const std::overflow_error&) {
        // A numeric service outside 0-65535 (CPython's OverflowError): what
        // glibc would otherwise have wrapped into range.
        CHECK(outside_port_range(port), input);
        return;
    }
    if (!result) return;
    CHECK(options.flags == 0, input);
    CHECK(result->size() == 1, input);
    const asyncio::AddrInfo& info = result->front();
    CHECK(info.type == options.type, input);
    CHECK(options.family == AF_UNSPEC || info.family == options.family, input);
    CHECK(info.family == info.address.family(), input);
    CHECK(port.empty() ? info.address.port() == 0 : is_port_text(port, info.address.port()), input);
    CHECK(looks_numeric(host), input);
    check_inet(info.address, input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    FuzzedDataProvider provider(data, size);
    switch (provider.ConsumeIntegralInRange(0, 3)) {
        case 0: {
            const int port = provider.ConsumeIntegralInRange(-2, 65537);
            parse(port, provider.ConsumeRemainingBytesAsString(), input);
            break;
        }
        case 1:
            from_string(provider.ConsumeRemainingBytesAsString(), input);
            break;
        case 2:
            unix_path(provider.ConsumeRemainingBytesAsString(), input);
            break;
        case 3:
            resolve_numeric(provider, input);
            break;
    }
    return 0;
}
