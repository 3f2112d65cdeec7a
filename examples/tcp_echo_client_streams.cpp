// TCP echo client using streams, from the asyncio docs (Streams). The server's
// port comes from the command line (the docs use 8888).
//
//   async def tcp_echo_client(message):
//       reader, writer = await asyncio.open_connection(
//           '127.0.0.1', 8888)
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
//   asyncio.run(tcp_echo_client('Hello World!'))
#include <asyncio.hpp>
#include <cstdlib>
#include <string>

asyncio::Coro<> tcp_echo_client(std::string message, int port) {
    auto [reader, writer] = co_await asyncio::open_connection("127.0.0.1", port);

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
    asyncio::run(tcp_echo_client("Hello World!", argc > 1 ? std::atoi(argv[1]) : 8888));
}
