// A minimal HTTP/1.1 server answering "Hello, World!" to every GET (and the
// headers alone to HEAD), with keep-alive and pipelining: the benchmarks'
// HTTP workload. Not from the asyncio docs; this is the same server written
// with asyncio in Python. The port comes from the command line (0: any free
// port), and the server runs until Ctrl-C or SIGTERM. Given a certificate
// chain and its key after the port, it serves HTTPS instead.
//
//   BODY = b"Hello, World!"
//   KEEP_ALIVE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n"
//   CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
//            b"Connection: close\r\n\r\n")
//   NOT_ALLOWED = (b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
//                  b"Connection: close\r\n\r\n")
//
//   class HelloProtocol(asyncio.Protocol):
//       def connection_made(self, transport):
//           self.transport = transport
//           self.buffer = b""
//
//       def data_received(self, data):
//           self.buffer += data
//           out, keep_alive = [], True
//           while keep_alive and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
//               request, self.buffer = self.buffer[:end], self.buffer[end + 4:]
//               keep_alive = respond(request, out)
//           self.transport.write(b"".join(out))
//           if not keep_alive:
//               self.transport.close()
//
//   def respond(request, out):
//       line, *headers = request.split(b"\r\n")
//       method, _, version = line.split(b" ")
//       if method not in (b"GET", b"HEAD"):
//           out.append(NOT_ALLOWED)
//           return False
//       connection = b""
//       for header in headers:
//           name, _, value = header.partition(b":")
//           if name.lower() == b"connection":
//               connection = value.strip().lower()
//       if version == b"HTTP/1.1":
//           keep_alive = connection != b"close"
//       else:
//           keep_alive = connection == b"keep-alive"
//       out.append(KEEP_ALIVE if keep_alive else CLOSE)
//       if method == b"GET":
//           out.append(BODY)
//       return keep_alive
//
//   async def main(port, certfile=None, keyfile=None):
//       ssl_ctx = None
//       if certfile:
//           ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
//           ssl_ctx.load_cert_chain(certfile, keyfile)
//       loop = asyncio.get_running_loop()
//       server = await loop.create_server(HelloProtocol, "127.0.0.1", port, ssl=ssl_ctx)
//       print(f"Serving on {server.sockets[0].getsockname()}", flush=True)
//       async with server:
//           await server.serve_forever()
//
//   asyncio.run(main(int(sys.argv[1]), *sys.argv[2:4]))
#include <asyncio.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

using namespace std::string_view_literals;

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

// Appends the response to `request` (its head, without the blank line) to
// `out`; returns whether the connection stays open.
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

class HelloProtocol : public asyncio::Protocol {
  public:
    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override {
        buffer_.append(data);
        std::string_view pending = buffer_;
        out_.clear();
        bool keep_alive = true;
        std::size_t end;
        while (keep_alive && (end = pending.find("\r\n\r\n")) != std::string_view::npos) {
            keep_alive = respond(pending.substr(0, end), out_);
            pending.remove_prefix(end + 4);
        }
        buffer_.erase(0, buffer_.size() - pending.size());
        // Pipelined requests get their responses in one write.
        if (!out_.empty()) transport_->write(out_);
        if (!keep_alive) transport_->close();
    }

  private:
    asyncio::Transport* transport_ = nullptr;
    std::string buffer_, out_;  // reused: no allocation per request once warm
};

asyncio::Coro<> main_coro(int port, std::optional<std::string> certfile,
                          std::optional<std::string> keyfile) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();

    // ssl= is all HTTPS takes: the protocol sees the same bytes, decrypted.
    asyncio::ServerOptions options;
    if (certfile) {
        options.ssl = asyncio::SSLContext::create_default_context(asyncio::Purpose::CLIENT_AUTH);
        options.ssl->load_cert_chain(*certfile, keyfile);
    }
    auto factory = [] { return std::make_shared<HelloProtocol>(); };
    asyncio::Server server = co_await loop.create_server(factory, "127.0.0.1", port, options);

    fmt::print("Serving on {}\n", server.sockets().front());
    std::fflush(stdout);  // for a script that waits for this line

    // async with server: await server.serve_forever(), until SIGTERM or
    // SIGINT (Ctrl-C) arrives, so that the server closes and main returns 0.
    asyncio::Future<> stop = loop.create_future();
    for (int sig : {SIGTERM, SIGINT}) {
        loop.add_signal_handler(sig, [stop]() mutable {
            if (!stop.done()) stop.set_result();
        });
    }
    co_await stop;
    server.close();
    co_await server.wait_closed();
}

int main(int argc, char** argv) {
    if (argc != 1 && argc != 2 && argc != 4) {
        fmt::print(stderr, "usage: {} [PORT [CERTFILE KEYFILE]]\n", argv[0]);
        return 2;
    }
    std::optional<std::string> certfile, keyfile;
    if (argc == 4) {
        certfile = argv[2];
        keyfile = argv[3];
    }
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 8080, certfile, keyfile));
}
