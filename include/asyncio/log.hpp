// asyncio's logger (Lib/asyncio/log.py).
//
// Everything the library reports (slow callbacks, exceptions nobody
// retrieved, tasks destroyed while pending) is formatted with fmt and goes
// through one replaceable sink, the counterpart of Python's
// `logging.getLogger("asyncio")`. The default sink writes to stderr.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>
#include <utility>

#include "asyncio/export.hpp"

namespace asyncio {

enum class LogLevel { debug, info, warning, error, critical };

/// Receives every message the library logs. Must be thread-safe: executor
/// threads and destructors on any thread may log.
using LogSink = std::function<void(LogLevel, std::string_view message)>;

/// Replaces the sink and returns the previous one; an empty function restores
/// the default (stderr).
ASYNCIO_EXPORT LogSink set_log_sink(LogSink sink);

/// Sends one message to the sink.
ASYNCIO_EXPORT void log_message(LogLevel level, std::string_view message) noexcept;

/// Formats with fmt and logs: `asyncio::log(LogLevel::warning, "took {:.3f} s", t)`.
template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) noexcept {
    try {
        log_message(level, fmt::format(format, std::forward<Args>(args)...));
    } catch (...) {
        log_message(level, "asyncio: failed to format a log message");
    }
}

}  // namespace asyncio
