// Test runner: Catch2's main plus `--backend <name>`, which selects the I/O
// backend of every loop the tests create (through ASYNCIO_BACKEND). A backend
// that this machine cannot run makes the whole executable exit with 77, which
// CTest reports as skipped. `--child-watcher <pidfd|sigchld>` likewise sets
// ASYNCIO_CHILD_WATCHER, how subprocesses' exits are watched.
#define CATCH_CONFIG_RUNNER
#include <cstdio>
#include <cstdlib>
#include <string>

#include "asyncio/backend.hpp"
#include "support.hpp"

#if ASYNCIO_CATCH_MAJOR >= 3
namespace CatchClara = Catch::Clara;
#else
namespace CatchClara = Catch::clara;
#endif

namespace {

void set_environment(const char* name, const char* value) {
#ifdef _WIN32
    ::_putenv_s(name, value);
#else
    ::setenv(name, value, 1);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    Catch::Session session;
    std::string backend;
    std::string child_watcher;
    auto cli =
        session.cli() |
        CatchClara::Opt(backend, "name")["--backend"]("I/O backend of the loops under test") |
        CatchClara::Opt(child_watcher, "pidfd|sigchld")["--child-watcher"](
            "how the subprocess tests watch their children");
    session.cli(cli);
    if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
    if (!backend.empty()) {
        auto kind = asyncio::backend_from_string(backend);
        if (!kind) {
            std::fprintf(stderr, "unknown backend '%s'\n", backend.c_str());
            return 2;
        }
        if (!asyncio::backend_available(*kind)) {
            std::fprintf(stderr, "backend '%s' is not available here: skipped\n", backend.c_str());
            return 77;
        }
        set_environment("ASYNCIO_BACKEND", backend.c_str());
    }
    if (!child_watcher.empty()) set_environment("ASYNCIO_CHILD_WATCHER", child_watcher.c_str());
    return session.run();
}
