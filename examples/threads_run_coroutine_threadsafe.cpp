// asyncio.run_coroutine_threadsafe from the asyncio docs ("Scheduling From
// Other Threads"): an event loop runs in its own thread; another thread
// submits a coroutine to it and waits for the result.
//
//   loop = asyncio.new_event_loop()
//   threading.Thread(target=loop.run_forever).start()
//
//   # Create a coroutine
//   coro = asyncio.sleep(1, result=3)
//
//   # Submit the coroutine to a given loop
//   future = asyncio.run_coroutine_threadsafe(coro, loop)
//
//   # Wait for the result with an optional timeout argument
//   assert future.result(timeout) == 3
//
//   loop.call_soon_threadsafe(loop.stop)
#include <asyncio.hpp>
#include <chrono>
#include <future>
#include <thread>

using namespace std::chrono_literals;

asyncio::Coro<std::thread::id> where_am_i() {
    co_return std::this_thread::get_id();
}

int main() {
    auto loop = asyncio::new_event_loop();
    std::thread loop_thread([&] { loop->run_forever(); });

    // Submit the coroutine to the loop, from this (another) thread.
    std::future<int> future = asyncio::run_coroutine_threadsafe(asyncio::sleep(100ms, 3), *loop);
    // Wait for the result (std::future::wait_for gives the optional timeout).
    if (future.wait_for(10s) != std::future_status::ready) return 1;
    fmt::print("result: {}\n", future.get());

    const std::thread::id ran_on = asyncio::run_coroutine_threadsafe(where_am_i(), *loop).get();
    fmt::print("ran on the loop's thread: {}\n", ran_on == loop_thread.get_id());

    loop->call_soon_threadsafe([&] { loop->stop(); });
    loop_thread.join();
    loop->close();
}
