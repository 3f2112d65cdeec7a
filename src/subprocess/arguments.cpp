// The checks CPython makes on a child's arguments before starting it, on
// every OS (subprocess.Popen, _posixsubprocess and _winapi.CreateProcess).
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "spawn.hpp"

namespace asyncio::detail {
namespace {

void refuse_nul(std::string_view text, const char* what) {
    if (text.find('\0') != std::string_view::npos)
        throw std::invalid_argument(fmt::format("embedded null byte in {}", what));
}

}  // namespace

void check_child_arguments(const std::vector<std::string>& argv, const SubprocessOptions& opts) {
    for (const std::string& arg : argv)
        refuse_nul(arg, "argument");
    if (opts.cwd) refuse_nul(*opts.cwd, "cwd");
    if (!opts.env) return;
        // Windows keeps per-drive directories in names such as "=C:", so there
        // only an '=' after the first character is refused, as _winapi does.
#ifdef _WIN32
    constexpr std::size_t kNameStart = 1;
#else
    constexpr std::size_t kNameStart = 0;
#endif
    for (const auto& [name, value] : *opts.env) {
        refuse_nul(name, "environment");
        refuse_nul(value, "environment");
        if (name.empty() || name.find('=', kNameStart) != std::string::npos)
            throw std::invalid_argument(
                fmt::format("illegal environment variable name '{}'", name));
    }
}

}  // namespace asyncio::detail
