// A Semaphore as a rate limiter: ten "downloads" start at once, but at most
// three run at any time. The others wait their turn in the order they
// arrived, so they always start in order 0 to 9, whatever their durations.
//
//   async def fetch(i, limit, stats):
//       async with limit:
//           stats.active += 1
//           stats.max_active = max(stats.max_active, stats.active)
//           print(f'fetch {i} started')
//           await asyncio.sleep(0.02 * (1 + i % 3))
//           stats.active -= 1
//
//   async def main():
//       limit = asyncio.Semaphore(3)
//       stats = Stats()
//       await asyncio.gather(*(fetch(i, limit, stats) for i in range(10)))
//       print(f'max concurrency observed: {stats.max_active} (limit 3)')
//
//   asyncio.run(main())
#include <algorithm>
#include <asyncio.hpp>
#include <vector>

struct Stats {
    int active = 0;
    int max_active = 0;
};

asyncio::Coro<> fetch(int i, asyncio::Semaphore& limit, Stats& stats) {
    auto slot = co_await limit;  // async with limit:
    stats.active += 1;
    stats.max_active = std::max(stats.max_active, stats.active);
    fmt::print("fetch {} started\n", i);
    co_await asyncio::sleep(0.02 * (1 + i % 3));
    stats.active -= 1;
}

asyncio::Coro<> main_coro() {
    asyncio::Semaphore limit(3);
    Stats stats;
    std::vector<asyncio::Task<>> fetches;
    for (int i = 0; i < 10; ++i)
        fetches.push_back(asyncio::create_task(fetch(i, limit, stats)));
    co_await asyncio::gather(fetches);
    fmt::print("max concurrency observed: {} (limit 3)\n", stats.max_active);
}

int main() {
    asyncio::run(main_coro());
}
