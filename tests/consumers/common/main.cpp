// The program every packaging consumer builds (scripts/consumers.sh): a TCP
// echo over a real connection on loopback, on every backend this machine
// can run, with the library found by find_package, pkg-config,
// add_subdirectory or FetchContent. Exits non-zero on any mismatch.
//
// Compile definitions a consumer may set:
//   ASYNCIO_CONSUMER_KIND        how the library was found, for the output;
//   ASYNCIO_CONSUMER_EXPECT_SSL  1: TLS must work (a context is created),
//                                0: TLS must be refused (built without it).
#include <asyncio.hpp>
#include <cstdio>
#include <exception>
#include <string>

#ifndef ASYNCIO_CONSUMER_KIND
#define ASYNCIO_CONSUMER_KIND "consumer"
#endif

namespace {
int failures = 0;
void expect(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
        ++failures;
    }
}

asyncio::Coro<> echo_line(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    std::string line = co_await reader.readline();
    writer.write(line);
    co_await writer.drain();
    writer.close();
    co_await writer.wait_closed();
}

asyncio::Coro<std::string> round_trip(std::string message) {
    asyncio::Server server = co_await asyncio::start_server(echo_line, "127.0.0.1", 0);
    const int port = server.sockets().front().port();
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);
    writer.write(message);
    co_await writer.drain();
    std::string echoed = co_await reader.readline();
    std::string rest = co_await reader.read();
    expect(rest.empty(), "EOF after the echoed line");
    writer.close();
    co_await writer.wait_closed();
    server.close();
    co_await server.wait_closed();
    co_return echoed;
}

void check_ssl() {
#if defined(ASYNCIO_CONSUMER_EXPECT_SSL)
    bool created = false;
    std::string error;
    try {
        asyncio::SSLContext ctx = asyncio::SSLContext::create_default_context();
        created = true;
    } catch (const std::exception& e) {
        error = e.what();
    }
#if ASYNCIO_CONSUMER_EXPECT_SSL
    expect(created, "TLS context: " + error);
#else
    expect(!created && error.find("TLS is not available") != std::string::npos,
           "TLS refused without ASYNCIO_WITH_SSL");
#endif
#endif
}
}  // namespace

int main() {
    check_ssl();
    const std::vector<asyncio::Backend> backends = asyncio::available_backends();
    expect(!backends.empty(), "a backend is available");
    std::string ran;
    for (asyncio::Backend backend : backends) {
        const std::string name(asyncio::to_string(backend));
        const std::string message = std::string(ASYNCIO_CONSUMER_KIND) + " over " + name + "\n";
        asyncio::Runner runner({.backend = backend});
        expect(runner.run(round_trip(message)) == message, "echo on " + name);
        runner.close();
        ran += (ran.empty() ? "" : ", ") + name;
    }
    std::printf("%s: %s (echo on %s)\n", ASYNCIO_CONSUMER_KIND, failures == 0 ? "ok" : "FAILED",
                ran.c_str());
    return failures == 0 ? 0 : 1;
}
