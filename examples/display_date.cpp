// "Display the current date with call_later()" from the asyncio docs: prints
// the date every second for five seconds.
//
//   def display_date(end_time, loop):
//       print(datetime.datetime.now())
//       if (loop.time() + 1.0) < end_time:
//           loop.call_later(1, display_date, end_time, loop)
//       else:
//           loop.stop()
//
//   loop = asyncio.new_event_loop()
//   end_time = loop.time() + 5.0
//   loop.call_soon(display_date, end_time, loop)
//   try:
//       loop.run_forever()
//   finally:
//       loop.close()
#include <fmt/chrono.h>

#include <asyncio.hpp>
#include <chrono>

void display_date(double end_time, asyncio::EventLoop& loop) {
    const auto now = std::chrono::system_clock::now();
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
        1'000'000;
    fmt::print("{:%Y-%m-%d %H:%M:%S}.{:06d}\n",
               fmt::localtime(std::chrono::system_clock::to_time_t(now)), micros);
    if (loop.time() + 1.0 < end_time) {
        loop.call_later(1.0, [end_time, &loop] { display_date(end_time, loop); });
    } else {
        loop.stop();
    }
}

int main() {
    auto loop = asyncio::new_event_loop();
    const double end_time = loop->time() + 5.0;
    loop->call_soon([&] { display_date(end_time, *loop); });
    loop->run_forever();
    loop->close();
}
