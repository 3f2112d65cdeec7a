// "Future with run_until_complete()" from the asyncio docs: a coroutine sets
// a future's result; the loop runs until the future is done.
//
//   async def slow_operation(future):
//       await asyncio.sleep(1)
//       future.set_result('Future is done!')
//
//   loop = asyncio.new_event_loop()
//   future = loop.create_future()
//   loop.create_task(slow_operation(future))
//   loop.run_until_complete(future)
//   print(future.result())
//   loop.close()
#include <asyncio.hpp>
#include <string>

asyncio::Coro<> slow_operation(asyncio::Future<std::string> future) {
    co_await asyncio::sleep(1.0);
    future.set_result("Future is done!");
}

int main() {
    auto loop = asyncio::new_event_loop();
    auto future = loop->create_future<std::string>();
    loop->create_task(slow_operation(future));
    loop->run_until_complete(future);
    fmt::print("{}\n", future.result());
    loop->close();
}
