// The ticker of PEP 525 (asynchronous generators): a generator that awaits
// between its yields, consumed with the C++ form of `async for`.
//
//   async def ticker(delay, to):
//       """Yield numbers from 0 to `to` every `delay` seconds."""
//       for i in range(to):
//           yield i
//           await asyncio.sleep(delay)
//
//   async def main():
//       async for i in ticker(0.1, 5):
//           print(i)
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <chrono>

using namespace std::chrono_literals;

/// Yields numbers from 0 to `to` every `delay`.
asyncio::AsyncGenerator<int> ticker(std::chrono::milliseconds delay, int to) {
    for (int i = 0; i < to; ++i) {
        co_yield i;
        co_await asyncio::sleep(delay);
    }
}

asyncio::Coro<> main_coro() {
    auto gen = ticker(100ms, 5);
    while (auto i = co_await gen.next())
        fmt::print("{}\n", *i);
}

int main() {
    asyncio::run(main_coro());
}
