// asio_server: the Boost.Asio peer of the network benchmarks (run.py's echo
// and http workloads).
//
//   asio_server echo|http PORT
//
// Written as Asio's own examples write a server with C++20 coroutines
// (asio/example/cpp20/coroutines/echo_server.cpp): an io_context with
// concurrency hint 1, a listener coroutine that co_spawns one coroutine per
// accepted socket, use_awaitable as the completion token, errors as
// exceptions, and a signal_set that stops the io_context.
//
//   echo  async_read_some into a 64 KiB buffer (the size echo_streams and
//         the Python peer read), then async_write of what was read;
//   http  async_read_until "\r\n\r\n" into a dynamic_buffer, then the
//         response to every complete request in the buffer (pipelined
//         ones included) in one async_write: examples/http_hello_server.cpp's
//         answers (keep-alive, "Connection: close", HEAD, 405) byte for byte.
//
// PORT 0 picks a free port. Prints "Serving on 127.0.0.1:PORT" once
// listening and exits 0 on SIGINT or SIGTERM, as the other servers do.
// TCP_NODELAY on every connection, as the raw servers and asyncio set it.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::string_view_literals;

namespace {

constexpr std::string_view body = "Hello, World!";
constexpr std::string_view keep_alive_headers =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n";
constexpr std::string_view close_headers =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
    "Connection: close\r\n\r\n";
constexpr std::string_view not_allowed =
    "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

std::string lower(std::string_view text) {
    std::string result(text);
    for (char& c : result)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return result;
}

std::string_view strip(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
        text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
        text.remove_suffix(1);
    return text;
}

// examples/http_hello_server.cpp's respond(): appends the response to
// `request` (its head, without the blank line) to `out`; returns whether the
// connection stays open.
bool respond(std::string_view request, std::string& out) {
    std::size_t eol = request.find("\r\n");
    std::string_view line = request.substr(0, eol);
    const bool get = line.starts_with("GET "sv);
    if (!get && !line.starts_with("HEAD "sv)) {
        out += not_allowed;
        return false;
    }
    std::string connection;
    while (eol != std::string_view::npos) {
        request.remove_prefix(eol + 2);
        eol = request.find("\r\n");
        std::string_view header = request.substr(0, eol);
        std::size_t colon = header.find(':');
        if (colon == 10 && lower(header.substr(0, colon)) == "connection")
            connection = lower(strip(header.substr(colon + 1)));
    }
    const bool keep_alive =
        line.ends_with(" HTTP/1.1"sv) ? connection != "close" : connection == "keep-alive";
    out += keep_alive ? keep_alive_headers : close_headers;
    if (get) out += body;
    return keep_alive;
}

// A client that closes (EOF) or resets its connection ends that connection
// only; anything else is worth a line on stderr.
void report(const std::exception& e) {
    if (auto* error = dynamic_cast<const boost::system::system_error*>(&e)) {
        if (error->code() == asio::error::eof || error->code() == asio::error::connection_reset ||
            error->code() == asio::error::broken_pipe)
            return;
    }
    std::fprintf(stderr, "asio_server: connection: %s\n", e.what());
}

awaitable<void> echo(tcp::socket socket) {
    try {
        char data[65536];
        for (;;) {
            std::size_t n = co_await socket.async_read_some(asio::buffer(data), use_awaitable);
            co_await asio::async_write(socket, asio::buffer(data, n), use_awaitable);
        }
    } catch (const std::exception& e) {
        report(e);
    }
}

awaitable<void> http(tcp::socket socket) {
    try {
        std::string in, out;  // reused: no allocation per request once warm
        bool keep_alive = true;
        while (keep_alive) {
            co_await asio::async_read_until(socket, asio::dynamic_buffer(in), "\r\n\r\n",
                                            use_awaitable);
            // async_read_until may have read past the first request: answer
            // every complete one now, in one write, as pipelining expects.
            out.clear();
            std::string_view pending = in;
            std::size_t end;
            while (keep_alive && (end = pending.find("\r\n\r\n")) != std::string_view::npos) {
                keep_alive = respond(pending.substr(0, end), out);
                pending.remove_prefix(end + 4);
            }
            in.erase(0, in.size() - pending.size());
            co_await asio::async_write(socket, asio::buffer(out), use_awaitable);
        }
        socket.shutdown(tcp::socket::shutdown_send);
    } catch (const std::exception& e) {
        report(e);
    }
}

awaitable<void> listener(tcp::acceptor acceptor, bool http_mode) {
    auto executor = co_await asio::this_coro::executor;
    for (;;) {
        tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
        socket.set_option(tcp::no_delay(true));
        if (http_mode)
            asio::co_spawn(executor, http(std::move(socket)), asio::detached);
        else
            asio::co_spawn(executor, echo(std::move(socket)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    char* end = nullptr;
    long port = argc == 3 ? std::strtol(argv[2], &end, 10) : -1;
    if (argc != 3 || *end != '\0' || port < 0 || port > 65535 ||
        (std::strcmp(argv[1], "echo") != 0 && std::strcmp(argv[1], "http") != 0)) {
        std::fprintf(stderr, "usage: %s echo|http PORT   (PORT 0: any free port)\n", argv[0]);
        return 2;
    }
    const bool http_mode = std::strcmp(argv[1], "http") == 0;
    try {
        asio::io_context io_context(1);

        asio::signal_set signals(io_context, SIGINT, SIGTERM);
        signals.async_wait([&](auto, auto) { io_context.stop(); });

        // The acceptor opens with SO_REUSEADDR, as the raw servers' sockets.
        tcp::acceptor acceptor(
            io_context, {asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)});
        std::printf("Serving on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
        std::fflush(stdout);  // run.py waits for this line on a pipe

        asio::co_spawn(io_context, listener(std::move(acceptor), http_mode), asio::detached);
        io_context.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
