#include "asyncio/log.hpp"

#include <cstdio>
#include <memory>
#include <mutex>
#include <utility>

namespace asyncio {
namespace {

std::mutex sink_mutex;

// Shared so that a sink can be called without holding the mutex: a sink may
// itself log or replace the sink.
std::shared_ptr<const LogSink>& custom_sink() {
    static std::shared_ptr<const LogSink> sink;
    return sink;
}

const char* level_name(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::debug:
            return "DEBUG";
        case LogLevel::info:
            return "INFO";
        case LogLevel::warning:
            return "WARNING";
        case LogLevel::error:
            return "ERROR";
        case LogLevel::critical:
            return "CRITICAL";
    }
    return "LOG";
}

}  // namespace

LogSink set_log_sink(LogSink sink) {
    auto next = sink ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
    std::shared_ptr<const LogSink> previous;
    {
        std::lock_guard lock(sink_mutex);
        previous = std::exchange(custom_sink(), std::move(next));
    }
    return previous ? *previous : LogSink{};
}

void log_message(LogLevel level, std::string_view message) noexcept {
    std::shared_ptr<const LogSink> sink;
    {
        std::lock_guard lock(sink_mutex);
        sink = custom_sink();
    }
    if (sink) {
        try {
            (*sink)(level, message);
            return;
        } catch (...) {
            std::fputs("asyncio: the log sink threw; logging to stderr\n", stderr);
        }
    }
    std::fprintf(stderr, "%s:asyncio:%.*s\n", level_name(level), static_cast<int>(message.size()),
                 message.data());
}

}  // namespace asyncio
