// Starting a child on Windows: what CPython's subprocess.Popen does there
// (_execute_child with CreateProcessW) and windows_utils.pipe: a named pipe
// per redirected stream, the parent's end overlapped for the IOCP backend,
// the child's end inheritable, and only those three handles inherited.
#include "asyncio/detail/native.hpp"  // winsock2.h, then windows.h

#include <io.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "../internal.hpp"
#include "spawn.hpp"

namespace asyncio::detail {

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
    if (this != &other) {
        OwnedFd old(std::exchange(fd_, std::exchange(other.fd_, -1)));
    }
    return *this;
}

OwnedFd::~OwnedFd() {
    if (fd_ >= 0) ::CloseHandle(reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd_)));
}

namespace {

constexpr std::array<const char*, 3> kStreamNames{"stdin_", "stdout_", "stderr_"};

HANDLE as_handle(const OwnedFd& fd) noexcept {
    return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd.get()));
}

OwnedFd own(HANDLE handle) noexcept {
    return OwnedFd(static_cast<int>(reinterpret_cast<std::intptr_t>(handle)));
}

[[noreturn]] void throw_last_error(const std::string& call) {
    throw os_error(errno_from_windows(::GetLastError()), call);
}

std::wstring widen(std::string_view text) {
    if (text.empty()) return {};
    const int n = ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text.data(),
                                        static_cast<int>(text.size()), nullptr, 0);
    if (n <= 0) throw std::invalid_argument("not valid UTF-8: " + std::string(text));
    std::wstring out(static_cast<std::size_t>(n), L'\0');
    ::MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text.data(), static_cast<int>(text.size()),
                          out.data(), n);
    return out;
}

/// subprocess.list2cmdline: the quoting the C runtime's argv parser undoes.
std::string command_line(const std::vector<std::string>& argv) {
    std::string out;
    for (const std::string& arg : argv) {
        if (!out.empty()) out += ' ';
        const bool quote = arg.empty() || arg.find_first_of(" \t") != std::string::npos;
        if (quote) out += '"';
        std::size_t backslashes = 0;
        for (char c : arg) {
            if (c == '\\') {
                ++backslashes;
                continue;
            }
            if (c == '"') {
                out.append(backslashes * 2 + 1, '\\');  // the backslashes, then \"
            } else {
                out.append(backslashes, '\\');
            }
            backslashes = 0;
            out += c;
        }
        out.append(quote ? backslashes * 2 : backslashes, '\\');
        if (quote) out += '"';
    }
    return out;
}

/// A pipe for one of the child's streams (windows_utils.pipe): the
/// parent's end, overlapped, and the child's, inheritable.
struct PipeEnds {
    OwnedFd parent;
    OwnedFd child;
};

PipeEnds make_pipe(bool child_reads) {
    static std::atomic<unsigned> counter{0};
    const std::wstring name = widen(fmt::format(R"(\\.\pipe\python-asyncio-cpp-{}-{})",
                                                ::GetCurrentProcessId(), counter.fetch_add(1)));
    constexpr DWORD kBuffer = 8192;  // windows_utils.BUFSIZE
    const DWORD direction = child_reads ? PIPE_ACCESS_OUTBOUND : PIPE_ACCESS_INBOUND;
    HANDLE server = ::CreateNamedPipeW(
        name.c_str(), direction | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
        PIPE_TYPE_BYTE | PIPE_WAIT, 1, kBuffer, kBuffer, 0, nullptr);
    if (server == INVALID_HANDLE_VALUE) throw_last_error("CreateNamedPipeW");
    PipeEnds ends;
    ends.parent = own(server);
    SECURITY_ATTRIBUTES inheritable{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
    HANDLE client = ::CreateFileW(name.c_str(), child_reads ? GENERIC_READ : GENERIC_WRITE, 0,
                                  &inheritable, OPEN_EXISTING, 0, nullptr);
    if (client == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(pipe)");
    ends.child = own(client);
    return ends;
}

OwnedFd inheritable_copy(HANDLE handle, const char* what) {
    HANDLE copy = nullptr;
    if (!::DuplicateHandle(::GetCurrentProcess(), handle, ::GetCurrentProcess(), &copy, 0, TRUE,
                           DUPLICATE_SAME_ACCESS)) {
        throw_last_error(fmt::format("DuplicateHandle({})", what));
    }
    return own(copy);
}

OwnedFd open_devnull() {
    SECURITY_ATTRIBUTES inheritable{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
    HANDLE null =
        ::CreateFileW(L"NUL", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                      &inheritable, OPEN_EXISTING, 0, nullptr);
    if (null == INVALID_HANDLE_VALUE) throw_last_error("CreateFileW(NUL)");
    return own(null);
}

/// The child's three standard handles (inheritable copies the parent
/// closes after the spawn) and the parent's ends of the pipes.
struct ChildStdio {
    std::array<OwnedFd, 3> child;
    std::array<OwnedFd, 3> parent_ends;
};

ChildStdio plan_stdio(const SubprocessOptions& opts) {
    const std::array<Redirect, 3> redirects{opts.stdin_, opts.stdout_, opts.stderr_};
    constexpr std::array<DWORD, 3> kStandard{STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
    ChildStdio stdio;
    for (int stream = 0; stream < 3; ++stream) {
        const Redirect& redirect = redirects[stream];
        switch (redirect.kind()) {
            case Redirect::Kind::inherit: {
                HANDLE own_handle = ::GetStdHandle(kStandard[stream]);
                if (own_handle != nullptr && own_handle != INVALID_HANDLE_VALUE)
                    stdio.child[stream] = inheritable_copy(own_handle, kStreamNames[stream]);
                break;
            }
            case Redirect::Kind::pipe: {
                PipeEnds ends = make_pipe(stream == 0);
                stdio.child[stream] = std::move(ends.child);
                stdio.parent_ends[stream] = std::move(ends.parent);
                break;
            }
            case Redirect::Kind::devnull:
                stdio.child[stream] = open_devnull();
                break;
            case Redirect::Kind::stdout_:
                if (stream != 2) {
                    throw std::invalid_argument(fmt::format(
                        "STDOUT is only valid for stderr_, not {}", kStreamNames[stream]));
                }
                if (stdio.child[1]) {
                    stdio.child[2] = inheritable_copy(as_handle(stdio.child[1]), "stdout_");
                }
                break;
            case Redirect::Kind::fd: {
                const int fd = redirect.fd();
                if (fd < 0) {
                    throw std::invalid_argument(
                        fmt::format("{}: invalid file descriptor {}", kStreamNames[stream], fd));
                }
                // As Popen on Windows: a C runtime descriptor.
                const auto handle = reinterpret_cast<HANDLE>(::_get_osfhandle(fd));
                if (handle == INVALID_HANDLE_VALUE) {
                    throw os_error(EBADF, fmt::format("{} = {}", kStreamNames[stream], fd));
                }
                stdio.child[stream] = inheritable_copy(handle, kStreamNames[stream]);
                break;
            }
        }
    }
    return stdio;
}

/// CreateProcessW's environment block: sorted NAME=value strings, each
/// NUL-terminated, and one more NUL.
std::wstring environment_block(const std::map<std::string, std::string>& env) {
    std::wstring block;
    for (const auto& [name, value] : env) {
        if (name.empty() || name.find('=', 1) != std::string::npos) {
            throw std::invalid_argument(
                fmt::format("illegal environment variable name '{}'", name));
        }
        block += widen(name + "=" + value);
        block += L'\0';
    }
    block += L'\0';
    return block;
}

}  // namespace

SpawnedChild spawn_child(const std::vector<std::string>& argv, const SubprocessOptions& opts) {
    if (argv.empty() || argv.front().empty()) throw os_error(ENOENT, "CreateProcess ''");
    check_child_arguments(argv, opts);
    std::wstring environment;
    if (opts.env) environment = environment_block(*opts.env);
    std::wstring command = widen(command_line(argv));
    const std::wstring cwd = opts.cwd ? widen(*opts.cwd) : std::wstring();

    ChildStdio stdio = plan_stdio(opts);
    // Only the three standard handles are inherited (CPython's close_fds
    // with a handle list).
    std::vector<HANDLE> inherited;
    for (const OwnedFd& handle : stdio.child) {
        if (handle) inherited.push_back(as_handle(handle));
    }
    SIZE_T size = 0;
    ::InitializeProcThreadAttributeList(nullptr, 1, 0, &size);
    std::vector<char> attributes_storage(size);
    auto* attributes = reinterpret_cast<LPPROC_THREAD_ATTRIBUTE_LIST>(attributes_storage.data());
    if (!::InitializeProcThreadAttributeList(attributes, 1, 0, &size))
        throw_last_error("InitializeProcThreadAttributeList");
    struct Cleanup {
        LPPROC_THREAD_ATTRIBUTE_LIST list;
        ~Cleanup() { ::DeleteProcThreadAttributeList(list); }
    } cleanup{attributes};
    if (!inherited.empty() &&
        !::UpdateProcThreadAttribute(attributes, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                     inherited.data(), inherited.size() * sizeof(HANDLE), nullptr,
                                     nullptr)) {
        throw_last_error("UpdateProcThreadAttribute");
    }

    STARTUPINFOEXW startup{};
    startup.StartupInfo.cb = sizeof startup;
    startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    startup.StartupInfo.hStdInput = as_handle(stdio.child[0]);
    startup.StartupInfo.hStdOutput = as_handle(stdio.child[1]);
    startup.StartupInfo.hStdError = as_handle(stdio.child[2]);
    startup.lpAttributeList = attributes;
    PROCESS_INFORMATION info{};
    const DWORD flags = EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT;
    if (!::CreateProcessW(nullptr, command.data(), nullptr, nullptr, !inherited.empty(), flags,
                          opts.env ? environment.data() : nullptr, opts.cwd ? cwd.c_str() : nullptr,
                          &startup.StartupInfo, &info)) {
        throw_last_error(fmt::format("CreateProcess '{}'", argv.front()));
    }
    ::CloseHandle(info.hThread);
    SpawnedChild child;
    child.pid = static_cast<int>(info.dwProcessId);
    child.process = info.hProcess;
    child.pipes = std::move(stdio.parent_ends);
    return child;  // the child's ends close here, in the parent only
}

}  // namespace asyncio::detail
