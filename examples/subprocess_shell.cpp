// "Subprocesses" from the asyncio docs: run shell commands, several at once
// with gather, and print their exit status and output.
//
//   async def run(cmd):
//       proc = await asyncio.create_subprocess_shell(
//           cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//       stdout, stderr = await proc.communicate()
//       print(f"[{cmd!r} exited with {proc.returncode}]")
//       if stdout:
//           print(f"[stdout]\n{stdout.decode()}")
//       if stderr:
//           print(f"[stderr]\n{stderr.decode()}")
//
//   async def main():
//       await asyncio.gather(
//           run("ls /zzz"),
//           run("sleep 0.2; echo 'hello'"))
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <string>

asyncio::Coro<void> run(std::string cmd) {
    asyncio::Process proc = co_await asyncio::create_subprocess_shell(
        cmd, {.stdout_ = asyncio::PIPE, .stderr_ = asyncio::PIPE});

    auto [out, err] = co_await proc.communicate();

    fmt::print("['{}' exited with {}]\n", cmd, *proc.returncode());
    if (!out.empty()) fmt::print("[stdout]\n{}\n", out);
    if (!err.empty()) fmt::print("[stderr]\n{}\n", err);
}

asyncio::Coro<void> main_coro() {
    co_await asyncio::gather(run("ls /zzz"), run("sleep 0.2; echo 'hello'"));
}

int main() {
    asyncio::run(main_coro());
}
