// What loop.call_exception_handler receives (Python's context dict), kept
// below the loop layer so that futures, tasks, locks and queues can report
// through it without including the loop.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <string>

#include "asyncio/future.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/task.hpp"

namespace asyncio {

class EventLoop;
// Declared, not included: the transport layer sits above this header.
class BaseTransport;
class BaseProtocol;

/// What the loop's exception handler receives (Python's context dict).
struct ExceptionContext {
    std::string message{};
    std::exception_ptr exception{};
    std::optional<Future<>> future{};
    std::optional<Task<>> task{};
    std::optional<Handle> handle{};
    /// The transport and protocol a report is about (a transport's fatal
    /// error, a failed client_connected callback).
    std::shared_ptr<BaseTransport> transport{};
    std::shared_ptr<BaseProtocol> protocol{};
    /// The socket's descriptor (a server's listening socket on accept errors).
    std::optional<int> socket{};
    /// Python's repr of the object the report is about, when no handle to it
    /// can be given (a future being destroyed, say).
    std::string repr{};
    /// Where the object was created (Python's source_traceback), if known.
    std::optional<std::source_location> source{};
};

/// loop.set_exception_handler's argument: called as handler(loop, context).
using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

}  // namespace asyncio
