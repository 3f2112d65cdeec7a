// "Running Tasks Concurrently" from the asyncio docs (asyncio.gather): three
// factorials computed concurrently, each step one second apart.
//
//   async def factorial(name, number):
//       f = 1
//       for i in range(2, number + 1):
//           print(f"Task {name}: Compute factorial({number}), currently i={i}...")
//           await asyncio.sleep(1)
//           f *= i
//       print(f"Task {name}: factorial({number}) = {f}")
//       return f
//
//   async def main():
//       L = await asyncio.gather(factorial("A", 2), factorial("B", 3), factorial("C", 4))
//       print(L)
//
//   asyncio.run(main())
#include <asyncio.hpp>
#include <chrono>
#include <string>

using namespace std::chrono_literals;

asyncio::Coro<long> factorial(std::string name, int number) {
    long f = 1;
    for (int i = 2; i <= number; ++i) {
        fmt::print("Task {}: Compute factorial({}), currently i={}...\n", name, number, i);
        co_await asyncio::sleep(1s);
        f *= i;
    }
    fmt::print("Task {}: factorial({}) = {}\n", name, number, f);
    co_return f;
}

asyncio::Coro<> main_coro() {
    auto [a, b, c] =
        co_await asyncio::gather(factorial("A", 2), factorial("B", 3), factorial("C", 4));
    fmt::print("[{}, {}, {}]\n", a, b, c);
}

int main() {
    asyncio::run(main_coro());
}
