// The Redis server of examples/redis_server.cpp on the Protocol API, the
// other side of the resp workload (see run.py): data_received parses every
// whole command in what has arrived, runs each (examples/resp.hpp, the same
// commands and replies as the example), and writes all the replies at once.
//
//   resp_protocol PORT [--tls CERTFILE KEYFILE]
//       (0: any free port; ASYNCIO_BACKEND picks the backend)
//
// Prints "Serving on 127.0.0.1:PORT" once listening, exits 0 on SIGINT or
// SIGTERM.
#include <asyncio.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "library_server.hpp"
#include "resp.hpp"

class RespProtocol : public asyncio::Protocol {
  public:
    explicit RespProtocol(resp::Database& db) : db_(db) {}

    void connection_made(asyncio::BaseTransport& transport) override {
        transport_ = &dynamic_cast<asyncio::Transport&>(transport);
    }

    void data_received(std::string_view data) override {
        if (closing_) return;
        // Parse straight from `data` unless a command is already partly
        // buffered.
        std::string_view input = data;
        if (!buffer_.empty()) {
            buffer_.append(data);
            input = buffer_;
        }
        out_.clear();
        std::size_t used;
        while (!closing_ && !input.empty() && (used = command(input)) > 0)
            input.remove_prefix(used);
        if (buffer_.empty()) {
            buffer_.assign(input);
        } else {
            buffer_.erase(0, buffer_.size() - input.size());
        }
        // Pipelined commands get their replies in one write.
        if (!out_.empty()) transport_->write(out_);
        if (closing_) transport_->close();
    }

  private:
    // Runs the first command of `in` if it is whole, appending its reply to
    // out_, and returns its length; 0 if it is not whole yet. A protocol
    // error is answered (then the connection closes), as Redis does.
    std::size_t command(std::string_view in) {
        if (in.front() != '*') {
            // Inline, telnet style: "SET key value\r\n".
            const std::size_t newline = in.find('\n');
            if (newline == std::string_view::npos)
                return in.size() > resp::max_inline_length ? fail(resp::too_big_inline, in) : 0;
            std::string_view line = in.substr(0, newline);
            if (line.ends_with('\r')) line.remove_suffix(1);
            if (!resp::split_inline(line, inline_args_)) return fail(resp::unbalanced_quotes, in);
            if (!inline_args_.empty()) closing_ = !db_.execute(inline_args_, out_);
            return newline + 1;
        }
        // Multibulk: "*<count>\r\n", then per argument "$<length>\r\n" and
        // the bytes followed by two more (Redis does not look at them).
        std::size_t pos = 0;
        // Whether the line at `pos` ("*3" or "$5", then CRLF) is whole;
        // `end` is where its CR is. Redis looks for the CR, as here.
        auto header = [&](std::size_t& end) -> bool {
            end = in.find('\r', pos);
            return end != std::string_view::npos && end + 1 < in.size();
        };
        std::size_t end;
        if (!header(end))
            return in.size() > resp::max_inline_length ? fail(resp::too_big_count, in) : 0;
        std::optional<long long> count = resp::to_integer(in.substr(1, end - 1));
        if (!count || *count > resp::max_multibulk_length)
            return fail(resp::invalid_multibulk_length, in);
        pos = end + 2;
        args_.clear();
        for (long long i = 0; i < *count; ++i) {
            if (!header(end))
                return in.size() - pos > resp::max_inline_length ? fail(resp::too_big_bulk, in) : 0;
            if (in[pos] != '$') return fail(resp::expected_dollar(in[pos]), in);
            std::optional<long long> length = resp::to_integer(in.substr(pos + 1, end - pos - 1));
            if (!length || *length < 0 || *length > resp::max_bulk_length)
                return fail(resp::invalid_bulk_length, in);
            pos = end + 2;
            const std::size_t n = static_cast<std::size_t>(*length);
            if (in.size() - pos < n + 2) return 0;
            args_.push_back(in.substr(pos, n));
            pos += n + 2;
        }
        if (!args_.empty()) closing_ = !db_.execute(args_, out_);
        return pos;
    }

    std::size_t fail(std::string_view message, std::string_view in) {
        resp::error(out_, message);
        closing_ = true;
        return in.size();
    }

    resp::Database& db_;
    asyncio::Transport* transport_ = nullptr;
    bool closing_ = false;
    // Reused: no allocation per command once warm.
    std::string buffer_, out_;
    std::vector<std::string_view> args_;
    std::vector<std::string> inline_args_;
};

resp::Database db;  // every connection's: the loop runs one at a time

asyncio::Coro<> serve(bench::ServerConfig config) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    auto factory = [] { return std::make_shared<RespProtocol>(db); };
    asyncio::ServerOptions options{.ssl = config.ssl};
    asyncio::Server server =
        co_await loop.create_server(factory, "127.0.0.1", config.port, options);
    co_await bench::serve_until_stopped(std::move(server));
}

int main(int argc, char** argv) {
    return bench::run_server(argc, argv, &serve);
}
