/* raw_epoll_server: the plain C baseline of the network benchmarks.
 *
 *   raw_epoll_server echo|http PORT
 *
 * One thread, one epoll instance, non-blocking sockets from accept4, and
 * TCP_NODELAY: the way a careful C programmer writes a single-threaded
 * server, which is what the library's servers are measured against.
 *
 *   echo  sends back whatever it receives;
 *   http  answers every request (anything ending with "\r\n\r\n", pipelined
 *         or split across reads) with the keep-alive response of
 *         examples/http_hello_server.cpp.
 *
 * PORT 0 picks a free port. Prints "Serving on 127.0.0.1:PORT" once
 * listening and exits 0 on SIGINT or SIGTERM.
 *
 * Level-triggered on purpose: a readable connection costs exactly one recv
 * per wake-up (edge-triggered would need a second recv to see EAGAIN), and a
 * reply is sent at once with one send. Only what the kernel does not take is
 * kept, and then the connection waits for EPOLLOUT and stops reading until
 * it is flushed, so a client that does not read cannot make it buffer
 * without bound. */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "server_common.h"

enum { READ_BUFFER_SIZE = 64 * 1024, MAX_EVENTS = 256 };

struct connection {
    int fd;
    unsigned http_matched; /* state of count_http_requests between reads */
    /* Reply bytes the kernel has not taken yet (pending_len > 0 only while
     * the connection waits for EPOLLOUT). */
    char* pending;
    size_t pending_off, pending_len, pending_cap;
};

/* One read buffer for every connection: a reply is sent (or copied to the
 * connection's pending bytes) before the next recv, so none needs its own. */
static char read_buffer[READ_BUFFER_SIZE];
/* HTTP replies are built here, grown to the largest pipelined batch seen. */
static char* reply_buffer;
static size_t reply_cap;

/* epoll_data tags of the two fds that are not connections. */
static struct connection listener_tag, signal_tag;

static int epoll_fd;
static enum server_mode mode;

static void close_connection(struct connection* c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

static void watch(struct connection* c, int op, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, op, c->fd, &ev) != 0) die("epoll_ctl");
}

/* Sends data; keeps what the kernel did not take and waits for EPOLLOUT.
 * Returns 0, or -1 if the connection was closed. */
static int send_or_keep(struct connection* c, const char* data, size_t len) {
    ssize_t sent = send(c->fd, data, len, MSG_NOSIGNAL);
    if (sent == (ssize_t)len) return 0;
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            close_connection(c);
            return -1;
        }
        sent = 0;
    }
    size_t rest = len - (size_t)sent;
    if (rest > c->pending_cap) {
        char* grown = realloc(c->pending, rest);
        if (grown == NULL) die("realloc");
        c->pending = grown;
        c->pending_cap = rest;
    }
    memcpy(c->pending, data + sent, rest);
    c->pending_off = 0;
    c->pending_len = rest;
    watch(c, EPOLL_CTL_MOD, EPOLLOUT);
    return 0;
}

/* EPOLLOUT (or an error) on a connection with pending bytes. */
static void flush_pending(struct connection* c) {
    ssize_t sent = send(c->fd, c->pending + c->pending_off, c->pending_len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) close_connection(c);
        return;
    }
    c->pending_off += (size_t)sent;
    c->pending_len -= (size_t)sent;
    if (c->pending_len == 0) watch(c, EPOLL_CTL_MOD, EPOLLIN); /* read again */
}

static void on_readable(struct connection* c) {
    ssize_t n = recv(c->fd, read_buffer, sizeof read_buffer, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_connection(c);
        return;
    }
    if (mode == MODE_ECHO) {
        send_or_keep(c, read_buffer, (size_t)n);
        return;
    }
    size_t requests = count_http_requests(read_buffer, (size_t)n, &c->http_matched);
    if (requests == 0) return; /* a request head still incomplete */
    size_t len = requests * HTTP_RESPONSE_LEN;
    if (len > reply_cap) {
        char* grown = realloc(reply_buffer, len);
        if (grown == NULL) die("realloc");
        reply_buffer = grown;
        reply_cap = len;
    }
    for (size_t i = 0; i < requests; ++i)
        memcpy(reply_buffer + i * HTTP_RESPONSE_LEN, http_response, HTTP_RESPONSE_LEN);
    /* All pipelined replies leave in one send. */
    send_or_keep(c, reply_buffer, len);
}

static void accept_all(int listen_fd) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            /* EAGAIN: all accepted. Anything else (EMFILE...): report it and
             * let the next wake-up try again. */
            if (errno != EAGAIN) perror("accept4");
            return;
        }
        set_nodelay(fd);
        struct connection* c = calloc(1, sizeof *c);
        if (c == NULL) die("calloc");
        c->fd = fd;
        watch(c, EPOLL_CTL_ADD, EPOLLIN);
    }
}

int main(int argc, char** argv) {
    int port;
    parse_command_line(argc, argv, &mode, &port);
    int signal_fd = stop_signal_fd();
    int listen_fd = listen_on_loopback(port, SOCK_NONBLOCK, &port);

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) die("epoll_create1");
    listener_tag.fd = listen_fd;
    watch(&listener_tag, EPOLL_CTL_ADD, EPOLLIN);
    signal_tag.fd = signal_fd;
    watch(&signal_tag, EPOLL_CTL_ADD, EPOLLIN);
    announce(port);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            struct connection* c = events[i].data.ptr;
            if (c == &signal_tag) return 0; /* SIGINT or SIGTERM */
            if (c == &listener_tag)
                accept_all(listen_fd);
            else if (c->pending_len > 0)
                flush_pending(c);
            else
                on_readable(c);
        }
    }
}
