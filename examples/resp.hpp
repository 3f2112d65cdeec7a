// The Redis protocol (RESP2) and a small in-memory Redis, shared by
// examples/redis_server.cpp (streams) and benchmarks/net/resp_protocol.cpp
// (the Protocol API): what a command does and what it answers is written
// once here; how the bytes are read is each server's own.
//
// Commands, with Redis 7.0's replies and error messages: PING, ECHO, SET
// (NX, XX, GET, KEEPTTL; no expiry: EX/PX/EXAT/PXAT are a syntax error),
// GET, DEL, EXISTS, INCR, DECR, INCRBY, APPEND, STRLEN, MSET, MGET, DBSIZE,
// FLUSHALL, QUIT, and CONFIG GET of "save" and "appendonly", which
// redis-benchmark asks for when it starts (the answers of
// `redis-server --save '' --appendonly no`). Values are strings only.
#pragma once

#include <charconv>
#include <climits>
#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace resp {

// ---- Replies -------------------------------------------------------------

inline void simple_string(std::string& out, std::string_view text) {
    out += '+';
    out += text;
    out += "\r\n";
}

/// `message` starts with the error code: "ERR syntax error".
inline void error(std::string& out, std::string_view message) {
    out += '-';
    out += message;
    out += "\r\n";
}

inline void integer(std::string& out, long long value) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out += ':';
    out.append(digits, end);
    out += "\r\n";
}

/// The header of an array of `n` replies, which follow it.
inline void array(std::string& out, std::size_t n) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, n).ptr;
    out += '*';
    out.append(digits, end);
    out += "\r\n";
}

inline void bulk(std::string& out, std::string_view data) {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, data.size()).ptr;
    out += '$';
    out.append(digits, end);
    out += "\r\n";
    out += data;
    out += "\r\n";
}

/// The null bulk string: a missing key.
inline void null(std::string& out) {
    out += "$-1\r\n";
}

// ---- Parsing -------------------------------------------------------------

/// A whole decimal integer as Redis accepts one (string2ll): an optional
/// '-', no '+', no spaces, no leading zero, at most 20 characters, within
/// a long long. Used for values, arguments, and the protocol's lengths.
inline std::optional<long long> to_integer(std::string_view text) {
    if (text.empty() || text.size() >= 21) return std::nullopt;
    if (text == "0") return 0;
    const bool negative = text.front() == '-';
    if (negative) text.remove_prefix(1);
    if (text.empty() || text.front() < '1' || text.front() > '9') return std::nullopt;
    unsigned long long value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        const unsigned digit = static_cast<unsigned>(c - '0');
        if (value > (ULLONG_MAX - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    if (negative) {
        if (value > static_cast<unsigned long long>(LLONG_MAX) + 1) return std::nullopt;
        return static_cast<long long>(0 - value);
    }
    if (value > static_cast<unsigned long long>(LLONG_MAX)) return std::nullopt;
    return static_cast<long long>(value);
}

/// The length in a "*N\r\n" or "$N\r\n" line (with its CRLF): nullopt
/// unless the line ends in CRLF and N is an integer.
inline std::optional<long long> line_length(std::string_view line) {
    if (line.size() < 3 || !line.ends_with("\r\n")) return std::nullopt;
    return to_integer(line.substr(1, line.size() - 3));
}

// The protocol errors; the connection closes after each.
inline constexpr std::string_view invalid_multibulk_length =
    "ERR Protocol error: invalid multibulk length";
inline constexpr std::string_view invalid_bulk_length = "ERR Protocol error: invalid bulk length";
inline constexpr std::string_view unbalanced_quotes =
    "ERR Protocol error: unbalanced quotes in request";
inline constexpr std::string_view too_big_inline = "ERR Protocol error: too big inline request";
inline constexpr std::string_view too_big_count = "ERR Protocol error: too big mbulk count string";
inline constexpr std::string_view too_big_bulk = "ERR Protocol error: too big bulk count string";
/// A multibulk argument whose line does not start with '$'.
inline std::string expected_dollar(char got) {
    return std::string("ERR Protocol error: expected '$', got '") + got + "'";
}

/// The largest bulk string and the longest inline command Redis accepts.
inline constexpr long long max_bulk_length = 512LL * 1024 * 1024;
inline constexpr std::size_t max_inline_length = 64 * 1024;
/// The largest multibulk count Redis 7.0 accepts.
inline constexpr long long max_multibulk_length = INT_MAX;

/// Splits an inline command ("SET key "two words"\r\n", telnet style) into
/// its arguments as Redis does (sdssplitargs): words separated by blanks,
/// "double quotes" with C escapes (\n, \r, \t, \b, \a, \xHH, \" ...),
/// 'single quotes' with \' only; a closing quote must end the word. Returns
/// false for unbalanced quotes (a protocol error).
inline bool split_inline(std::string_view line, std::vector<std::string>& args) {
    args.clear();
    // Redis works on a C string: a NUL byte ends the line.
    line = line.substr(0, line.find('\0'));
    auto is_space = [](char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    };
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::size_t i = 0;
    const std::size_t n = line.size();
    auto at = [&](std::size_t k) { return k < n ? line[k] : '\0'; };
    for (;;) {
        while (i < n && is_space(line[i]))
            ++i;
        if (i == n) return true;
        std::string& word = args.emplace_back();
        bool in_double = false, in_single = false, done = false;
        while (!done) {
            const char c = at(i);
            if (in_double) {
                if (c == '\\' && at(i + 1) == 'x' && hex(at(i + 2)) >= 0 && hex(at(i + 3)) >= 0) {
                    word += static_cast<char>(hex(at(i + 2)) * 16 + hex(at(i + 3)));
                    i += 3;
                } else if (c == '\\' && at(i + 1) != '\0') {
                    ++i;
                    constexpr std::string_view escapes = "nrtba", bytes = "\n\r\t\b\a";
                    const std::size_t k = escapes.find(line[i]);
                    word += k == std::string_view::npos ? line[i] : bytes[k];
                } else if (c == '"') {
                    if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
                    done = true;
                } else if (c == '\0') {
                    return false;
                } else {
                    word += c;
                }
            } else if (in_single) {
                if (c == '\\' && at(i + 1) == '\'') {
                    ++i;
                    word += '\'';
                } else if (c == '\'') {
                    if (at(i + 1) != '\0' && !is_space(at(i + 1))) return false;
                    done = true;
                } else if (c == '\0') {
                    return false;
                } else {
                    word += c;
                }
            } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\0') {
                done = true;  // the end of an unquoted word
            } else if (c == '"') {
                in_double = true;
            } else if (c == '\'') {
                in_single = true;
            } else {
                word += c;
            }
            if (i < n) ++i;
        }
    }
}

// ---- Commands ------------------------------------------------------------

/// The keyspace, and the commands that act on it.
class Database {
  public:
    /// Runs the command `args` (name first; a sequence of std::string or
    /// std::string_view) and appends its reply to `out`. Returns false when
    /// the connection must close after the reply (QUIT).
    template <class Args>
    bool execute(const Args& args, std::string& out) {
        std::vector<std::string_view>& argv = argv_;
        argv.assign(std::begin(args), std::end(args));
        run(argv, out);
        return !iequals(argv[0], "quit");
    }

    std::size_t size() const { return data_.size(); }

  private:
    // Lookups by std::string_view, without making a std::string.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view key) const {
            return std::hash<std::string_view>{}(key);
        }
    };
    using Map = std::unordered_map<std::string, std::string, Hash, std::equal_to<>>;

    static constexpr std::string_view syntax_error = "ERR syntax error";
    static constexpr std::string_view not_integer = "ERR value is not an integer or out of range";

    static bool iequals(std::string_view text, std::string_view lower) {
        if (text.size() != lower.size()) return false;
        for (std::size_t i = 0; i < text.size(); ++i) {
            char c = text[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (c != lower[i]) return false;
        }
        return true;
    }

    // Arity as Redis counts it (the name included): n > 0 exactly n, n < 0
    // at least -n.
    static bool arity_ok(std::size_t argc, int arity) {
        return arity > 0 ? argc == static_cast<std::size_t>(arity)
                         : argc >= static_cast<std::size_t>(-arity);
    }

    static void wrong_arity(std::string& out, std::string_view name) {
        out += "-ERR wrong number of arguments for '";
        out += name;
        out += "' command\r\n";
    }

    // Redis's text, which quotes the command and up to 128 bytes of its
    // arguments (each cut at a NUL byte, as C's printf would), with CR and
    // LF turned into spaces so that the reply stays one line.
    static void unknown_command(std::string& out, const std::vector<std::string_view>& argv) {
        auto c_string = [](std::string_view s, std::size_t max) {
            s = s.substr(0, s.find('\0'));
            return s.substr(0, max);
        };
        std::string args;
        for (std::size_t i = 1; i < argv.size() && args.size() < 128; ++i) {
            std::string_view arg = c_string(argv[i], 128 - args.size());
            args += '\'';
            args += arg;
            args += "' ";
        }
        std::string message = "ERR unknown command '";
        message += c_string(argv[0], 128);
        message += "', with args beginning with: ";
        message += args;
        for (char& c : message)
            if (c == '\r' || c == '\n') c = ' ';
        error(out, message);
    }

    void run(const std::vector<std::string_view>& argv, std::string& out) {
        const std::string_view name = argv[0];
        const std::size_t argc = argv.size();
        // The hot ones first: redis-benchmark -t ping,set,get.
        if (iequals(name, "get")) {
            if (!arity_ok(argc, 2)) return wrong_arity(out, "get");
            auto it = data_.find(argv[1]);
            if (it == data_.end()) {
                null(out);
            } else {
                bulk(out, it->second);
            }
        } else if (iequals(name, "set")) {
            if (!arity_ok(argc, -3)) return wrong_arity(out, "set");
            set(argv, out);
        } else if (iequals(name, "ping")) {
            if (!arity_ok(argc, -1) || argc > 2) return wrong_arity(out, "ping");
            if (argc == 2) {
                bulk(out, argv[1]);
            } else {
                simple_string(out, "PONG");
            }
        } else if (iequals(name, "echo")) {
            if (!arity_ok(argc, 2)) return wrong_arity(out, "echo");
            bulk(out, argv[1]);
        } else if (iequals(name, "del") || iequals(name, "exists")) {
            const bool del = iequals(name, "del");
            if (!arity_ok(argc, -2)) return wrong_arity(out, del ? "del" : "exists");
            long long n = 0;
            for (std::size_t i = 1; i < argc; ++i) {
                auto it = data_.find(argv[i]);
                if (it == data_.end()) continue;
                ++n;
                if (del) data_.erase(it);
            }
            integer(out, n);
        } else if (iequals(name, "incr")) {
            if (!arity_ok(argc, 2)) return wrong_arity(out, "incr");
            increment(argv[1], 1, out);
        } else if (iequals(name, "decr")) {
            if (!arity_ok(argc, 2)) return wrong_arity(out, "decr");
            increment(argv[1], -1, out);
        } else if (iequals(name, "incrby")) {
            if (!arity_ok(argc, 3)) return wrong_arity(out, "incrby");
            std::optional<long long> by = to_integer(argv[2]);
            if (!by) return error(out, not_integer);
            increment(argv[1], *by, out);
        } else if (iequals(name, "append")) {
            if (!arity_ok(argc, 3)) return wrong_arity(out, "append");
            std::string& value = slot(argv[1]);
            value += argv[2];
            integer(out, static_cast<long long>(value.size()));
        } else if (iequals(name, "strlen")) {
            if (!arity_ok(argc, 2)) return wrong_arity(out, "strlen");
            auto it = data_.find(argv[1]);
            integer(out, it == data_.end() ? 0 : static_cast<long long>(it->second.size()));
        } else if (iequals(name, "mset")) {
            if (!arity_ok(argc, -3) || argc % 2 == 0) return wrong_arity(out, "mset");
            for (std::size_t i = 1; i < argc; i += 2)
                slot(argv[i]).assign(argv[i + 1]);
            simple_string(out, "OK");
        } else if (iequals(name, "mget")) {
            if (!arity_ok(argc, -2)) return wrong_arity(out, "mget");
            array(out, argc - 1);
            for (std::size_t i = 1; i < argc; ++i) {
                auto it = data_.find(argv[i]);
                if (it == data_.end()) {
                    null(out);
                } else {
                    bulk(out, it->second);
                }
            }
        } else if (iequals(name, "dbsize")) {
            if (!arity_ok(argc, 1)) return wrong_arity(out, "dbsize");
            integer(out, static_cast<long long>(data_.size()));
        } else if (iequals(name, "flushall")) {
            if (!arity_ok(argc, -1)) return wrong_arity(out, "flushall");
            if (argc > 2 || (argc == 2 && !iequals(argv[1], "sync") && !iequals(argv[1], "async")))
                return error(out, syntax_error);
            data_.clear();
            simple_string(out, "OK");
        } else if (iequals(name, "quit")) {  // execute() closes the connection
            simple_string(out, "OK");
        } else if (iequals(name, "config")) {
            config(argv, out);
        } else {
            unknown_command(out, argv);
        }
    }

    // SET key value [NX | XX] [GET] [KEEPTTL]
    void set(const std::vector<std::string_view>& argv, std::string& out) {
        bool nx = false, xx = false, get = false;
        for (std::size_t i = 3; i < argv.size(); ++i) {
            if (iequals(argv[i], "nx") && !xx) {
                nx = true;
            } else if (iequals(argv[i], "xx") && !nx) {
                xx = true;
            } else if (iequals(argv[i], "get")) {
                get = true;
            } else if (!iequals(argv[i], "keepttl")) {  // no expiry: nothing to keep
                return error(out, syntax_error);
            }
        }
        auto it = data_.find(argv[1]);
        const bool found = it != data_.end();
        if (get) {
            if (found) {
                bulk(out, it->second);
            } else {
                null(out);
            }
        }
        if ((nx && found) || (xx && !found)) {
            if (!get) null(out);
            return;
        }
        if (found) {
            it->second.assign(argv[2]);
        } else {
            data_.emplace(argv[1], argv[2]);
        }
        if (!get) simple_string(out, "OK");
    }

    void increment(std::string_view key, long long by, std::string& out) {
        auto it = data_.find(key);
        long long value = 0;
        if (it != data_.end()) {
            std::optional<long long> current = to_integer(it->second);
            if (!current) return error(out, not_integer);
            value = *current;
        }
        if ((by < 0 && value < 0 && by < LLONG_MIN - value) ||
            (by > 0 && value > 0 && by > LLONG_MAX - value))
            return error(out, "ERR increment or decrement would overflow");
        value += by;
        if (it == data_.end()) it = data_.emplace(std::string(key), std::string()).first;
        it->second = std::to_string(value);
        integer(out, value);
    }

    // CONFIG GET parameter [parameter ...], for the two parameters that
    // redis-benchmark reads; any other is not found (an empty answer).
    void config(const std::vector<std::string_view>& argv, std::string& out) {
        if (argv.size() < 2) return wrong_arity(out, "config");
        if (!iequals(argv[1], "get")) {
            std::string sub(argv[1].substr(0, argv[1].find('\0')).substr(0, 128));
            for (char& c : sub)
                if (c == '\r' || c == '\n') c = ' ';
            return error(out, "ERR unknown subcommand '" + sub + "'. Try CONFIG HELP.");
        }
        if (argv.size() < 3) return wrong_arity(out, "config|get");
        // Each parameter once, named as it was first asked for.
        struct Parameter {
            std::string_view name, value, asked_as;
            bool asked = false;
        };
        Parameter parameters[] = {{"appendonly", "no", {}}, {"save", "", {}}};
        std::size_t found = 0;
        for (std::size_t i = 2; i < argv.size(); ++i) {
            for (Parameter& p : parameters) {
                if (!p.asked && iequals(argv[i], p.name)) {
                    p.asked = true;
                    p.asked_as = argv[i];
                    ++found;
                }
            }
        }
        array(out, 2 * found);
        for (const Parameter& p : parameters) {
            if (!p.asked) continue;
            bulk(out, p.asked_as);
            bulk(out, p.value);
        }
    }

    // The value of `key`, made empty if the key is new.
    std::string& slot(std::string_view key) {
        auto it = data_.find(key);
        if (it == data_.end()) it = data_.emplace(std::string(key), std::string()).first;
        return it->second;
    }

    Map data_;
    std::vector<std::string_view> argv_;  // reused: no allocation per command once warm
};

}  // namespace resp
