// "Executing code in thread or process pools" from the asyncio docs
// (loop.run_in_executor), the thread-pool part: blocking work runs in the
// loop's default executor and in a ThreadPoolExecutor of our own, while
// the event loop stays free.
//
//   def blocking_io():
//       # File operations (such as logging) can block the
//       # event loop: run them in a thread pool.
//       with open('/dev/urandom', 'rb') as f:
//           return f.read(100)
//
//   def cpu_bound():
//       return sum(i * i for i in range(10 ** 6))
//
//   async def main():
//       loop = asyncio.get_running_loop()
//
//       # 1. Run in the default loop's executor:
//       result = await loop.run_in_executor(None, blocking_io)
//       print('default thread pool', result)
//
//       # 2. Run in a custom thread pool:
//       with concurrent.futures.ThreadPoolExecutor() as pool:
//           result = await loop.run_in_executor(pool, blocking_io)
//           print('custom thread pool', result)
//           result = await loop.run_in_executor(pool, cpu_bound)
//           print('custom thread pool', result)
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <cstdint>
#include <fstream>
#include <string>

std::string blocking_io() {
    // File operations (such as logging) can block the event loop: run them
    // in a thread pool.
    std::ifstream f("/dev/urandom", std::ios::binary);
    std::string data(100, '\0');
    f.read(data.data(), static_cast<std::streamsize>(data.size()));
    data.resize(static_cast<std::size_t>(f.gcount()));
    return data;
}

std::int64_t cpu_bound() {
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < 1'000'000; ++i)
        sum += i * i;
    return sum;
}

asyncio::Coro<> main_coro() {
    auto& loop = asyncio::get_running_loop();

    // 1. Run in the default loop's executor:
    std::string bytes = co_await loop.run_in_executor(nullptr, blocking_io);
    fmt::print("default thread pool: read {} bytes\n", bytes.size());

    // 2. Run in a custom thread pool (its destructor waits for its threads):
    {
        asyncio::ThreadPoolExecutor pool;
        bytes = co_await loop.run_in_executor(&pool, blocking_io);
        fmt::print("custom thread pool: read {} bytes\n", bytes.size());
        const std::int64_t sum = co_await loop.run_in_executor(&pool, cpu_bound);
        fmt::print("custom thread pool: {}\n", sum);
    }
}

int main() {
    asyncio::run(main_coro());
}
