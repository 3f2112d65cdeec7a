// Shared by the tests: the Catch2 v2/v3 shim and small helpers.
//
// Never put co_await inside a Catch2 assertion macro: the macros repeat
// their argument in an unevaluated `false && (expr)` branch, and GCC 12 still
// evaluates a co_await found there. Bind the awaited value to a local first.
#pragma once

#if ASYNCIO_CATCH_MAJOR >= 3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <asyncio.hpp>
#include <string>
#include <vector>

namespace asyncio_test {

/// Installs an exception handler on `loop` that records every report.
struct RecordedReports {
    explicit RecordedReports(asyncio::EventLoop& loop) {
        loop.set_exception_handler([this](asyncio::EventLoop&, const asyncio::ExceptionContext& c) {
            messages.push_back(c.message);
            contexts.push_back(c);
        });
    }
    bool contains(const std::string& needle) const {
        for (const auto& m : messages) {
            if (m.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    std::vector<std::string> messages;
    std::vector<asyncio::ExceptionContext> contexts;
};

/// A message the log sink received, captured for the duration of a test.
struct CapturedLog {
    CapturedLog() {
        previous = asyncio::set_log_sink([this](asyncio::LogLevel level, std::string_view text) {
            lines.emplace_back(level, std::string(text));
        });
    }
    ~CapturedLog() { asyncio::set_log_sink(std::move(previous)); }
    bool contains(const std::string& needle) const {
        for (const auto& [level, text] : lines) {
            if (text.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    asyncio::LogSink previous;
    std::vector<std::pair<asyncio::LogLevel, std::string>> lines;
};

}  // namespace asyncio_test
