// subprocess.py: SubprocessStreamProtocol, Process and the
// create_subprocess_* functions, over the transport of transport.cpp.
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "asyncio/outcome.hpp"
#include "asyncio/subprocess.hpp"
#include "transport.hpp"

namespace asyncio {
namespace detail {

/// subprocess.SubprocessStreamProtocol: a StreamReader for the child's
/// stdout and stderr, a StreamWriter for its stdin, and the transport closed
/// once the child exited and both readers reached their end.
class SubprocessStreamProtocol final : public SubprocessProtocol {
  public:
    explicit SubprocessStreamProtocol(std::size_t limit) : limit_(limit) {}

    void connection_made(BaseTransport& transport) override {
        auto& process = dynamic_cast<SubprocessTransport&>(transport);
        transport_ = std::dynamic_pointer_cast<SubprocessTransport>(transport.shared_from_this());
        for (int fd : {1, 2}) {
            BaseTransport* pipe = process.get_pipe_transport(fd);
            if (pipe == nullptr) continue;
            StreamReader reader(limit_);
            reader.set_transport(library_key, pipe->shared_from_this());
            (fd == 1 ? stdout_ : stderr_) = std::move(reader);
            pipe_fds_.push_back(fd);
        }
        if (BaseTransport* pipe = process.get_pipe_transport(0)) {
            // It tracks stdin's flow control for drain() and its closing
            // for wait_closed(), as FlowControlMixin and _stdin_closed do.
            stdin_protocol_ = std::make_shared<StreamReaderProtocol>(std::nullopt);
            stdin_.emplace(library_key,
                           std::dynamic_pointer_cast<Transport>(pipe->shared_from_this()),
                           stdin_protocol_, std::nullopt);
        }
    }

    void pipe_data_received(int fd, std::string_view data) override {
        if (StreamReader* reader = reader_of(fd)) reader->feed_data(data);
    }

    void pipe_connection_lost(int fd, std::exception_ptr error) override {
        if (fd == 0) {
            if (stdin_) stdin_->close();
            if (stdin_protocol_) stdin_protocol_->connection_lost(error);
            return;
        }
        if (StreamReader* reader = reader_of(fd)) {
            if (error) {
                reader->set_exception(error);
            } else {
                reader->feed_eof();
            }
        }
        std::erase(pipe_fds_, fd);
        maybe_close_transport();
    }

    void process_exited() override {
        process_exited_ = true;
        maybe_close_transport();
    }

    void pause_writing() override {
        if (stdin_protocol_) stdin_protocol_->pause_writing();
    }
    void resume_writing() override {
        if (stdin_protocol_) stdin_protocol_->resume_writing();
    }
    void connection_lost(std::exception_ptr error) override {
        if (stdin_protocol_) stdin_protocol_->connection_lost(error);
    }

    std::optional<StreamWriter> stdin_;
    std::optional<StreamReader> stdout_;
    std::optional<StreamReader> stderr_;

  private:
    StreamReader* reader_of(int fd) {
        std::optional<StreamReader>& reader = fd == 1 ? stdout_ : stderr_;
        return (fd == 1 || fd == 2) && reader ? &*reader : nullptr;
    }

    void maybe_close_transport() {
        if (!pipe_fds_.empty() || !process_exited_) return;
        if (std::shared_ptr<SubprocessTransport> transport = transport_.lock()) transport->close();
        transport_.reset();
    }

    std::size_t limit_;
    std::weak_ptr<SubprocessTransport> transport_;  // the transport owns this protocol
    std::shared_ptr<StreamReaderProtocol> stdin_protocol_;
    std::vector<int> pipe_fds_;
    bool process_exited_ = false;
};

struct ProcessState {
    std::shared_ptr<SubprocessTransport> transport;
    std::shared_ptr<SubprocessStreamProtocol> protocol;
};

namespace {

bool is_broken_pipe(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::system_error& e) {
        return e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
    } catch (...) {
        return false;
    }
}

/// Process._feed_stdin: communicate() ignores a child that stopped reading.
Coro<void> feed_stdin(StreamWriter writer, std::optional<std::string> input) {
    if (input) {
        writer.write(*input);
        Outcome<void> drained = co_await try_await(writer.drain());
        if (!drained.has_value() && !is_broken_pipe(drained.exception())) std::move(drained).get();
    }
    writer.close();
}

/// Process._read_stream.
Coro<std::string> read_stream(std::shared_ptr<SubprocessTransport> transport, int fd,
                              StreamReader reader) {
    std::string output = co_await reader.read();
    if (BaseTransport* pipe = transport->get_pipe_transport(fd)) pipe->close();
    co_return output;
}

Coro<std::pair<std::string, std::string>> communicate_state(std::shared_ptr<ProcessState> s,
                                                            std::optional<std::string> input) {
    EventLoop& loop = get_running_loop();
    // Concurrently, as gather runs them: a child blocked writing stdout
    // while we still feed its stdin must not deadlock.
    std::optional<Task<void>> feeding;
    if (s->protocol->stdin_)
        feeding = loop.create_task(feed_stdin(*s->protocol->stdin_, std::move(input)));
    std::optional<Task<std::string>> out;
    if (s->protocol->stdout_)
        out = loop.create_task(read_stream(s->transport, 1, *s->protocol->stdout_));
    std::optional<Task<std::string>> err;
    if (s->protocol->stderr_)
        err = loop.create_task(read_stream(s->transport, 2, *s->protocol->stderr_));
    if (feeding) co_await *feeding;
    std::pair<std::string, std::string> result;
    if (out) result.first = co_await *out;
    if (err) result.second = co_await *err;
    co_await wait_subprocess(s->transport);
    co_return result;
}

Coro<Process> create_process(std::vector<std::string> argv, SubprocessOptions opts) {
    StreamReader checked(opts.limit);  // ValueError for a bad limit, before any child starts
    (void)checked;
    const std::size_t limit = opts.limit;
    ErasedProtocolFactory factory = [limit]() -> std::shared_ptr<BaseProtocol> {
        return std::make_shared<SubprocessStreamProtocol>(limit);
    };
    OpenedTransport opened = co_await open_subprocess(get_running_loop(), std::move(factory),
                                                      std::move(argv), std::move(opts));
    co_return Process(library_key, std::dynamic_pointer_cast<SubprocessTransport>(opened.transport),
                      std::static_pointer_cast<SubprocessStreamProtocol>(opened.protocol));
}

}  // namespace
}  // namespace detail

Process::Process(detail::LibraryKey, std::shared_ptr<SubprocessTransport> transport,
                 std::shared_ptr<detail::SubprocessStreamProtocol> protocol)
    : stdin_(protocol->stdin_),
      stdout_(protocol->stdout_),
      stderr_(protocol->stderr_),
      state_(std::make_shared<detail::ProcessState>(std::move(transport), std::move(protocol))) {}

int Process::pid() const {
    return state_->transport->get_pid();
}
std::optional<int> Process::returncode() const {
    return state_->transport->get_returncode();
}
Coro<int> Process::wait() {
    return detail::wait_subprocess(state_->transport);
}
Coro<std::pair<std::string, std::string>> Process::communicate(std::optional<std::string> input) {
    return detail::communicate_state(state_, std::move(input));
}
void Process::send_signal(int sig) {
    state_->transport->send_signal(sig);
}
void Process::terminate() {
    state_->transport->terminate();
}
void Process::kill() {
    state_->transport->kill();
}

Coro<Process> create_subprocess_exec(std::string program, std::vector<std::string> args,
                                     SubprocessOptions opts) {
    args.insert(args.begin(), std::move(program));
    return detail::create_process(std::move(args), std::move(opts));
}

Coro<Process> create_subprocess_shell(std::string cmd, SubprocessOptions opts) {
    return detail::create_process(detail::shell_argv(std::move(cmd)), std::move(opts));
}

}  // namespace asyncio
