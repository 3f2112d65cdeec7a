/* raw_uring_server: the io_uring baseline of the network benchmarks.
 *
 *   raw_uring_server echo|http PORT
 *
 * Same modes, command line and output as raw_epoll_server.c, written the way
 * a well-tuned liburing (2.3) server is:
 *
 *   - IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN: completions
 *     are processed only when this thread asks for them, with no
 *     inter-processor interrupts; falls back to COOP_TASKRUN, then to plain
 *     set-up, on kernels that refuse them;
 *   - the ring fd registered (io_uring_register_ring_fd), so io_uring_enter
 *     skips the fd table look-up;
 *   - one multishot accept on the listening socket;
 *   - one multishot recv per connection, selecting buffers from a provided
 *     buffer ring (io_uring_register_buf_ring + io_uring_buf_ring_*: 2.3 has
 *     no io_uring_setup_buf_ring); -ENOBUFS re-arms it;
 *   - one send in flight per connection, of everything received meanwhile;
 *   - exactly one io_uring_submit_and_wait per loop iteration: the SQEs
 *     prepared while handling the last batch of completions leave together.
 *
 * Copy or send from the ring buffer? This server copies the received bytes
 * into the connection's output buffer and gives the ring buffer back at once.
 * Sending straight from the ring buffer would save a memcpy of the message
 * (tens of nanoseconds for 64 bytes, against microseconds of kernel work per
 * message), but it keeps buffers out of the ring for a whole send, needs a
 * per-connection queue of buffers when a send is already in flight, and runs
 * the ring dry (-ENOBUFS, a re-arm, one more round trip) under load. Copying
 * keeps the ring full and small, and both modes share one send path (HTTP
 * replies are not the received bytes anyway).
 *
 * Everything the kernel may still write or read (the provided buffers, the
 * output buffer of a send in flight, the connection itself) stays alive
 * until the operation's last completion has arrived. */
#define _GNU_SOURCE
#include <liburing.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "server_common.h"

enum {
    SQ_ENTRIES = 1024,
    CQ_ENTRIES = 16384,  /* room for many multishot completions per wait */
    BUFFER_COUNT = 256,  /* power of two, as the ring requires */
    BUFFER_SIZE = 16384, /* larger reads arrive as several completions */
    BUFFER_GROUP = 0,
    /* A connection that holds this much unsent output stops receiving until
     * it has drained, so a client that does not read cannot make the server
     * buffer without bound. */
    HIGH_WATER = 1 << 20,
};

/* user_data: a connection pointer (8-byte aligned from calloc) or NULL, with
 * the operation in the low 3 bits. */
enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_SIGNAL, OP_CANCEL };

struct out_buffer {
    char* data;
    size_t off, len, cap;
};

struct connection {
    int fd;
    unsigned http_matched; /* state of count_http_requests between reads */
    bool recv_armed;       /* the multishot recv has not posted its last completion */
    bool send_in_flight;
    bool paused;  /* recv cancelled for back-pressure, re-armed once drained */
    bool closing; /* freed once no operation is in flight */
    /* `sending` is what the send in flight reads (never touched until its
     * completion); `queued` gathers what arrives meanwhile. */
    struct out_buffer sending, queued;
};

static struct io_uring ring;
static struct io_uring_buf_ring* buffer_ring;
static char* buffers;
static unsigned buffers_returned; /* added to the ring, made visible per batch */
static enum server_mode mode;
static int listen_fd, signal_fd;

static uint64_t tag(void* ptr, enum op op) {
    return (uint64_t)(uintptr_t)ptr | (uint64_t)op;
}

static struct io_uring_sqe* get_sqe(void) {
    struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) {
        /* The SQ ring is full (a burst of completions): submit early rather
         * than fail; the kernel copies the SQEs, so they can be reused. */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (sqe == NULL) die("io_uring_get_sqe");
    }
    return sqe;
}

static void arm_accept(void) {
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_ACCEPT));
}

static void arm_recv(struct connection* c) {
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, tag(c, OP_RECV));
    c->recv_armed = true;
}

static void start_send(struct connection* c) {
    struct out_buffer* out = &c->sending;
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_send(sqe, c->fd, out->data + out->off, out->len - out->off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(c, OP_SEND));
    c->send_in_flight = true;
}

/* Sends what is queued unless a send is already in flight (its completion
 * sends the rest): one send per connection at a time keeps the bytes in
 * order, since two sends in flight on one socket may complete in any order. */
static void flush(struct connection* c) {
    if (c->send_in_flight || c->queued.len == 0) return;
    struct out_buffer empty = c->sending;
    c->sending = c->queued;
    c->queued = empty;
    c->queued.off = c->queued.len = 0;
    start_send(c);
}

static void append(struct out_buffer* out, const char* data, size_t len) {
    if (out->len + len > out->cap) {
        size_t cap = out->cap ? out->cap : 4096;
        while (cap < out->len + len)
            cap *= 2;
        char* grown = realloc(out->data, cap);
        if (grown == NULL) die("realloc");
        out->data = grown;
        out->cap = cap;
    }
    memcpy(out->data + out->len, data, len);
    out->len += len;
}

/* Called last by every completion handler: frees a closing connection once
 * no operation on it is in flight. */
static void free_if_done(struct connection* c) {
    if (!c->closing || c->recv_armed || c->send_in_flight) return;
    close(c->fd);
    free(c->sending.data);
    free(c->queued.data);
    free(c);
}

/* Starts closing: a multishot recv still armed is ended by shutting the
 * socket down (its last completion then arrives with 0); closing the fd
 * would not end it, as the request holds its own reference to the file. */
static void close_connection(struct connection* c) {
    if (c->closing) return;
    c->closing = true;
    if (c->recv_armed) shutdown(c->fd, SHUT_RDWR);
}

/* Re-arms the recv of a connection paused at HIGH_WATER once its output has
 * drained and the cancelled recv has posted its last completion. */
static void resume_if_drained(struct connection* c) {
    if (!c->paused || c->closing || c->recv_armed || c->send_in_flight) return;
    c->paused = false;
    arm_recv(c);
}

static void give_back_buffer(unsigned bid) {
    io_uring_buf_ring_add(buffer_ring, buffers + (size_t)bid * BUFFER_SIZE, BUFFER_SIZE, bid,
                          io_uring_buf_ring_mask(BUFFER_COUNT), (int)buffers_returned++);
}

static void consume(struct connection* c, const char* data, size_t len) {
    if (mode == MODE_ECHO) {
        append(&c->queued, data, len);
        return;
    }
    size_t requests = count_http_requests(data, len, &c->http_matched);
    for (size_t i = 0; i < requests; ++i)
        append(&c->queued, http_response, HTTP_RESPONSE_LEN);
}

static void on_accept(const struct io_uring_cqe* cqe) {
    if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(); /* the multishot ended */
    if (cqe->res < 0) {
        /* EMFILE and the like: report, keep serving the others. */
        if (cqe->res != -ECONNABORTED) fprintf(stderr, "accept: %s\n", strerror(-cqe->res));
        return;
    }
    set_nodelay(cqe->res);
    struct connection* c = calloc(1, sizeof *c);
    if (c == NULL) die("calloc");
    c->fd = cqe->res;
    arm_recv(c);
}

static void on_recv(struct connection* c, const struct io_uring_cqe* cqe) {
    const bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) c->recv_armed = false;
    if (cqe->res > 0) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (!c->closing) consume(c, buffers + (size_t)bid * BUFFER_SIZE, (size_t)cqe->res);
        give_back_buffer(bid); /* copied: the ring gets it back at once */
        if (!c->closing) flush(c);
    } else if (cqe->res == -ENOBUFS) {
        /* The ring ran dry and the multishot ended: re-armed below. The
         * buffers returned in this batch become visible before the next
         * submit, which carries the new recv. */
    } else if (cqe->res == -ECANCELED && c->paused) {
        /* Paused on purpose: resumed by on_send once drained. */
    } else {
        close_connection(c); /* 0: the peer closed; < 0: an error */
    }
    if (!c->closing) {
        size_t unsent = c->sending.len - c->sending.off + c->queued.len;
        if (unsent >= HIGH_WATER && !c->paused) {
            /* Stop receiving until the output drains (see HIGH_WATER). */
            c->paused = true;
            if (c->recv_armed) {
                struct io_uring_sqe* sqe = get_sqe();
                io_uring_prep_cancel64(sqe, tag(c, OP_RECV), 0);
                io_uring_sqe_set_data64(sqe, tag(NULL, OP_CANCEL));
            }
        }
        /* A multishot recv also ends on -ENOBUFS, or after data (e.g. on a
         * CQ overflow): keep one armed unless paused on purpose. */
        if (!c->paused && !c->recv_armed) arm_recv(c);
    }
    resume_if_drained(c);
    free_if_done(c);
}

static void on_send(struct connection* c, const struct io_uring_cqe* cqe) {
    c->send_in_flight = false;
    if (cqe->res < 0 || c->closing) {
        close_connection(c); /* EPIPE, ECONNRESET...: the peer is gone */
        free_if_done(c);
        return;
    }
    c->sending.off += (size_t)cqe->res;
    if (c->sending.off < c->sending.len) {
        start_send(c); /* a short send: the rest of the same bytes */
        return;
    }
    c->sending.off = c->sending.len = 0;
    flush(c);
    resume_if_drained(c);
}

/* io_uring set-up, best flags first. Returns a name for the log. */
static const char* setup_ring(void) {
    static const struct {
        unsigned flags;
        const char* name;
    } attempts[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {0, "no task-run flags"},
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; ++i) {
        struct io_uring_params params = {0};
        params.flags = attempts[i].flags | IORING_SETUP_CQSIZE;
        params.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(SQ_ENTRIES, &ring, &params);
        if (rc == 0) return attempts[i].name;
        if (rc != -EINVAL) break; /* EPERM, ENOSYS, ENOMEM: no flags will help */
    }
    fprintf(stderr, "io_uring is not available: %s\n", strerror(-rc));
    exit(1);
}

static void setup_buffer_ring(void) {
    size_t ring_bytes = BUFFER_COUNT * sizeof(struct io_uring_buf);
    /* The kernel maps the ring; it must be page-aligned, hence mmap. */
    void* mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) die("mmap");
    buffer_ring = mem;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = BUFFER_COUNT, .bgid = BUFFER_GROUP};
    int rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc != 0) {
        fprintf(stderr, "io_uring_register_buf_ring: %s\n", strerror(-rc));
        exit(1);
    }
    buffers = aligned_alloc(4096, (size_t)BUFFER_COUNT * BUFFER_SIZE);
    if (buffers == NULL) die("aligned_alloc");
    io_uring_buf_ring_init(buffer_ring);
    for (unsigned bid = 0; bid < BUFFER_COUNT; ++bid)
        give_back_buffer(bid);
    io_uring_buf_ring_advance(buffer_ring, (int)buffers_returned);
    buffers_returned = 0;
}

int main(int argc, char** argv) {
    int port;
    parse_command_line(argc, argv, &mode, &port);
    signal_fd = stop_signal_fd();
    const char* setup = setup_ring();
    /* Not fatal: without it every io_uring_enter looks the ring fd up. */
    int registered = io_uring_register_ring_fd(&ring);
    setup_buffer_ring();
    listen_fd = listen_on_loopback(port, 0, &port);
    fprintf(stderr, "raw_uring_server: io_uring with %s%s\n", setup,
            registered == 1 ? ", ring fd registered" : ", ring fd not registered");

    arm_accept();
    struct io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_add(sqe, signal_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag(NULL, OP_SIGNAL));
    announce(port);

    for (;;) {
        int rc = io_uring_submit_and_wait(&ring, 1);
        /* EINTR: a stop/continue; EBUSY/EAGAIN: completions must be reaped
         * first. Either way, handle what has arrived and try again. */
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
            fprintf(stderr, "io_uring_submit_and_wait: %s\n", strerror(-rc));
            return 1;
        }
        bool stop = false;
        unsigned head, seen = 0;
        struct io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            uint64_t data = io_uring_cqe_get_data64(cqe);
            struct connection* c = (struct connection*)(uintptr_t)(data & ~(uint64_t)7);
            switch ((enum op)(data & 7)) {
                case OP_ACCEPT:
                    on_accept(cqe);
                    break;
                case OP_RECV:
                    on_recv(c, cqe);
                    break;
                case OP_SEND:
                    on_send(c, cqe);
                    break;
                case OP_SIGNAL:
                    stop = true; /* SIGINT or SIGTERM */
                    break;
                case OP_CANCEL:
                    break; /* the cancelled recv reports itself */
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (buffers_returned > 0) {
            io_uring_buf_ring_advance(buffer_ring, (int)buffers_returned);
            buffers_returned = 0;
        }
        if (stop) return 0;
    }
}
