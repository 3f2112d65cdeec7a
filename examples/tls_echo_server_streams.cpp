// TCP echo server using streams, from the asyncio docs (Streams), over TLS:
// tcp_echo_server_streams with ssl= given to start_server. The port, the
// certificate chain and its key come from the command line (port 0: any
// free port), and the server runs until Ctrl-C or SIGTERM.
//
//   async def handle_echo(reader, writer):
//       data = await reader.read(100)
//       message = data.decode()
//       addr = writer.get_extra_info('peername')
//
//       print(f"Received {message!r} from {addr!r}")
//
//       print(f"Send: {message!r}")
//       writer.write(data)
//       await writer.drain()
//
//       print("Close the connection")
//       writer.close()
//       await writer.wait_closed()
//
//   async def main(port, certfile, keyfile):
//       ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
//       ssl_ctx.load_cert_chain(certfile, keyfile)
//       server = await asyncio.start_server(
//           handle_echo, '127.0.0.1', port, ssl=ssl_ctx)
//
//       addrs = ', '.join(str(sock.getsockname()) for sock in server.sockets)
//       print(f'Serving on {addrs}')
//
//       async with server:
//           await server.serve_forever()
//
//   asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
#include <asyncio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

asyncio::Coro<> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    std::string data = co_await reader.read(100);
    std::optional<asyncio::Address> addr = writer.peername();

    fmt::print("Received {:?} from {}\n", data, *addr);

    fmt::print("Send: {:?}\n", data);
    writer.write(data);
    co_await writer.drain();

    fmt::print("Close the connection\n");
    writer.close();
    // With TLS this also waits for the client's close_notify.
    co_await writer.wait_closed();
}

asyncio::Coro<> main_coro(int port, std::string certfile, std::string keyfile) {
    auto ssl_ctx = asyncio::SSLContext::create_default_context(asyncio::Purpose::CLIENT_AUTH);
    ssl_ctx.load_cert_chain(certfile, keyfile);
    // Named, not braced inside the co_await: GCC 12 would destroy the
    // temporary's context twice (PR 100611).
    asyncio::StartOptions start{.ssl = ssl_ctx};
    asyncio::Server server = co_await asyncio::start_server(handle_echo, "127.0.0.1", port, start);

    fmt::print("Serving on {}\n", server.sockets().front());
    std::fflush(stdout);  // for a script that waits for this line

    // async with server: await server.serve_forever(), until SIGTERM or
    // SIGINT (Ctrl-C) arrives, so that the server closes and main returns 0.
    asyncio::EventLoop& loop = asyncio::get_running_loop();
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
    if (argc != 4) {
        fmt::print(stderr, "usage: {} PORT CERTFILE KEYFILE\n", argv[0]);
        return 2;
    }
    asyncio::run(main_coro(std::atoi(argv[1]), argv[2], argv[3]));
}
