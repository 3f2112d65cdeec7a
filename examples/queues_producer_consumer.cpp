// The asyncio docs' Queue example: workers take "sleep for this long" jobs
// from a Queue until join() sees every job done, then are cancelled. The
// sleep times are fixed here (the docs draw them at random), 0.01 to 0.05 s,
// so the run takes about 0.2 s and the total is always 0.60 s.
//
//   async def worker(name, queue):
//       while True:
//           sleep_for = await queue.get()
//           await asyncio.sleep(sleep_for)
//           queue.task_done()
//           print(f'{name} has slept for {sleep_for:.2f} seconds')
//
//   async def main():
//       queue = asyncio.Queue()
//       total_sleep_time = 0
//       for _ in range(20):
//           sleep_for = random.uniform(0.05, 1.0)
//           total_sleep_time += sleep_for
//           queue.put_nowait(sleep_for)
//       tasks = []
//       for i in range(3):
//           task = asyncio.create_task(worker(f'worker-{i}', queue))
//           tasks.append(task)
//       started_at = time.monotonic()
//       await queue.join()
//       total_slept_for = time.monotonic() - started_at
//       for task in tasks:
//           task.cancel()
//       await asyncio.gather(*tasks, return_exceptions=True)
//       print('====')
//       print(f'3 workers slept in parallel for {total_slept_for:.2f} seconds')
//       print(f'total expected sleep time: {total_sleep_time:.2f} seconds')
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <string>
#include <vector>

asyncio::Coro<> worker(std::string name, asyncio::Queue<double>& queue) {
    for (;;) {
        const double sleep_for = co_await queue.get();
        co_await asyncio::sleep(sleep_for);
        queue.task_done();
        fmt::print("{} has slept for {:.2f} seconds\n", name, sleep_for);
    }
}

asyncio::Coro<> main_coro() {
    asyncio::Queue<double> queue;
    double total_sleep_time = 0;
    for (int i = 0; i < 20; ++i) {
        const double sleep_for = 0.01 * (1 + i % 5);
        total_sleep_time += sleep_for;
        queue.put_nowait(sleep_for);
    }
    std::vector<asyncio::Task<>> tasks;
    for (int i = 0; i < 3; ++i)
        tasks.push_back(asyncio::create_task(worker(fmt::format("worker-{}", i), queue)));

    asyncio::EventLoop& loop = asyncio::get_running_loop();
    const double started_at = loop.time();
    co_await queue.join();
    const double total_slept_for = loop.time() - started_at;

    for (asyncio::Task<>& task : tasks)
        task.cancel();
    co_await asyncio::gather(asyncio::return_exceptions, tasks);

    fmt::print("====\n");
    fmt::print("3 workers slept in parallel for {:.2f} seconds\n", total_slept_for);
    fmt::print("total expected sleep time: {:.2f} seconds\n", total_sleep_time);
}

int main() {
    asyncio::run(main_coro());
}
