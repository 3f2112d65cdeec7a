// "Chain coroutines" from the asyncio docs: one coroutine awaits another.
//
//   async def compute(x, y):
//       print("Compute %s + %s ..." % (x, y))
//       await asyncio.sleep(1.0)
//       return x + y
//
//   async def print_sum(x, y):
//       result = await compute(x, y)
//       print("%s + %s = %s" % (x, y, result))
//
//   loop = asyncio.new_event_loop()
//   loop.run_until_complete(print_sum(1, 2))
//   loop.close()
#include <asyncio.hpp>

asyncio::Coro<int> compute(int x, int y) {
    fmt::print("Compute {} + {} ...\n", x, y);
    co_await asyncio::sleep(1.0);
    co_return x + y;
}

asyncio::Coro<> print_sum(int x, int y) {
    int result = co_await compute(x, y);
    fmt::print("{} + {} = {}\n", x, y, result);
}

int main() {
    auto loop = asyncio::new_event_loop();
    loop->run_until_complete(print_sum(1, 2));
    loop->close();
}
