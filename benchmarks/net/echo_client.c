/* echo_client: the load generator of the echo workloads, plain and TLS.
 *
 *   echo_client HOST PORT --connections N --size BYTES --duration SECONDS
 *               [--warmup SECONDS] [--marks] [--tls]
 *
 * Opens N connections and keeps each one in a closed loop: send a message of
 * BYTES bytes, wait until all of them came back, send the next. Single
 * threaded on epoll, so one core can drive a server with many connections.
 *
 * Every echoed byte is checked: each message has its own content (derived
 * from the connection and the message's sequence number), so lost,
 * duplicated, reordered or foreign bytes are all caught. A mismatch or a
 * connection closed by the server makes it exit 1.
 *
 * After the warm-up it measures for the duration and prints one JSON line:
 *   {"messages": M, "seconds": S, "msgs_per_s": ..., "p50_us": ..., "p99_us": ...,
 *    "mean_us": ..., "max_us": ..., "connections": N, "size": BYTES}
 * A message counts when its round trip ends inside the measured window; its
 * latency runs from the first send of its bytes to the last byte received.
 *
 * --tls speaks TLS (OpenSSL's defaults for a client, the server's certificate
 * not verified: the benchmark's is self-signed) over the same non-blocking
 * sockets and the same loop: the handshakes are done, blocking, before the
 * warm-up; then a message is one SSL_write and its echo as many SSL_reads as
 * it takes. The JSON line names the cipher (null without --tls), so a run can
 * check that every server negotiated the same one.
 *
 * --marks also prints "MEASURE_START" and "MEASURE_STOP" lines (flushed) at
 * the window's edges, before the JSON line: run.py samples the server's CPU
 * time when it reads them, so the warm-up and the connection set-up are not
 * charged to the measured messages.
 *
 * Connections are opened CONNECT_BATCH at a time, and each batch echoes one
 * message (not counted) on every connection before the next batch connects.
 * A connect returns once the kernel has queued the connection, before the
 * server accepts it; thousands of connects in a row overflow the listen
 * backlog of a server that accepts more slowly (start_server's default is
 * 100, as Python's), and the kernel then drops SYNs, which stalls a connect
 * for a second or more per retransmission. An echo proves the server
 * accepted the connection, so at most one batch waits in its queue. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Latency histogram: 1 us buckets below LINEAR_US, then for each power of two
 * above it LOG_SUB buckets (relative error under 1/LOG_SUB = 6%). */
enum { LINEAR_US = 65536, LOG_SUB = 16, LOG_OCTAVES = 32 };
static uint64_t linear_buckets[LINEAR_US];
static uint64_t log_buckets[LOG_OCTAVES][LOG_SUB];

struct connection {
    int fd;
    SSL* ssl; /* NULL without --tls */
    unsigned index;
    uint64_t seq;          /* number of the message in flight */
    size_t sent, received; /* bytes of it sent and received so far */
    bool want_write;       /* EPOLLOUT registered */
    uint64_t started_ns;   /* when its first byte was sent */
    unsigned char* message;
};

static size_t message_size;
static int epoll_fd;
static bool recording;
static uint64_t recorded, latency_sum_ns, latency_max_ns;
static SSL_CTX* tls_context; /* NULL without --tls */

/* Fewer than the smallest listen backlog among the servers measured (100). */
enum { CONNECT_BATCH = 64, SET_UP_TIMEOUT_S = 10 };
/* While set, a completed echo does not start the next message: the
 * connection's set-up message is done and the connection waits for the
 * others. set_up_pending counts the set-up echoes still to come. */
static bool setting_up;
static unsigned set_up_pending;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(const char* what) {
    perror(what);
    exit(1);
}

static void fail_tls(const char* what) {
    fprintf(stderr, "echo_client: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* One send (or SSL_write) of up to len bytes: the bytes taken, 0 if the
 * socket is full (wait for EPOLLOUT). */
static size_t write_some(struct connection* c, const unsigned char* data, size_t len) {
    if (c->ssl == NULL) {
        for (;;) {
            ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n >= 0) return (size_t)n;
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            fprintf(stderr, "echo_client: connection %u: send: %s\n", c->index, strerror(errno));
            exit(1);
        }
    }
    size_t n = 0;
    ERR_clear_error();
    int rc = SSL_write_ex(c->ssl, data, len, &n);
    if (rc == 1) return n;
    int error = SSL_get_error(c->ssl, rc);
    /* WANT_READ: TLS 1.3 has no renegotiation; a retry on the next event. */
    if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) return 0;
    fprintf(stderr, "echo_client: connection %u: SSL_write failed (error %d)\n", c->index, error);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* One recv (or SSL_read) of up to len bytes: the bytes read, 0 if there is
 * nothing to read now; exits if the server closed or failed. */
static size_t read_some(struct connection* c, unsigned char* buffer, size_t len) {
    const char* why;
    if (c->ssl == NULL) {
        for (;;) {
            ssize_t n = recv(c->fd, buffer, len, 0);
            if (n > 0) return (size_t)n;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) return 0;
            why = n == 0 ? "closed by the server" : strerror(errno);
            break;
        }
    } else {
        size_t n = 0;
        ERR_clear_error();
        int rc = SSL_read_ex(c->ssl, buffer, len, &n);
        if (rc == 1) return n;
        int error = SSL_get_error(c->ssl, rc);
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return 0;
        if (error == SSL_ERROR_ZERO_RETURN) {
            why = "closed by the server (close_notify)";
        } else if (error == SSL_ERROR_SYSCALL && errno != 0) {
            why = strerror(errno);
        } else {
            fprintf(stderr, "echo_client: connection %u: SSL_read failed (error %d)\n", c->index,
                    error);
            ERR_print_errors_fp(stderr);
            exit(1);
        }
    }
    fprintf(stderr, "echo_client: connection %u: %s\n", c->index, why);
    exit(1);
}

/* Byte i of message seq on connection index: differs between messages and
 * between connections, so a byte in the wrong place does not match. */
static unsigned char pattern_byte(unsigned index, uint64_t seq, size_t i) {
    return (unsigned char)(seq * 131u + index * 7u + i);
}

static void record_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us < LINEAR_US) {
        ++linear_buckets[us];
    } else {
        int octave = 63 - __builtin_clzll(us); /* us in [2^octave, 2^(octave+1)) */
        int sub = (int)((us >> (octave - 4)) & (LOG_SUB - 1));
        int row = octave - 16; /* LINEAR_US is 2^16 */
        if (row >= LOG_OCTAVES) row = LOG_OCTAVES - 1, sub = LOG_SUB - 1;
        ++log_buckets[row][sub];
    }
    ++recorded;
    latency_sum_ns += ns;
    if (ns > latency_max_ns) latency_max_ns = ns;
}

/* The smallest bucket upper bound (us) below which a fraction q of the
 * recorded latencies lie. */
static double latency_quantile(double q) {
    uint64_t rank = (uint64_t)ceil(q * (double)recorded);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (int us = 0; us < LINEAR_US; ++us) {
        seen += linear_buckets[us];
        if (seen >= rank) return us + 1;
    }
    for (int row = 0; row < LOG_OCTAVES; ++row) {
        for (int sub = 0; sub < LOG_SUB; ++sub) {
            seen += log_buckets[row][sub];
            if (seen >= rank) {
                double base = ldexp(1.0, row + 16);
                return base + base * (sub + 1) / LOG_SUB;
            }
        }
    }
    return 0;
}

static void set_events(struct connection* c, bool want_write) {
    if (want_write == c->want_write) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0) fail("epoll_ctl");
    c->want_write = want_write;
}

/* Sends what the kernel takes of the current message; waits for EPOLLOUT
 * for the rest. */
static void send_some(struct connection* c) {
    while (c->sent < message_size) {
        size_t n = write_some(c, c->message + c->sent, message_size - c->sent);
        if (n == 0) break;
        c->sent += n;
    }
    set_events(c, c->sent < message_size);
}

static void start_message(struct connection* c) {
    for (size_t i = 0; i < message_size; ++i)
        c->message[i] = pattern_byte(c->index, c->seq, i);
    c->sent = c->received = 0;
    c->started_ns = now_ns();
    send_some(c);
}

enum read_result { READ_NOTHING, READ_PART, READ_COMPLETE };

/* Reads what has come of the echo; READ_COMPLETE if that completed the
 * message (and the next one started). */
static enum read_result read_echo(struct connection* c, unsigned char* buffer) {
    if (c->received == message_size) {
        /* Between its set-up echo and its first message: a read of the
         * rest (0 bytes) would look like the server's close. */
        if (read_some(c, buffer, 1) == 0) return READ_NOTHING;
        fprintf(stderr, "echo_client: connection %u: bytes before any message was sent\n",
                c->index);
        exit(1);
    }
    /* Never more than the rest of this message: the server cannot have more
     * to send, and anything extra would be an error caught below anyway. */
    size_t n = read_some(c, buffer, message_size - c->received);
    if (n == 0) return READ_NOTHING;
    for (size_t i = 0; i < n; ++i) {
        size_t at = c->received + (size_t)i;
        if (buffer[i] != pattern_byte(c->index, c->seq, at)) {
            fprintf(stderr,
                    "echo_client: connection %u, message %" PRIu64
                    ", byte %zu: got 0x%02x, expected 0x%02x\n",
                    c->index, c->seq, at, buffer[i], pattern_byte(c->index, c->seq, at));
            exit(1);
        }
    }
    c->received += n;
    if (c->received < message_size) return READ_PART;
    if (c->sent < message_size) {
        fprintf(stderr, "echo_client: connection %u: echo arrived before the message was sent\n",
                c->index);
        exit(1);
    }
    if (recording) record_latency(now_ns() - c->started_ns);
    ++c->seq;
    if (setting_up) {
        --set_up_pending;
        return READ_NOTHING; /* nothing more will come until the next message */
    }
    start_message(c);
    return READ_COMPLETE;
}

static void on_readable(struct connection* c, unsigned char* buffer) {
    if (c->ssl == NULL) {
        read_echo(c, buffer);
        return;
    }
    /* A TLS record may come in pieces, and SSL_read may leave part of one
     * decrypted in the SSL: read until it wants more from the socket, which
     * epoll then reports. */
    while (read_echo(c, buffer) == READ_PART) {
    }
}

/* Waits up to timeout_ms for events and serves them. */
static void serve_events(int timeout_ms, unsigned char* buffer) {
    struct epoll_event events[256];
    int n = epoll_wait(epoll_fd, events, 256, timeout_ms);
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; ++i) {
        struct connection* c = events[i].data.ptr;
        if (events[i].events & EPOLLOUT) send_some(c);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, buffer);
    }
}

static int connect_to(const struct addrinfo* addr) {
    int fd = socket(addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    if (connect(fd, addr->ai_addr, addr->ai_addrlen) != 0) fail("connect");
    int one = 1;
    /* Each message must leave at once: Nagle would hold back the next one. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail("TCP_NODELAY");
    return fd;
}

/* The TLS session of a connection, its handshake done (blocking, before the
 * socket is made non-blocking). */
static SSL* start_tls(int fd) {
    SSL* ssl = SSL_new(tls_context);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) fail_tls("SSL_new");
    if (SSL_connect(ssl) != 1) fail_tls("the TLS handshake");
    return ssl;
}

static void usage(const char* argv0) {
    fprintf(stderr,
            "usage: %s HOST PORT --connections N --size BYTES --duration SECONDS "
            "[--warmup SECONDS] [--marks] [--tls]\n",
            argv0);
    exit(2);
}

static double parse_number(const char* text, const char* argv0, double min) {
    char* end = NULL;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= min)) usage(argv0);
    return value;
}

static void mark(const char* line) {
    puts(line);
    fflush(stdout);
}

int main(int argc, char** argv) {
    if (argc < 3) usage(argv[0]);
    const char* host = argv[1];
    const char* port = argv[2];
    unsigned connections = 0;
    double duration = 0, warmup = 0;
    bool marks = false, tls = false;
    for (int i = 3; i < argc; ++i) {
        const char* opt = argv[i];
        if (strcmp(opt, "--marks") == 0) {
            marks = true;
            continue;
        }
        if (strcmp(opt, "--tls") == 0) {
            tls = true;
            continue;
        }
        if (i + 1 >= argc) usage(argv[0]);
        const char* value = argv[++i];
        if (strcmp(opt, "--connections") == 0)
            connections = (unsigned)parse_number(value, argv[0], 1);
        else if (strcmp(opt, "--size") == 0)
            message_size = (size_t)parse_number(value, argv[0], 1);
        else if (strcmp(opt, "--duration") == 0)
            duration = parse_number(value, argv[0], 0.001);
        else if (strcmp(opt, "--warmup") == 0)
            warmup = parse_number(value, argv[0], 0);
        else
            usage(argv[0]);
    }
    if (connections == 0 || message_size == 0 || duration == 0) usage(argv[0]);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo* addr = NULL;
    int rc = getaddrinfo(host, port, &hints, &addr);
    if (rc != 0) {
        fprintf(stderr, "echo_client: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 1;
    }

    if (tls) {
        tls_context = SSL_CTX_new(TLS_client_method());
        if (tls_context == NULL) fail_tls("SSL_CTX_new");
        SSL_CTX_set_verify(tls_context, SSL_VERIFY_NONE, NULL);
        /* As the plain client: what the socket takes now, the rest later. */
        SSL_CTX_set_mode(tls_context,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) fail("epoll_create1");
    struct connection* conns = calloc(connections, sizeof *conns);
    unsigned char* buffer = malloc(message_size);
    if (conns == NULL || buffer == NULL) fail("malloc");
    setting_up = true;
    for (unsigned first = 0; first < connections; first += CONNECT_BATCH) {
        unsigned end = connections - first < CONNECT_BATCH ? connections : first + CONNECT_BATCH;
        for (unsigned i = first; i < end; ++i) {
            struct connection* c = &conns[i];
            c->fd = connect_to(addr);
            if (tls) c->ssl = start_tls(c->fd);
            if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) fail("O_NONBLOCK");
            c->index = i;
            c->message = malloc(message_size);
            if (c->message == NULL) fail("malloc");
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0) fail("epoll_ctl");
            ++set_up_pending;
            start_message(c);
        }
        /* Bounded, so that a server that stopped answering fails the run
         * rather than hanging it. */
        const uint64_t give_up_ns = now_ns() + SET_UP_TIMEOUT_S * 1000000000ull;
        while (set_up_pending > 0) {
            if (now_ns() >= give_up_ns) {
                fprintf(stderr,
                        "echo_client: %u of connections %u-%u not echoed within %d s of "
                        "connecting\n",
                        set_up_pending, first, end - 1, SET_UP_TIMEOUT_S);
                exit(1);
            }
            serve_events(100, buffer);
        }
    }
    setting_up = false;
    freeaddrinfo(addr);

    const uint64_t start_ns = now_ns();
    uint64_t window_start_ns = start_ns + (uint64_t)(warmup * 1e9);
    uint64_t window_end_ns = window_start_ns + (uint64_t)(duration * 1e9);
    recording = warmup == 0;
    if (recording && marks) mark("MEASURE_START");
    for (unsigned i = 0; i < connections; ++i)
        start_message(&conns[i]);

    uint64_t now = start_ns;
    for (;;) {
        uint64_t deadline = recording ? window_end_ns : window_start_ns;
        if (now >= deadline) {
            if (recording) break;
            /* Warm-up over: measure from here. */
            recording = true;
            window_start_ns = now;
            window_end_ns = now + (uint64_t)(duration * 1e9);
            if (marks) mark("MEASURE_START");
            continue;
        }
        serve_events((int)((deadline - now + 999999) / 1000000), buffer);
        now = now_ns();
    }
    if (marks) mark("MEASURE_STOP");

    double seconds = (double)(now - window_start_ns) / 1e9;
    printf("{\"messages\": %" PRIu64
           ", \"seconds\": %.6f, \"msgs_per_s\": %.1f, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f, \"mean_us\": %.1f, \"max_us\": %.1f, \"connections\": %u, "
           "\"size\": %zu, \"cipher\": %s%s%s}\n",
           recorded, seconds, (double)recorded / seconds, latency_quantile(0.50),
           latency_quantile(0.99), recorded ? (double)latency_sum_ns / (double)recorded / 1e3 : 0.0,
           (double)latency_max_ns / 1e3, connections, message_size, tls ? "\"" : "",
           tls ? SSL_get_cipher_name(conns[0].ssl) : "null", tls ? "\"" : "");
    fflush(stdout);

    for (unsigned i = 0; i < connections; ++i) {
        if (conns[i].ssl != NULL) {
            SSL_shutdown(conns[i].ssl); /* our close_notify; not waiting for theirs */
            SSL_free(conns[i].ssl);
        }
        close(conns[i].fd);
        free(conns[i].message);
    }
    free(conns);
    free(buffer);
    close(epoll_fd);
    SSL_CTX_free(tls_context);
    return 0;
}
