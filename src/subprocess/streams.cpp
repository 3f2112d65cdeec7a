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
#include "asyncio/tasks.hpp"
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

Coro<void> nothing_to_feed() {
    co_return;
}
Coro<std::string> nothing_to_read() {
    co_return std::string();
}

Coro<std::pair<std::string, std::string>> communicate_state(std::shared_ptr<ProcessState> s,
                                                            std::optional<std::string> input) {
    SubprocessStreamProtocol& protocol = *s->protocol;
    // gather, as CPython's communicate: concurrently, so that a child blocked
    // writing stdout while we still feed its stdin cannot deadlock, and all
    // three are cancelled together (wait_for(communicate(), t), then kill()
    // and communicate() again, must find no reader still waiting).
    Coro<void> feeding =
        protocol.stdin_ ? feed_stdin(*protocol.stdin_, std::move(input)) : nothing_to_feed();
    Coro<std::string> out =
        protocol.stdout_ ? read_stream(s->transport, 1, *protocol.stdout_) : nothing_to_read();
    Coro<std::string> err =
        protocol.stderr_ ? read_stream(s->transport, 2, *protocol.stderr_) : nothing_to_read();
    auto [fed, out_text, err_text] =
        co_await gather(std::move(feeding), std::move(out), std::move(err));
    (void)fed;
    co_await wait_subprocess(s->transport);
    co_return std::pair<std::string, std::string>{std::move(out_text), std::move(err_text)};
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
