// "Hello World with call_soon()" from the asyncio docs (Event Loop examples).
//
//   def hello_world(loop):
//       print('Hello World')
//       loop.stop()
//
//   loop = asyncio.new_event_loop()
//   loop.call_soon(hello_world, loop)
//   try:
//       loop.run_forever()
//   finally:
//       loop.close()
#include <asyncio.hpp>

void hello_world(asyncio::EventLoop& loop) {
    fmt::print("Hello World\n");
    loop.stop();
}

int main() {
    auto loop = asyncio::new_event_loop();
    loop->call_soon([&] { hello_world(*loop); });
    loop->run_forever();
    loop->close();
}
