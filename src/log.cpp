#include "asyncio/log.hpp"

#include <cstdio>
#include <mutex>
#include <utility>

namespace asyncio {
namespace {

std::mutex sink_mutex;

LogSink& custom_sink() {
    static LogSink sink;
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
    std::lock_guard lock(sink_mutex);
    return std::exchange(custom_sink(), std::move(sink));
}

void log_message(LogLevel level, std::string_view message) noexcept {
    std::lock_guard lock(sink_mutex);
    if (LogSink& sink = custom_sink()) {
        try {
            sink(level, message);
            return;
        } catch (...) {
            std::fputs("asyncio: the log sink threw; logging to stderr\n", stderr);
        }
    }
    std::fprintf(stderr, "%s:asyncio:%.*s\n", level_name(level), static_cast<int>(message.size()),
                 message.data());
}

}  // namespace asyncio
