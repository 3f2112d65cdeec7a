// Test executables that link counting_new.cpp replace the global operator
// new with one that counts its calls, to show that a steady state allocates
// nothing from the global heap.
#pragma once

namespace asyncio_test {

/// Calls of any global operator new so far, on every thread.
long global_allocations() noexcept;

}  // namespace asyncio_test
