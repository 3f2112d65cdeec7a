// asyncio/version.hpp: the version macros, generated from
// project(asyncio VERSION ...), agree with each other, with the string and
// with the version CMake configured (ASYNCIO_TEST_PROJECT_VERSION).
#include <string>

#include "asyncio/version.hpp"
#include "support.hpp"

namespace {

static_assert(ASYNCIO_VERSION_MAJOR >= 0 && ASYNCIO_VERSION_MINOR >= 0 &&
              ASYNCIO_VERSION_PATCH >= 0);
// Usable in #if, as in CPython's PY_VERSION_HEX.
#if ASYNCIO_VERSION != \
    ASYNCIO_VERSION_MAJOR * 10000 + ASYNCIO_VERSION_MINOR * 100 + ASYNCIO_VERSION_PATCH
#error "ASYNCIO_VERSION does not combine MAJOR, MINOR and PATCH"
#endif

}  // namespace

TEST_CASE("ASYNCIO_VERSION is MAJOR * 10000 + MINOR * 100 + PATCH") {
    CHECK(ASYNCIO_VERSION_MINOR < 100);
    CHECK(ASYNCIO_VERSION_PATCH < 100);
    CHECK(ASYNCIO_VERSION / 10000 == ASYNCIO_VERSION_MAJOR);
    CHECK(ASYNCIO_VERSION / 100 % 100 == ASYNCIO_VERSION_MINOR);
    CHECK(ASYNCIO_VERSION % 100 == ASYNCIO_VERSION_PATCH);
}

TEST_CASE("ASYNCIO_VERSION_STRING is MAJOR.MINOR.PATCH") {
    std::string expected = std::to_string(ASYNCIO_VERSION_MAJOR) + "." +
                           std::to_string(ASYNCIO_VERSION_MINOR) + "." +
                           std::to_string(ASYNCIO_VERSION_PATCH);
    CHECK(std::string(ASYNCIO_VERSION_STRING) == expected);
}

TEST_CASE("the version macros are project(asyncio VERSION ...)") {
    CHECK(std::string(ASYNCIO_VERSION_STRING) == ASYNCIO_TEST_PROJECT_VERSION);
}
