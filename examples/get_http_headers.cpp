// Get HTTP headers, from the asyncio docs (Streams): sends a HEAD request to
// the URL given on the command line and prints the response's headers. The
// docs always connect to port 80 or 443; this port takes the URL's port when
// it has one. An https:// server's certificate is checked against the
// system's trust store, or against the CA file in the environment variable
// SSL_CERT_FILE: OpenSSL reads it, for Python's ssl module as for this.
//
//   async def print_http_headers(url):
//       url = urllib.parse.urlsplit(url)
//       if url.scheme == 'https':
//           reader, writer = await asyncio.open_connection(
//               url.hostname, 443, ssl=True)
//       else:
//           reader, writer = await asyncio.open_connection(
//               url.hostname, 80)
//
//       query = (
//           f"HEAD {url.path or '/'} HTTP/1.0\r\n"
//           f"Host: {url.hostname}\r\n"
//           f"\r\n"
//       )
//
//       writer.write(query.encode('latin-1'))
//       while True:
//           line = await reader.readline()
//           if not line:
//               break
//
//           line = line.decode('latin1').rstrip()
//           if line:
//               print(f'HTTP header> {line}')
//
//       # Ignore the body, close the socket
//       writer.close()
//       await writer.wait_closed()
//
//   url = sys.argv[1]
//   asyncio.run(print_http_headers(url))
#include <asyncio.hpp>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

// The parts of urllib.parse.urlsplit that the example uses.
struct SplitUrl {
    std::string scheme, hostname, path;
    int port = 0;
};

SplitUrl urlsplit(std::string_view url) {
    SplitUrl split;
    std::size_t colon = url.find("://");
    if (colon == std::string_view::npos) throw std::invalid_argument("not a URL");
    split.scheme = url.substr(0, colon);
    url.remove_prefix(colon + 3);
    std::string_view netloc = url.substr(0, url.find('/'));
    split.path = url.substr(netloc.size());
    std::size_t port = netloc.rfind(':');
    if (port != std::string_view::npos && netloc.find(']', port) == std::string_view::npos) {
        split.port = std::stoi(std::string(netloc.substr(port + 1)));
        netloc = netloc.substr(0, port);
    }
    if (netloc.starts_with('[')) netloc = netloc.substr(1, netloc.size() - 2);
    split.hostname = netloc;
    return split;
}

asyncio::Coro<> print_http_headers(std::string url_text) {
    SplitUrl url = urlsplit(url_text);
    // ssl=True: the default context, checking the certificate against the
    // hostname (server_hostname defaults to the host).
    asyncio::OpenOptions open;
    int port = 80;
    if (url.scheme == "https") {
        open.ssl = asyncio::SSLContext::create_default_context();
        port = 443;
    } else if (url.scheme != "http") {
        throw std::invalid_argument(url.scheme + ": only http:// and https:// URLs");
    }
    auto [reader, writer] =
        co_await asyncio::open_connection(url.hostname, url.port ? url.port : port, open);

    std::string query = fmt::format("HEAD {} HTTP/1.0\r\nHost: {}\r\n\r\n",
                                    url.path.empty() ? "/" : url.path, url.hostname);

    writer.write(query);
    for (;;) {
        std::string line = co_await reader.readline();
        if (line.empty()) break;

        line.erase(line.find_last_not_of(" \t\r\n") + 1);
        if (!line.empty()) fmt::print("HTTP header> {}\n", line);
    }

    // Ignore the body, close the socket
    writer.close();
    co_await writer.wait_closed();
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fmt::print(stderr, "usage: {} http[s]://host[:port]/path\n", argv[0]);
        return 2;
    }
    asyncio::run(print_http_headers(argv[1]));
}
