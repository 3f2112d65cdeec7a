// The out-of-line part of locks.hpp: reporting a failed release at scope
// end needs the exception context, a header that locks.hpp keeps out.
#include "asyncio/locks.hpp"

#include "asyncio/exception_context.hpp"

namespace asyncio::detail {

void report_release_error(std::exception_ptr error) noexcept {
    try {
        if (LoopCore* loop = running_loop()) {
            ExceptionContext context;
            context.message = "Exception releasing a lock at the end of its scope";
            context.exception = std::move(error);
            loop->report(context);
            return;
        }
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        asyncio::log(LogLevel::error, "Exception releasing a lock at the end of its scope: {}",
                     e.what());
    } catch (...) {
        log_message(LogLevel::error, "Exception releasing a lock at the end of its scope");
    }
}

}  // namespace asyncio::detail
