/* raw_tls_server: the plain C baseline of the TLS echo workload.
 *
 *   raw_tls_server PORT --tls CERTFILE KEYFILE
 *
 * raw_epoll_server's echo (one thread, level-triggered epoll, non-blocking
 * sockets, TCP_NODELAY, one recv and one send per message) with TLS done
 * the way the library's layer, CPython's sslproto and uvloop do it: OpenSSL
 * over memory BIOs. Per message: recv, BIO_write the bytes into the SSL,
 * SSL_read until it wants more, SSL_write each piece back, BIO_read the
 * records out, send. Nothing else: no error-queue clearing beyond what
 * OpenSSL needs (the queue is only read after a failure), no copies beyond
 * the BIOs'. What it costs over raw_epoll_server's plain echo is what TLS
 * over memory BIOs costs a server on sockets at least, cache effects of
 * the kernel's work between messages included, which tls_record_cost's
 * tight loop does not have.
 *
 * The context is OpenSSL's defaults for a server (TLS 1.2 and up, as
 * Python's create_default_context), so it negotiates what the others do.
 * PORT 0 picks a free port. Prints "Serving on 127.0.0.1:PORT" once
 * listening and exits 0 on SIGINT or SIGTERM. */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server_common.h"

enum { BUFFER_SIZE = 64 * 1024, MAX_EVENTS = 256 };

struct connection {
    int fd;
    SSL* ssl;
    BIO* in;  /* records received, for the SSL to read */
    BIO* out; /* records the SSL wrote, to be sent */
    /* Record bytes the kernel has not taken yet (pending_len > 0 only while
     * the connection waits for EPOLLOUT). */
    char* pending;
    size_t pending_off, pending_len, pending_cap;
};

/* Shared by every connection: what recv got, what SSL_read decrypted, and
 * the records taken out of a BIO to be sent. */
static char read_buffer[BUFFER_SIZE];
static char plain_buffer[BUFFER_SIZE];
static char record_buffer[BUFFER_SIZE];

static struct connection listener_tag, signal_tag;
static int epoll_fd;
static SSL_CTX* context;

static void close_connection(struct connection* c) {
    close(c->fd);
    SSL_free(c->ssl); /* and its BIOs */
    free(c->pending);
    free(c);
}

static void watch(struct connection* c, int op, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, op, c->fd, &ev) != 0) die("epoll_ctl");
}

/* Sends what the SSL wrote; keeps what the kernel did not take and waits
 * for EPOLLOUT. -1 if the connection was closed. */
static int flush_records(struct connection* c) {
    while (BIO_ctrl_pending(c->out) > 0) {
        int len = BIO_read(c->out, record_buffer, sizeof record_buffer);
        if (len <= 0) break;
        if (c->pending_len > 0) { /* already waiting: queue behind */
            size_t need = c->pending_off + c->pending_len + (size_t)len;
            if (need > c->pending_cap) {
                char* grown = realloc(c->pending, need);
                if (grown == NULL) die("realloc");
                c->pending = grown;
                c->pending_cap = need;
            }
            memcpy(c->pending + c->pending_off + c->pending_len, record_buffer, (size_t)len);
            c->pending_len += (size_t)len;
            continue;
        }
        ssize_t sent = send(c->fd, record_buffer, (size_t)len, MSG_NOSIGNAL);
        if (sent == len) continue;
        if (sent < 0) {
            if (errno != EAGAIN && errno != EINTR) {
                close_connection(c);
                return -1;
            }
            sent = 0;
        }
        size_t rest = (size_t)len - (size_t)sent;
        if (rest > c->pending_cap) {
            char* grown = realloc(c->pending, rest);
            if (grown == NULL) die("realloc");
            c->pending = grown;
            c->pending_cap = rest;
        }
        memcpy(c->pending, record_buffer + sent, rest);
        c->pending_off = 0;
        c->pending_len = rest;
        watch(c, EPOLL_CTL_MOD, EPOLLOUT);
    }
    return 0;
}

static void flush_pending(struct connection* c) {
    ssize_t sent = send(c->fd, c->pending + c->pending_off, c->pending_len, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) close_connection(c);
        return;
    }
    c->pending_off += (size_t)sent;
    c->pending_len -= (size_t)sent;
    if (c->pending_len == 0) watch(c, EPOLL_CTL_MOD, EPOLLIN);
}

static void on_readable(struct connection* c) {
    ssize_t n = recv(c->fd, read_buffer, sizeof read_buffer, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_connection(c);
        return;
    }
    if (BIO_write(c->in, read_buffer, (int)n) != n) die("BIO_write");
    if (!SSL_is_init_finished(c->ssl)) {
        int rc = SSL_do_handshake(c->ssl);
        if (flush_records(c) != 0) return;
        if (rc != 1) {
            int error = SSL_get_error(c->ssl, rc);
            if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                close_connection(c);
            }
            return;
        }
    }
    for (;;) {
        size_t got = 0, written = 0;
        int rc = SSL_read_ex(c->ssl, plain_buffer, sizeof plain_buffer, &got);
        if (rc != 1) {
            int error = SSL_get_error(c->ssl, rc);
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
            ERR_clear_error(); /* close_notify, or a TLS error: the end */
            close_connection(c);
            return;
        }
        if (SSL_write_ex(c->ssl, plain_buffer, got, &written) != 1 || written != got) {
            ERR_clear_error();
            close_connection(c);
            return;
        }
    }
    flush_records(c);
}

static void accept_all(int listen_fd) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN) perror("accept4");
            return;
        }
        set_nodelay(fd);
        struct connection* c = calloc(1, sizeof *c);
        if (c == NULL) die("calloc");
        c->fd = fd;
        c->ssl = SSL_new(context);
        c->in = BIO_new(BIO_s_mem());
        c->out = BIO_new(BIO_s_mem());
        if (c->ssl == NULL || c->in == NULL || c->out == NULL) die("SSL_new");
        BIO_set_mem_eof_return(c->in, -1); /* empty: want more, not EOF */
        SSL_set_bio(c->ssl, c->in, c->out);
        SSL_set_accept_state(c->ssl);
        watch(c, EPOLL_CTL_ADD, EPOLLIN);
    }
}

int main(int argc, char** argv) {
    enum server_mode mode;
    int port;
    if (argc != 5 || strcmp(argv[2], "--tls") != 0) {
        fprintf(stderr, "usage: %s PORT --tls CERTFILE KEYFILE   (PORT 0: any free port)\n",
                argv[0]);
        return 2;
    }
    char* mode_argv[] = {argv[0], "echo", argv[1], NULL};
    parse_command_line(3, mode_argv, &mode, &port);
    context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(context, argv[3]) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, argv[4], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }

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
            if (c == &signal_tag) return 0;
            if (c == &listener_tag)
                accept_all(listen_fd);
            else if (c->pending_len > 0)
                flush_pending(c);
            else
                on_readable(c);
        }
    }
}
