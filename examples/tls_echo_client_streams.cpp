// TCP echo client using streams, from the asyncio docs (Streams), over TLS:
// tcp_echo_client_streams with ssl= given to open_connection. The server's
// port and the CA that signed its certificate come from the command line;
// the certificate must be for "localhost".
//
//   async def tcp_echo_client(message, port, cafile):
//       ssl_ctx = ssl.create_default_context(cafile=cafile)
//       reader, writer = await asyncio.open_connection(
//           '127.0.0.1', port, ssl=ssl_ctx, server_hostname='localhost')
//
//       print(f'Send: {message!r}')
//       writer.write(message.encode())
//       await writer.drain()
//
//       data = await reader.read(100)
//       print(f'Received: {data.decode()!r}')
//
//       print('Close the connection')
//       writer.close()
//       await writer.wait_closed()
//
//   asyncio.run(tcp_echo_client('Hello World!', int(sys.argv[1]), sys.argv[2]))
#include <asyncio.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

asyncio::Coro<> tcp_echo_client(std::string message, int port, std::string cafile) {
    // Python's create_default_context(cafile=...): this one takes no file.
    auto ssl_ctx = asyncio::SSLContext::create_default_context();
    ssl_ctx.load_verify_locations(cafile);
    // The address is 127.0.0.1, but the certificate is checked against the
    // name given here. Named, not braced inside the co_await (GCC 12).
    asyncio::OpenOptions open{.ssl = ssl_ctx, .server_hostname = "localhost"};
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port, open);

    fmt::print("Send: {:?}\n", message);
    writer.write(message);
    co_await writer.drain();

    std::string data = co_await reader.read(100);
    fmt::print("Received: {:?}\n", data);

    fmt::print("Close the connection\n");
    writer.close();
    co_await writer.wait_closed();
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fmt::print(stderr, "usage: {} PORT CAFILE\n", argv[0]);
        return 2;
    }
    asyncio::run(tcp_echo_client("Hello World!", std::atoi(argv[1]), argv[2]));
}
