// Register an open socket to wait for data using streams, from the asyncio
// docs (Streams). socket.socketpair() is asyncio::socketpair().
//
//   async def wait_for_data():
//       # Get a reference to the current event loop because
//       # we want to access low-level APIs.
//       loop = asyncio.get_running_loop()
//
//       # Create a pair of connected sockets.
//       rsock, wsock = socket.socketpair()
//
//       # Register the open socket to wait for data.
//       reader, writer = await asyncio.open_connection(sock=rsock)
//
//       # Simulate the reception of data from the network
//       loop.call_soon(wsock.send, 'abc'.encode())
//
//       # Wait for data
//       data = await reader.read(100)
//
//       # Got data, we are done: close the socket
//       print("Received:", data.decode())
//       writer.close()
//       await writer.wait_closed()
//
//       # Close the second socket
//       wsock.close()
//
//   asyncio.run(wait_for_data())
#include <asyncio.hpp>
#include <string>

asyncio::Coro<> wait_for_data() {
    // Get a reference to the current event loop because we want to access
    // low-level APIs.
    asyncio::EventLoop& loop = asyncio::get_running_loop();

    // Create a pair of connected sockets.
    auto [first, second] = asyncio::socketpair();
    asyncio::Socket rsock = std::move(first);
    asyncio::Socket wsock = std::move(second);

    // Register the open socket to wait for data.
    auto [reader, writer] = co_await asyncio::open_connection(std::move(rsock));

    // Simulate the reception of data from the network
    loop.call_soon([&wsock] { ::send(wsock.fileno(), "abc", 3, 0); });

    // Wait for data
    std::string data = co_await reader.read(100);

    // Got data, we are done: close the socket
    fmt::print("Received: {}\n", data);
    writer.close();
    co_await writer.wait_closed();

    // Close the second socket
    wsock.close();
}

int main() {
    asyncio::run(wait_for_data());
}
