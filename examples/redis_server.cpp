// A small Redis server, written with streams as a newcomer to asyncio would
// write it: per request, readline() and readexactly() until the command is
// whole, then write() the reply and drain(). Not from the asyncio docs. It
// speaks the Redis protocol (RESP2) well enough for redis-cli and
// redis-benchmark (`-t ping,set,get`): the commands and their replies are in
// resp.hpp, shared with the Protocol API version of the same server
// (benchmarks/net/resp_protocol.cpp). The port comes from the command line
// (0: any free port; Redis's is 6379), and the server runs until Ctrl-C or
// SIGTERM.
//
//   async def handle_client(reader, writer):
//       try:
//           while line := await reader.readline():
//               if line.startswith(b"*"):              # ["SET", "key", "value"]
//                   args = []
//                   for _ in range(int(line[1:])):
//                       length = int((await reader.readline())[1:])   # "$3"
//                       args.append((await reader.readexactly(length + 2))[:-2])
//               else:                                  # "SET key value", telnet style
//                   args = line.split()
//               if args:
//                   writer.write(db.execute(args))
//                   await writer.drain()
//       except (asyncio.IncompleteReadError, ConnectionError):
//           pass
//       writer.close()
//       await writer.wait_closed()
//
//   async def main(port):
//       server = await asyncio.start_server(handle_client, "127.0.0.1", port)
//       print(f"Serving on {server.sockets[0].getsockname()}", flush=True)
//       async with server:
//           await server.serve_forever()
//
//   asyncio.run(main(int(sys.argv[1])))
//
// Beyond that sketch, protocol errors are answered as Redis answers them
// before it closes the connection.
#include <asyncio.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "resp.hpp"

// One connection: read a command, run it, send the reply; until the client
// leaves, sends QUIT or breaks the protocol.
asyncio::Coro<> handle_client(resp::Database& db, asyncio::StreamReader reader,
                              asyncio::StreamWriter writer) {
    std::vector<std::string> args;
    std::string reply;
    std::string protocol_error;  // answered, then the connection closes
    try {
        for (;;) {
            std::string line = co_await reader.readline();
            if (!line.ends_with('\n')) break;  // EOF (with a partial line or none)
            args.clear();
            if (line.starts_with('*')) {
                // A multibulk command: "*<count>\r\n", then per argument
                // "$<length>\r\n" and the bytes followed by "\r\n".
                std::optional<long long> count = resp::line_length(line);
                if (!count || *count > resp::max_multibulk_length) {
                    protocol_error = resp::invalid_multibulk_length;
                    break;
                }
                for (long long i = 0; i < *count; ++i) {
                    std::string header = co_await reader.readline();
                    if (!header.ends_with('\n')) throw asyncio::IncompleteReadError(header, {});
                    if (!header.starts_with('$')) {
                        protocol_error = resp::expected_dollar(header[0]);
                        break;
                    }
                    std::optional<long long> length = resp::line_length(header);
                    if (!length || *length < 0 || *length > resp::max_bulk_length) {
                        protocol_error = resp::invalid_bulk_length;
                        break;
                    }
                    std::string data =
                        co_await reader.readexactly(static_cast<std::size_t>(*length) + 2);
                    data.resize(static_cast<std::size_t>(*length));  // without its "\r\n"
                    args.push_back(std::move(data));
                }
                if (!protocol_error.empty()) break;
            } else {
                // An inline command, as typed into telnet: "SET key value\r\n".
                line.pop_back();
                if (line.ends_with('\r')) line.pop_back();
                if (!resp::split_inline(line, args)) {
                    protocol_error = resp::unbalanced_quotes;
                    break;
                }
            }
            if (args.empty()) continue;  // an empty line, or "*0"

            reply.clear();
            const bool keep_open = db.execute(args, reply);
            writer.write(reply);
            co_await writer.drain();
            if (!keep_open) break;  // QUIT
        }
    } catch (const asyncio::IncompleteReadError&) {
        // The client left in the middle of a command.
    } catch (const std::invalid_argument&) {
        // readline(): a line longer than the reader's limit (64 KiB).
        protocol_error = resp::too_big_inline;
    } catch (const std::system_error&) {
        // A reset by the client ends this connection only.
    }
    try {
        if (!protocol_error.empty()) {
            reply.clear();
            resp::error(reply, protocol_error);
            writer.write(reply);
            co_await writer.drain();
        }
        writer.close();
        co_await writer.wait_closed();
    } catch (const std::system_error&) {
    }
}

asyncio::Coro<> main_coro(int port) {
    resp::Database db;  // every connection's: the loop runs one at a time
    auto client_connected = [&db](asyncio::StreamReader reader, asyncio::StreamWriter writer) {
        return handle_client(db, std::move(reader), std::move(writer));
    };
    asyncio::Server server = co_await asyncio::start_server(client_connected, "127.0.0.1", port);

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
    asyncio::run(main_coro(argc > 1 ? std::atoi(argv[1]) : 6379));
}
