// Per-thread variables that the library and the code using it share: the
// running loop, the current context, the task being torn down.
#pragma once

#include "asyncio/export.hpp"

/// ASYNCIO_PER_THREAD(Type, name) declares `Type& name() noexcept`, this
/// thread's copy of a variable shared by libasyncio and its users, starting
/// zero-initialized; ASYNCIO_DEFINE_PER_THREAD(Type, name) goes in the one
/// file of src/ that defines it.
///
/// Elsewhere it is an inline thread_local, so the hot paths that read it
/// inline stay a TLS load, and the dynamic linker makes the one in a shared
/// libasyncio and the program's the same variable. A Windows DLL cannot
/// export a thread_local (dllimport of one is an error in GCC and MSVC), so
/// on Windows it lives in src/ behind an exported function, shared and
/// static builds alike.
#ifdef _WIN32
#define ASYNCIO_PER_THREAD(Type, name) ASYNCIO_EXPORT Type& name() noexcept
#define ASYNCIO_DEFINE_PER_THREAD(Type, name)       \
    Type& name() noexcept {                         \
        static constinit thread_local Type value{}; \
        return value;                               \
    }
#else
#define ASYNCIO_PER_THREAD(Type, name)                                         \
    ASYNCIO_EXPORT constinit inline thread_local Type name##_on_this_thread{}; \
    inline Type& name() noexcept {                                             \
        return name##_on_this_thread;                                          \
    }
#define ASYNCIO_DEFINE_PER_THREAD(Type, name) static_assert(true)
#endif
