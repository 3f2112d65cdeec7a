// "loop.subprocess_exec() and SubprocessProtocol" from the asyncio docs: the
// date from a child process, read through a transport and a protocol. The
// child is `date` rather than a Python one-liner.
//
//   class DateProtocol(asyncio.SubprocessProtocol):
//       def __init__(self, exit_future):
//           self.exit_future = exit_future
//           self.output = bytearray()
//           self.pipe_closed = False
//           self.exited = False
//       def pipe_connection_lost(self, fd, exc):
//           self.pipe_closed = True
//           self.check_for_exit()
//       def pipe_data_received(self, fd, data):
//           self.output.extend(data)
//       def process_exited(self):
//           self.exited = True
//           # process_exited() can be called before pipe_connection_lost():
//           # wait until both are called.
//           self.check_for_exit()
//       def check_for_exit(self):
//           if self.pipe_closed and self.exited:
//               self.exit_future.set_result(True)
//
//   async def get_date():
//       loop = asyncio.get_running_loop()
//       exit_future = asyncio.Future(loop=loop)
//       transport, protocol = await loop.subprocess_exec(
//           lambda: DateProtocol(exit_future),
//           "date", "+%Y-%m-%d", stdin=None, stderr=None)
//       await exit_future
//       transport.close()
//       data = bytes(protocol.output)
//       return data.decode("ascii").rstrip()
//
//   date = asyncio.run(get_date())
//   print(f"Current date: {date}")
#include <asyncio.hpp>
#include <memory>
#include <string>

class DateProtocol : public asyncio::SubprocessProtocol {
  public:
    explicit DateProtocol(asyncio::Future<bool> exit_future) : exit_future_(exit_future) {}

    void pipe_connection_lost(int, std::exception_ptr) override {
        pipe_closed_ = true;
        check_for_exit();
    }
    void pipe_data_received(int, std::string_view data) override { output += data; }
    void process_exited() override {
        exited_ = true;
        // process_exited() can be called before pipe_connection_lost():
        // wait until both are called.
        check_for_exit();
    }

    std::string output;

  private:
    void check_for_exit() {
        if (pipe_closed_ && exited_) exit_future_.set_result(true);
    }

    asyncio::Future<bool> exit_future_;
    bool pipe_closed_ = false;
    bool exited_ = false;
};

asyncio::Coro<std::string> get_date() {
    // A reference to the event loop, as we use low-level APIs.
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Future<bool> exit_future = loop.create_future<bool>();

    // The child's stdout goes into a pipe; stdin and stderr are inherited.
    // Both are held here: the transport and protocol pointers are valid
    // only until connection_lost, which may run before exit_future wakes us.
    auto protocol = std::make_shared<DateProtocol>(exit_future);
    auto factory = [protocol] { return protocol; };
    std::vector<std::string> args{"+%Y-%m-%d"};
    auto [transport, made] = co_await loop.subprocess_exec(
        factory, "date", args, asyncio::SubprocessOptions{.stdout_ = asyncio::PIPE});
    std::shared_ptr<asyncio::BaseTransport> held = transport->shared_from_this();

    // Wait for the child's exit through the protocol's process_exited().
    co_await exit_future;

    // Close the stdout pipe.
    held->close();

    // The output that pipe_data_received() collected.
    std::string data = protocol->output;
    while (!data.empty() && data.back() == '\n')
        data.pop_back();
    co_return data;
}

int main() {
    const std::string date = asyncio::run(get_date());
    fmt::print("Current date: {}\n", date);
}
