/* What the raw C servers (raw_epoll_server.c, raw_uring_server.c) share: the
 * command line, the listening socket, the HTTP request counter and the
 * response bytes, and the signal fd that stops them. Keeping these in one
 * place means the two servers differ only in how they wait for I/O, which is
 * what the network benchmarks compare. */
#ifndef ASYNCIO_BENCH_SERVER_COMMON_H
#define ASYNCIO_BENCH_SERVER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

enum server_mode { MODE_ECHO, MODE_HTTP };

/* Byte for byte the keep-alive answer of examples/http_hello_server.cpp, so
 * that wrk moves the same bytes whichever server it measures. */
static const char http_response[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
#define HTTP_RESPONSE_LEN (sizeof http_response - 1)

static inline void die(const char* what) {
    perror(what);
    exit(1);
}

/* argv: MODE PORT. Exits with a usage message on anything else. */
static inline void parse_command_line(int argc, char** argv, enum server_mode* mode, int* port) {
    char* end = NULL;
    long value = argc == 3 ? strtol(argv[2], &end, 10) : -1;
    if (argc != 3 || *end != '\0' || value < 0 || value > 65535 ||
        (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "http") != 0)) {
        fprintf(stderr, "usage: %s echo|http PORT   (PORT 0: any free port)\n", argv[0]);
        exit(2);
    }
    *mode = strcmp(argv[1], "echo") == 0 ? MODE_ECHO : MODE_HTTP;
    *port = (int)value;
}

/* A listening TCP socket on 127.0.0.1:port; stores the port actually bound. */
static inline int listen_on_loopback(int port, int flags, int* bound_port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0) die("socket");
    int one = 1;
    /* A benchmark restarts servers on fixed ports; TIME_WAIT must not block it. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("SO_REUSEADDR");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0) die("bind");
    if (listen(fd, SOMAXCONN) != 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr*)&addr, &len) != 0) die("getsockname");
    *bound_port = ntohs(addr.sin_port);
    return fd;
}

/* The line run.py waits for; flushed because stdout is a pipe there. */
static inline void announce(int port) {
    printf("Serving on 127.0.0.1:%d\n", port);
    fflush(stdout);
}

/* Blocks SIGINT and SIGTERM and returns a signal fd that becomes readable
 * when one arrives. Waiting on it among the sockets has no race, unlike a
 * flag set by a handler and checked before each wait. */
static inline int stop_signal_fd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) die("sigprocmask");
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) die("signalfd");
    /* A peer that resets its connection must not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    return fd;
}

static inline void set_nodelay(int fd) {
    int one = 1;
    /* Small replies must leave at once, not wait for Nagle's timer. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) die("TCP_NODELAY");
}

/* Counts the requests that end within data[0..len): a request ends at
 * "\r\n\r\n". *matched carries how much of that terminator the previous
 * chunk ended with, so requests split across reads and several pipelined
 * requests in one read are both counted exactly, without buffering them. */
static inline size_t count_http_requests(const char* data, size_t len, unsigned* matched) {
    static const char terminator[4] = {'\r', '\n', '\r', '\n'};
    size_t requests = 0;
    unsigned m = *matched;
    for (size_t i = 0; i < len; ++i) {
        char c = data[i];
        if (c == terminator[m]) {
            if (++m == 4) {
                ++requests;
                m = 0;
            }
        } else {
            /* The only prefix of the terminator that can restart here is "\r". */
            m = c == '\r' ? 1 : 0;
        }
    }
    *matched = m;
    return requests;
}

#endif
