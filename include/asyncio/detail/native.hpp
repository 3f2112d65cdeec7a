// The operating system's socket declarations, and the POSIX names the
// library's interface is written in where the OS has other ones.
//
// The library speaks POSIX: descriptors are `int`, a scatter/gather element
// is an `iovec`, a message is a `msghdr`, failures are errno values. On
// Windows, as in CPython, a SOCKET is carried in an `int` (its handle values
// fit; socket.fileno() is an int there too), winsock's errors are mapped to
// errno values by the library, and `iovec`/`msghdr` below stand in for
// WSABUF/WSAMSG, which the IOCP backend translates at submission.
#pragma once

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
// winsock2.h must come before windows.h, which the others include.
// clang-format off
#include <winsock2.h>
#include <ws2tcpip.h>
#include <afunix.h>
// clang-format on
#include <cstddef>
// shutdown(2)'s `how` under POSIX's names, which Python's socket module
// also gives winsock's SD_* values.
#ifndef SHUT_RD
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#endif
#else
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>
#endif

namespace asyncio::detail {

#ifdef _WIN32
/// POSIX's scatter/gather element.
struct iovec {
    void* iov_base;
    std::size_t iov_len;
};

/// POSIX's sendmsg/recvmsg message: the fields the library uses.
struct msghdr {
    void* msg_name;
    ::socklen_t msg_namelen;
    iovec* msg_iov;
    std::size_t msg_iovlen;
    void* msg_control;
    std::size_t msg_controllen;
    int msg_flags;
};
#else
using ::iovec;
using ::msghdr;
#endif

}  // namespace asyncio::detail
