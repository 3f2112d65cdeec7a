// "Hello World" coroutine from the asyncio docs (Coroutines and Tasks).
//
//   async def main():
//       print('Hello ...')
//       await asyncio.sleep(1)
//       print('... World!')
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <chrono>

using namespace std::chrono_literals;

asyncio::Coro<> main_coro() {
    fmt::print("Hello ...\n");
    co_await asyncio::sleep(1s);
    fmt::print("... World!\n");
}

int main() {
    asyncio::run(main_coro());
}
