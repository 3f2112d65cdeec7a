// A small parallel command runner: runs each argument as a shell command,
// at most JOBS (default 4) at a time, then prints each command's exit status
// and output in the order given. Exits with the number of commands that
// failed. asyncio's building blocks: create_subprocess_shell, a Semaphore
// for the limit, and gather for the results in order.
//
//   async def run(cmd, limit):
//       async with limit:
//           proc = await asyncio.create_subprocess_shell(
//               cmd, stdout=PIPE, stderr=STDOUT)
//           out, _ = await proc.communicate()
//           return proc.returncode, out.decode()
//
//   async def main(commands, jobs):
//       limit = asyncio.Semaphore(jobs)
//       results = await asyncio.gather(*(run(c, limit) for c in commands))
//       for cmd, (code, out) in zip(commands, results):
//           print(f"$ {cmd} [exit {code}]")
//           print(out, end="")
//       return sum(code != 0 for code, _ in results)
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <asyncio.hpp>

struct Result {
    int code;
    std::string output;
};

asyncio::Coro<Result> run(std::string cmd, asyncio::Semaphore& limit) {
    auto slot = co_await limit;  // async with limit
    asyncio::Process proc = co_await asyncio::create_subprocess_shell(
        cmd, {.stdout_ = asyncio::PIPE, .stderr_ = asyncio::STDOUT});
    auto [out, err] = co_await proc.communicate();
    co_return Result{*proc.returncode(), std::move(out)};
}

asyncio::Coro<int> main_coro(std::vector<std::string> commands, std::size_t jobs) {
    asyncio::Semaphore limit(jobs);
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    std::vector<asyncio::Task<Result>> tasks;
    for (const std::string& cmd : commands)
        tasks.push_back(loop.create_task(run(cmd, limit)));
    int failed = 0;
    for (std::size_t i = 0; i < commands.size(); ++i) {
        Result result = co_await tasks[i];
        fmt::print("$ {} [exit {}]\n{}", commands[i], result.code, result.output);
        if (result.code != 0) ++failed;
    }
    co_return failed;
}

int main(int argc, char** argv) {
    std::size_t jobs = 4;
    if (const char* env = std::getenv("JOBS")) jobs = std::strtoul(env, nullptr, 10);
    std::vector<std::string> commands(argv + 1, argv + argc);
    return asyncio::run(main_coro(std::move(commands), jobs == 0 ? 1 : jobs));
}
