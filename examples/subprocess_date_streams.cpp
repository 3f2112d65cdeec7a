// "Subprocesses" from the asyncio docs, the date example: one line of a
// child's output through create_subprocess_exec and a StreamReader. The
// child is `date` rather than a Python one-liner.
//
//   async def get_date():
//       # Create the subprocess; redirect the standard output into a pipe.
//       proc = await asyncio.create_subprocess_exec(
//           "date", "+%Y-%m-%d", stdout=asyncio.subprocess.PIPE)
//       # Read one line of output.
//       data = await proc.stdout.readline()
//       line = data.decode("ascii").rstrip()
//       # Wait for the subprocess exit.
//       await proc.wait()
//       return line
//
//   date = asyncio.run(get_date())
//   print(f"Current date: {date}")
#include <asyncio.hpp>
#include <string>
#include <vector>

asyncio::Coro<std::string> get_date() {
    // Create the subprocess; redirect the standard output into a pipe.
    // The arguments are named, not a braced list in the co_await: GCC 12
    // rejects that (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=103871).
    std::vector<std::string> args{"+%Y-%m-%d"};
    asyncio::Process proc =
        co_await asyncio::create_subprocess_exec("date", args, {.stdout_ = asyncio::PIPE});

    // Read one line of output.
    std::string line = co_await proc.stdout_->readline();
    while (!line.empty() && line.back() == '\n')
        line.pop_back();

    // Wait for the subprocess exit.
    co_await proc.wait();
    co_return line;
}

int main() {
    const std::string date = asyncio::run(get_date());
    fmt::print("Current date: {}\n", date);
}
