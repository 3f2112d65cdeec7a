// What the streams side of subprocess (Process) needs of the transport.
#pragma once

#include "asyncio/coro.hpp"
#include "asyncio/transports.hpp"

namespace asyncio::detail {

/// base_subprocess._wait: the child's exit status once it exited and, if it
/// had not exited yet, its pipes closed and connection_lost ran.
/// `transport` must be one that open_subprocess made.
Coro<int> wait_subprocess(std::shared_ptr<SubprocessTransport> transport);

}  // namespace asyncio::detail
