// asyncio's exceptions (Lib/asyncio/exceptions.py).
//
// Python's exception hierarchy maps onto C++ standard exceptions so that
// `catch (const std::exception&)` behaves like Python's `except Exception:`,
// with one deliberate exception: CancelledError, like Python's (a
// BaseException), is not a std::exception and cannot be swallowed by accident.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "asyncio/export.hpp"

namespace asyncio {

/// asyncio.CancelledError: thrown into a task at its suspension point when the
/// task is cancelled. Not derived from std::exception, on purpose.
class ASYNCIO_EXPORT CancelledError {
  public:
    CancelledError() = default;
    explicit CancelledError(std::string message) : message_(std::move(message)) {}

    /// The message given to `cancel(msg)`, empty if none.
    const std::string& message() const noexcept { return message_; }
    const char* what() const noexcept {
        return message_.empty() ? "CancelledError" : message_.c_str();
    }

  private:
    std::string message_;
};

/// Python's GeneratorExit: thrown into an AsyncGenerator at its co_yield by
/// aclose(). Like CancelledError it is not a std::exception (Python's is a
/// BaseException), so `catch (const std::exception&)` does not swallow it.
class ASYNCIO_EXPORT GeneratorExit {
  public:
    const char* what() const noexcept { return "GeneratorExit"; }
};

/// Python's KeyboardInterrupt: Runner::run and asyncio::run throw it when
/// SIGINT (Ctrl-C) cancelled the main task. Like CancelledError it is not a
/// std::exception (Python's is a BaseException), so `catch (const
/// std::exception&)` does not swallow it.
class ASYNCIO_EXPORT KeyboardInterrupt {
  public:
    const char* what() const noexcept { return "KeyboardInterrupt"; }
};

/// asyncio.TimeoutError (an alias of the builtin TimeoutError since 3.11).
class ASYNCIO_EXPORT TimeoutError : public std::runtime_error {
  public:
    TimeoutError() : std::runtime_error("TimeoutError") {}
    using std::runtime_error::runtime_error;
};

/// asyncio.InvalidStateError: an operation on a Future in the wrong state.
class ASYNCIO_EXPORT InvalidStateError : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

/// Python's RuntimeError: misuse of the loop ("Event loop is closed",
/// "no running event loop", ...).
class ASYNCIO_EXPORT RuntimeError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Python's NotImplementedError (a RuntimeError there too): what this
/// platform or backend cannot do, such as add_reader on IOCP or
/// add_signal_handler on Windows, as CPython's ProactorEventLoop refuses them.
class ASYNCIO_EXPORT NotImplementedError : public RuntimeError {
  public:
    using RuntimeError::RuntimeError;
};

/// asyncio.IncompleteReadError: EOF before the requested bytes arrived.
class ASYNCIO_EXPORT IncompleteReadError : public std::runtime_error {
  public:
    IncompleteReadError(std::string partial, std::optional<std::size_t> expected)
        : std::runtime_error(describe(partial.size(), expected)),
          partial(std::move(partial)),
          expected(expected) {}

    std::string partial;                  ///< the bytes read before EOF
    std::optional<std::size_t> expected;  ///< the total expected, nullopt for "until a separator"

  private:
    static std::string describe(std::size_t got, std::optional<std::size_t> expected) {
        return std::to_string(got) + " bytes read on a total of " +
               (expected ? std::to_string(*expected) : std::string("None")) + " expected bytes";
    }
};

/// asyncio.LimitOverrunError: a separator was not found within the stream limit.
class ASYNCIO_EXPORT LimitOverrunError : public std::runtime_error {
  public:
    LimitOverrunError(const std::string& message, std::size_t consumed)
        : std::runtime_error(message), consumed(consumed) {}

    std::size_t consumed;  ///< how many bytes may be consumed before retrying
};

/// asyncio.QueueEmpty: get_nowait() on an empty queue.
class ASYNCIO_EXPORT QueueEmpty : public std::runtime_error {
  public:
    QueueEmpty() : std::runtime_error("QueueEmpty") {}
    using std::runtime_error::runtime_error;
};

/// asyncio.QueueFull: put_nowait() on a full queue.
class ASYNCIO_EXPORT QueueFull : public std::runtime_error {
  public:
    QueueFull() : std::runtime_error("QueueFull") {}
    using std::runtime_error::runtime_error;
};

/// asyncio.QueueShutDown: put or get on a queue after shutdown().
class ASYNCIO_EXPORT QueueShutDown : public std::runtime_error {
  public:
    QueueShutDown() : std::runtime_error("QueueShutDown") {}
    using std::runtime_error::runtime_error;
};

/// asyncio.BrokenBarrierError: waiting on a broken or aborted Barrier.
class ASYNCIO_EXPORT BrokenBarrierError : public std::runtime_error {
  public:
    BrokenBarrierError() : std::runtime_error("BrokenBarrierError") {}
    using std::runtime_error::runtime_error;
};

/// asyncio.SendfileNotAvailableError: the zero-copy path cannot be used.
class ASYNCIO_EXPORT SendfileNotAvailableError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Python's ExceptionGroup (PEP 654): several exceptions raised together, as
/// TaskGroup does when more than one of its tasks fails.
class ASYNCIO_EXPORT ExceptionGroup : public std::exception {
  public:
    ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
        : message_(std::move(message)), exceptions_(std::move(exceptions)) {
        what_ = message_ + " (" + std::to_string(exceptions_.size()) + " sub-exception" +
                (exceptions_.size() == 1 ? ")" : "s)");
    }

    const std::string& message() const noexcept { return message_; }
    const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }
    const char* what() const noexcept override { return what_.c_str(); }

  private:
    std::string message_;
    std::vector<std::exception_ptr> exceptions_;
    std::string what_;
};

namespace detail {
/// Whether `error` holds a CancelledError.
inline bool is_cancellation(const std::exception_ptr& error) {
    if (!error) return false;
    try {
        std::rethrow_exception(error);
    } catch (const CancelledError&) {
        return true;
    } catch (...) {
        return false;
    }
}
}  // namespace detail

}  // namespace asyncio
