// asyncio for C++: Python's asyncio as a C++20 coroutine library.
// The umbrella header; each module is also usable on its own.
#pragma once

#include "asyncio/asyncgen.hpp"
#include "asyncio/backend.hpp"
#include "asyncio/contextvars.hpp"
#include "asyncio/coro.hpp"
#include "asyncio/exceptions.hpp"
#include "asyncio/future.hpp"
#include "asyncio/handle.hpp"
#include "asyncio/locks.hpp"
#include "asyncio/log.hpp"
#include "asyncio/loop.hpp"
#include "asyncio/policy.hpp"
#include "asyncio/queues.hpp"
#include "asyncio/runners.hpp"
#include "asyncio/task.hpp"
#include "asyncio/taskgroups.hpp"
#include "asyncio/tasks.hpp"
#include "asyncio/threads.hpp"
#include "asyncio/timeouts.hpp"
