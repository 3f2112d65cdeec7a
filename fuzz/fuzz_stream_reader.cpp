// Fuzzes StreamReader's buffering: data arrives in chunks the input chooses
// (one loop iteration apart, then EOF) while a coroutine calls read(n),
// read(), readline, readexactly and readuntil with a limit and separators
// the input chooses too.
//
// A model tracks what was fed and what the reader handed out; every call is
// checked against it: bytes come out in order, none lost or repeated (except
// the over-long line readline documents as skipped), each call returns what
// its contract says, and the only exceptions are the documented ones
// (IncompleteReadError, LimitOverrunError, std::invalid_argument for
// Python's ValueError). One event loop serves every input.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "asyncio/exceptions.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/streams.hpp"
#include "asyncio/tasks.hpp"

namespace {

using asyncio::Coro;
using asyncio::IncompleteReadError;
using asyncio::LimitOverrunError;
using asyncio::StreamReader;

struct Op {
    enum Kind { read, read_all, readline, readexactly, readuntil, at_eof };
    Kind kind = read;
    std::size_t n = 0;
    // readuntil: (offset, length) of each separator in the data, so that
    // separators often occur in it.
    std::vector<std::pair<std::size_t, std::size_t>> slices;
    std::vector<std::string> separators;
};

struct Case {
    std::size_t limit = 1;
    std::string data;
    std::vector<std::size_t> chunks;  // sizes, summing to data.size()
    std::vector<Op> ops;
};

/// What the feeder has fed and the reader has taken so far.
struct Model {
    std::string data;
    std::size_t fed = 0;
    bool eof = false;
    std::size_t pos = 0;  // bytes of `data` handed out (or skipped) so far
};

[[noreturn]] void fail(const char* what, const Model& m) {
    std::fprintf(stderr, "invariant broken: %s\n(pos %zu, fed %zu of %zu, eof %d)\n", what, m.pos,
                 m.fed, m.data.size(), m.eof ? 1 : 0);
    std::abort();
}

#define CHECK(condition) \
    if (!(condition)) fail(#condition, m)

Case decode(const std::uint8_t* bytes, std::size_t size) {
    FuzzedDataProvider provider(bytes, size);
    Case c;
    c.limit = provider.ConsumeIntegralInRange<std::size_t>(1, 40);
    const std::size_t n_chunks = provider.ConsumeIntegralInRange<std::size_t>(0, 12);
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < n_chunks; ++i)
        sizes.push_back(provider.ConsumeIntegralInRange<std::size_t>(0, 48));
    const std::size_t n_ops = provider.ConsumeIntegralInRange<std::size_t>(0, 12);
    for (std::size_t i = 0; i < n_ops; ++i) {
        Op op;
        op.kind = static_cast<Op::Kind>(provider.ConsumeIntegralInRange(0, 5));
        op.n = provider.ConsumeIntegralInRange<std::size_t>(0, 100);
        if (op.kind == Op::readuntil) {
            const std::size_t count = provider.ConsumeIntegralInRange<std::size_t>(0, 3);
            for (std::size_t k = 0; k < count; ++k) {
                const std::size_t at = provider.ConsumeIntegral<std::uint16_t>();
                const std::size_t length = provider.ConsumeIntegralInRange<std::size_t>(0, 4);
                op.slices.emplace_back(at, length);
            }
        }
        c.ops.push_back(std::move(op));
    }
    c.data = provider.ConsumeRemainingBytesAsString();
    std::size_t left = c.data.size();
    for (std::size_t s : sizes) {
        s = std::min(s, left);
        c.chunks.push_back(s);
        left -= s;
    }
    if (left > 0) c.chunks.push_back(left);
    for (Op& op : c.ops) {
        for (auto [at, length] : op.slices) {
            op.separators.push_back(c.data.empty() ? std::string(length, '\n')
                                                   : c.data.substr(at % c.data.size(), length));
        }
    }
    return c;
}

Coro<void> feed(StreamReader reader, const Case& c, Model& m) {
    std::size_t offset = 0;
    for (std::size_t size : c.chunks) {
        co_await asyncio::sleep(0);
        reader.feed_data(std::string_view(c.data).substr(offset, size));
        offset += size;
        m.fed = offset;
    }
    co_await asyncio::sleep(0);
    reader.feed_eof();
    m.eof = true;
}

/// Where the earliest-ending separator match ends in `text` and where it
/// starts (the shortest separator wins a tie, as in CPython), if any.
struct Match {
    std::size_t start, end;
};
std::optional<Match> earliest(std::string_view text, const std::vector<std::string>& separators) {
    std::optional<Match> best;
    for (const std::string& sep : separators) {
        const auto at = text.find(sep);
        if (at == std::string_view::npos) continue;
        const Match match{at, at + sep.size()};
        if (!best || match.end < best->end || (match.end == best->end && match.start > best->start))
            best = match;
    }
    return best;
}

// Each check_* runs one call and holds its result against the model.

Coro<void> check_read(StreamReader& reader, std::size_t n, Model& m) {
    const std::string got = co_await reader.read(static_cast<std::ptrdiff_t>(n));
    const std::string_view rest = std::string_view(m.data).substr(m.pos);
    if (n == 0) {
        CHECK(got.empty());
        co_return;
    }
    // What was buffered when the call returned, up to n; empty only at EOF.
    CHECK(got.size() == std::min(n, m.fed - m.pos));
    CHECK(rest.substr(0, got.size()) == got);
    CHECK(!got.empty() || (m.eof && rest.empty()));
    m.pos += got.size();
}

Coro<void> check_read_all(StreamReader& reader, Model& m) {
    const std::string got = co_await reader.read();
    CHECK(m.eof);
    CHECK(got == std::string_view(m.data).substr(m.pos));
    m.pos = m.data.size();
}

Coro<void> check_readexactly(StreamReader& reader, std::size_t n, Model& m) {
    std::optional<IncompleteReadError> incomplete;
    std::string got;
    try {
        got = co_await reader.readexactly(n);
    } catch (const IncompleteReadError& e) {
        incomplete = e;
    }
    const std::string_view rest = std::string_view(m.data).substr(m.pos);
    if (incomplete) {
        CHECK(m.eof);
        CHECK(incomplete->expected == n);
        CHECK(incomplete->partial == rest);
        CHECK(incomplete->partial.size() < n);
        m.pos = m.data.size();
        co_return;
    }
    CHECK(got.size() == n);
    CHECK(rest.substr(0, n) == got);
    m.pos += n;
}

Coro<void> check_readuntil(StreamReader& reader, const std::vector<std::string>& separators,
                           std::size_t limit, Model& m) {
    std::optional<IncompleteReadError> incomplete;
    std::optional<LimitOverrunError> overrun;
    bool invalid = false;
    std::string got;
    try {
        got = co_await (separators.size() == 1 ? reader.readuntil(separators.front())
                                               : reader.readuntil(separators));
    } catch (const IncompleteReadError& e) {
        incomplete = e;
    } catch (const LimitOverrunError& e) {
        overrun = e;
    } catch (const std::invalid_argument&) {
        invalid = true;
    }
    const bool bad_separators =
        separators.empty() || std::any_of(separators.begin(), separators.end(),
                                          [](const std::string& s) { return s.empty(); });
    CHECK(invalid == bad_separators);
    if (invalid) co_return;
    std::size_t max_seplen = 0;
    for (const std::string& sep : separators)
        max_seplen = std::max(max_seplen, sep.size());
    const std::string_view rest = std::string_view(m.data).substr(m.pos);
    const std::string_view buffered = rest.substr(0, m.fed - m.pos);
    if (overrun) {
        // Nothing consumed; either the separator sits past the limit, or it
        // is not in the buffer, which outgrew the limit.
        if (auto match = earliest(buffered, separators)) {
            CHECK(match->start > limit);
            CHECK(overrun->consumed == match->start);
        } else {
            CHECK(buffered.size() + 1 - max_seplen > limit);
            CHECK(overrun->consumed == buffered.size() + 1 - max_seplen);
        }
        co_return;
    }
    if (incomplete) {
        CHECK(m.eof);
        CHECK(!incomplete->expected);
        CHECK(incomplete->partial == rest);
        CHECK(!earliest(rest, separators));
        m.pos = m.data.size();
        co_return;
    }
    const auto match = earliest(rest, separators);
    CHECK(match);
    CHECK(got == rest.substr(0, match->end));
    CHECK(match->start <= limit);
    m.pos += got.size();
}

Coro<void> check_readline(StreamReader& reader, std::size_t limit, Model& m) {
    bool too_long = false;
    std::string got;
    try {
        got = co_await reader.readline();
    } catch (const std::invalid_argument&) {
        too_long = true;
    }
    const std::string_view rest = std::string_view(m.data).substr(m.pos);
    const std::string_view buffered = rest.substr(0, m.fed - m.pos);
    const auto newline = rest.find('\n');
    if (too_long) {
        // The over-long line is skipped with its newline, or, without a
        // newline in sight yet, everything buffered is.
        if (const auto in_buffer = buffered.find('\n'); in_buffer != std::string_view::npos) {
            CHECK(in_buffer > limit);
            m.pos += in_buffer + 1;
        } else {
            CHECK(buffered.size() > limit);
            m.pos = m.fed;
        }
        co_return;
    }
    if (newline == std::string_view::npos) {
        CHECK(m.eof);
        CHECK(got == rest);
    } else {
        CHECK(got == rest.substr(0, newline + 1));
        CHECK(newline <= limit);
    }
    m.pos += got.size();
}

Coro<void> run(const Case& c) {
    Model m;
    m.data = c.data;
    StreamReader reader(c.limit);
    auto feeder = asyncio::create_task(feed(reader, c, m));
    for (const Op& op : c.ops) {
        switch (op.kind) {
            case Op::read:
                co_await check_read(reader, op.n, m);
                break;
            case Op::read_all:
                co_await check_read_all(reader, m);
                break;
            case Op::readline:
                co_await check_readline(reader, c.limit, m);
                break;
            case Op::readexactly:
                co_await check_readexactly(reader, op.n, m);
                break;
            case Op::readuntil:
                co_await check_readuntil(reader, op.separators, c.limit, m);
                break;
            case Op::at_eof:
                break;
        }
        CHECK(reader.at_eof() == (m.eof && m.pos == m.data.size()));
    }
    // Whatever is left comes out whole, then the stream stays at EOF.
    co_await check_read_all(reader, m);
    CHECK(reader.at_eof());
    const std::string after = co_await reader.read(1);
    CHECK(after.empty());
    co_await feeder;
}

asyncio::EventLoop& shared_loop() {
    static const std::unique_ptr<asyncio::EventLoop> loop = asyncio::new_event_loop();
    return *loop;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Case c = decode(data, size);
    try {
        shared_loop().run_until_complete(run(c));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "undocumented exception: %s\n", e.what());
        std::abort();
    }
    return 0;
}
