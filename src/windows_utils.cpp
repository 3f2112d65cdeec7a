// What the rest of the library needs from Windows beyond the backend
// (Lib/asyncio/windows_utils.py): winsock's start-up, and its errors as the
// errno values every other part of the library tests.
#include "asyncio/detail/native.hpp"  // winsock2.h, then windows.h

#include <cerrno>
#include <mutex>
#include <system_error>

#include "internal.hpp"

namespace asyncio::detail {

int errno_from_windows(unsigned long error) noexcept {
    switch (error) {
        case 0:
            return 0;
        case WSAEWOULDBLOCK:
        case WSA_IO_PENDING:
            return EAGAIN;
        case WSAEINTR:
            return EINTR;
        case WSAEBADF:
        case WSAENOTSOCK:
        case ERROR_INVALID_HANDLE:
            return EBADF;
        case WSAEACCES:
        case ERROR_ACCESS_DENIED:
            return EACCES;
        case WSAEFAULT:
            return EFAULT;
        case WSAEINVAL:
        case ERROR_INVALID_PARAMETER:
            return EINVAL;
        case WSAEMFILE:
        case ERROR_TOO_MANY_OPEN_FILES:
            return EMFILE;
        case WSAEINPROGRESS:
            return EINPROGRESS;
        case WSAEALREADY:
            return EALREADY;
        case WSAEDESTADDRREQ:
            return EDESTADDRREQ;
        case WSAEMSGSIZE:
        case ERROR_MORE_DATA:
            return EMSGSIZE;
        case WSAEPROTOTYPE:
            return EPROTOTYPE;
        case WSAENOPROTOOPT:
            return ENOPROTOOPT;
        case WSAEPROTONOSUPPORT:
            return EPROTONOSUPPORT;
        case WSAEOPNOTSUPP:
        case WSAESOCKTNOSUPPORT:
        case ERROR_NOT_SUPPORTED:
            return EOPNOTSUPP;
        case WSAEAFNOSUPPORT:
        case WSAEPFNOSUPPORT:
            return EAFNOSUPPORT;
        case WSAEADDRINUSE:
            return EADDRINUSE;
        case WSAEADDRNOTAVAIL:
            return EADDRNOTAVAIL;
        case WSAENETDOWN:
            return ENETDOWN;
        case WSAENETUNREACH:
        case ERROR_NETWORK_UNREACHABLE:
            return ENETUNREACH;
        case WSAENETRESET:
            return ENETRESET;
        case WSAECONNABORTED:
        case ERROR_CONNECTION_ABORTED:
        case ERROR_REQUEST_ABORTED:
            return ECONNABORTED;
        case WSAECONNRESET:
        case ERROR_NETNAME_DELETED:
            return ECONNRESET;
        case WSAENOBUFS:
        case ERROR_NOT_ENOUGH_MEMORY:
        case ERROR_OUTOFMEMORY:
            return ENOBUFS;
        case WSAEISCONN:
            return EISCONN;
        case WSAENOTCONN:
            return ENOTCONN;
        case WSAESHUTDOWN:
        case ERROR_BROKEN_PIPE:
        case ERROR_NO_DATA:
        case ERROR_PIPE_NOT_CONNECTED:
            return EPIPE;
        case WSAETIMEDOUT:
        case ERROR_SEM_TIMEOUT:
            return ETIMEDOUT;
        case WSAECONNREFUSED:
        case ERROR_CONNECTION_REFUSED:
        case ERROR_PORT_UNREACHABLE:
            return ECONNREFUSED;
        case WSAEHOSTUNREACH:
        case ERROR_HOST_UNREACHABLE:
            return EHOSTUNREACH;
        case WSAENAMETOOLONG:
            return ENAMETOOLONG;
        case ERROR_OPERATION_ABORTED:
            return ECANCELED;
        case ERROR_FILE_NOT_FOUND:
        case ERROR_PATH_NOT_FOUND:
            return ENOENT;
        default:
            return EIO;
    }
}

int socket_error() noexcept {
    return errno_from_windows(static_cast<unsigned long>(::WSAGetLastError()));
}

void throw_socket_error(const std::string& call) {
    throw os_error(socket_error(), call);
}

void close_socket(int fd) noexcept {
    // A Socket also owns pipe handles (the pipe transports), as a POSIX fd
    // may be a pipe: those closesocket refuses (WSAENOTSOCK; wine may say
    // otherwise).
    if (::closesocket(static_cast<SOCKET>(fd)) != 0) {
        ::CloseHandle(reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd)));
    }
}

void ensure_winsock() {
    // Never WSACleanup: sockets may outlive any owner we could tie it to,
    // and the process's exit releases winsock anyway.
    static std::once_flag once;
    static int error = 0;
    std::call_once(once, [] {
        WSADATA data;
        error = ::WSAStartup(MAKEWORD(2, 2), &data);
    });
    if (error != 0)
        throw os_error(errno_from_windows(static_cast<unsigned long>(error)), "WSAStartup");
}

}  // namespace asyncio::detail
