// Per-thread state with a destructor, for the compiled library.
#pragma once

#ifdef _WIN32
#include <pthread.h>
#endif

namespace asyncio::detail {

/// The calling thread's T, made on first use and destroyed when the thread
/// exits: a function-local `thread_local T`, except on mingw-w64, whose
/// emulated TLS may free a thread_local's storage before its destructor
/// runs (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=80816). There the T
/// lives on the heap and a thread-exit key's destructor, which is handed
/// the pointer, destroys it.
template <class T>
T& thread_state() {
#ifdef _WIN32
    static thread_local T* state = nullptr;  // trivially destructible: safe
    if (state == nullptr) [[unlikely]] {
        static const pthread_key_t key = [] {
            pthread_key_t made{};
            ::pthread_key_create(&made, [](void* owned) { delete static_cast<T*>(owned); });
            return made;
        }();
        state = new T();
        ::pthread_setspecific(key, state);
    }
    return *state;
#else
    static thread_local T state;
    return state;
#endif
}

}  // namespace asyncio::detail
