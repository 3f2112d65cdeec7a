/* libuv_server: the libuv peer of the network benchmarks (run.py's echo and
 * http workloads).
 *
 *   libuv_server echo|http PORT
 *
 * Written as libuv's guide writes a TCP server (docs.libuv.org, "Networking";
 * its uvecho server): the default loop, uv_tcp_bind + uv_listen, and per
 * connection uv_read_start with an alloc_cb that mallocs the suggested size
 * (64 KiB), and a uv_write with its own uv_write_t per reply, freed in the
 * write callback.
 *
 *   echo  the read buffer itself becomes the write's buffer (no copy), freed
 *         when the write completes, as in the guide;
 *   http  the responses to every complete request in what was read
 *         (pipelined ones included) leave in one uv_write:
 *         examples/http_hello_server.cpp's answers (keep-alive,
 *         "Connection: close", HEAD, 405) byte for byte. An incomplete
 *         request head is kept in the connection until the rest arrives.
 *
 * PORT 0 picks a free port. Prints "Serving on 127.0.0.1:PORT" once
 * listening and exits 0 on SIGINT or SIGTERM (uv_signal_t; every handle is
 * closed and the loop runs until they are). TCP_NODELAY on every connection,
 * as the raw servers and asyncio set it. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char body[] = "Hello, World!";
static const char keep_alive_headers[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n";
static const char close_headers[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
    "Connection: close\r\n\r\n";
static const char not_allowed[] =
    "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

struct connection {
    uv_tcp_t handle; /* first: a uv_handle_t* is a struct connection* */
    bool closing;
    /* http: an incomplete request head carried over to the next read. */
    char* in;
    size_t in_len, in_cap;
};

/* A write request and the bytes it sends. */
struct write_req {
    uv_write_t req;
    uv_buf_t buf;
};

static uv_loop_t* loop;
static uv_tcp_t server;
static uv_signal_t sigint_handle, sigterm_handle;
static bool http_mode;

static void die(const char* what, int status) {
    fprintf(stderr, "libuv_server: %s: %s\n", what, uv_strerror(status));
    exit(1);
}

static void on_close(uv_handle_t* handle) {
    struct connection* c = handle->data;
    if (c == NULL) return; /* the listener or a signal handle: static */
    free(c->in);
    free(c);
}

static void close_connection(struct connection* c) {
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t*)&c->handle, on_close);
}

static void alloc_buffer(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
    (void)handle;
    buf->base = malloc(suggested_size);
    buf->len = buf->base == NULL ? 0 : suggested_size;
}

static void on_write(uv_write_t* req, int status) {
    struct write_req* w = (struct write_req*)req;
    if (status < 0 && status != UV_ECANCELED) close_connection((struct connection*)req->handle);
    free(w->buf.base);
    free(w);
}

/* Sends base[0..len) with a uv_write of its own; takes ownership of base
 * (malloc'd), which on_write frees. */
static void send_owned(struct connection* c, char* base, size_t len) {
    struct write_req* w = malloc(sizeof *w);
    if (w == NULL) {
        free(base);
        close_connection(c);
        return;
    }
    w->buf = uv_buf_init(base, (unsigned)len);
    int status = uv_write(&w->req, (uv_stream_t*)&c->handle, &w->buf, 1, on_write);
    if (status < 0) {
        free(base);
        free(w);
        close_connection(c);
    }
}

static void on_shutdown(uv_shutdown_t* req, int status) {
    (void)status;
    close_connection((struct connection*)req->handle);
    free(req);
}

static bool starts_with(const char* s, size_t len, const char* prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static bool equals_lower(const char* s, size_t len, const char* word) {
    if (len != strlen(word)) return false;
    for (size_t i = 0; i < len; ++i)
        if (tolower((unsigned char)s[i]) != word[i]) return false;
    return true;
}

/* A growable output buffer. */
struct out {
    char* data;
    size_t len, cap;
};

static bool append(struct out* o, const char* s, size_t n) {
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap < o->len + n)
            cap *= 2;
        char* grown = realloc(o->data, cap);
        if (grown == NULL) return false;
        o->data = grown;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    return true;
}

/* examples/http_hello_server.cpp's respond(): appends the response to the
 * request head req[0..len) (without the blank line) to out; returns whether
 * the connection stays open. */
static bool respond(const char* req, size_t len, struct out* o) {
    const char* eol = memmem(req, len, "\r\n", 2);
    size_t line_len = eol ? (size_t)(eol - req) : len;
    bool get = starts_with(req, line_len, "GET ");
    if (!get && !starts_with(req, line_len, "HEAD ")) {
        append(o, not_allowed, sizeof not_allowed - 1);
        return false;
    }
    bool http11 = line_len >= 9 && memcmp(req + line_len - 9, " HTTP/1.1", 9) == 0;
    const char* connection = NULL; /* its value, stripped */
    size_t connection_len = 0;
    while (eol != NULL) {
        const char* header = eol + 2;
        size_t rest = len - (size_t)(header - req);
        eol = memmem(header, rest, "\r\n", 2);
        size_t header_len = eol ? (size_t)(eol - header) : rest;
        const char* colon = memchr(header, ':', header_len);
        if (colon != NULL && colon - header == 10 && equals_lower(header, 10, "connection")) {
            const char* v = colon + 1;
            const char* v_end = header + header_len;
            while (v < v_end && (*v == ' ' || *v == '\t'))
                ++v;
            while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
                --v_end;
            connection = v;
            connection_len = (size_t)(v_end - v);
        }
    }
    bool keep_alive = http11
                          ? !(connection && equals_lower(connection, connection_len, "close"))
                          : (connection && equals_lower(connection, connection_len, "keep-alive"));
    if (keep_alive)
        append(o, keep_alive_headers, sizeof keep_alive_headers - 1);
    else
        append(o, close_headers, sizeof close_headers - 1);
    if (get) append(o, body, sizeof body - 1);
    return keep_alive;
}

/* Answers every complete request in data[0..len); keeps an incomplete head
 * in the connection. */
static void serve_http(struct connection* c, const char* data, size_t len) {
    struct out o = {0};
    bool keep_alive = true;
    const char* end;
    while (keep_alive && (end = memmem(data, len, "\r\n\r\n", 4)) != NULL) {
        keep_alive = respond(data, (size_t)(end - data), &o);
        len -= (size_t)(end + 4 - data);
        data = end + 4;
    }
    /* What is left is the start of the next request (data may point into
     * c->in itself: memmove). */
    if (keep_alive && len > c->in_cap) {
        char* grown = realloc(c->in, len);
        if (grown == NULL) {
            free(o.data);
            close_connection(c);
            return;
        }
        c->in = grown;
        c->in_cap = len;
    }
    if (keep_alive && len > 0) memmove(c->in, data, len);
    c->in_len = keep_alive ? len : 0;
    if (o.len > 0) send_owned(c, o.data, o.len);
    if (!keep_alive) {
        /* Close once the response has left: uv_shutdown waits for the
         * queued writes, uv_close would cancel them. */
        uv_read_stop((uv_stream_t*)&c->handle);
        uv_shutdown_t* req = malloc(sizeof *req);
        if (req == NULL || uv_shutdown(req, (uv_stream_t*)&c->handle, on_shutdown) != 0) {
            free(req);
            close_connection(c);
        }
    }
}

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    struct connection* c = (struct connection*)stream;
    if (nread > 0) {
        if (!http_mode) {
            send_owned(c, buf->base, (size_t)nread); /* the write frees it */
            return;
        }
        if (c->in_len == 0) {
            serve_http(c, buf->base, (size_t)nread);
        } else {
            /* Complete the carried-over head first. */
            size_t len = c->in_len + (size_t)nread;
            if (len > c->in_cap) {
                char* grown = realloc(c->in, len);
                if (grown == NULL) {
                    free(buf->base);
                    close_connection(c);
                    return;
                }
                c->in = grown;
                c->in_cap = len;
            }
            memcpy(c->in + c->in_len, buf->base, (size_t)nread);
            c->in_len = len;
            serve_http(c, c->in, len);
        }
    } else if (nread < 0) {
        /* UV_EOF: the client is done; anything else (a reset) ends it too. */
        close_connection(c);
    }
    free(buf->base);
}

static void on_connection(uv_stream_t* listener, int status) {
    if (status < 0) {
        fprintf(stderr, "libuv_server: new connection: %s\n", uv_strerror(status));
        return;
    }
    struct connection* c = calloc(1, sizeof *c);
    if (c == NULL) die("calloc", UV_ENOMEM);
    uv_tcp_init(loop, &c->handle);
    c->handle.data = c;
    if (uv_accept(listener, (uv_stream_t*)&c->handle) != 0) {
        close_connection(c);
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    uv_read_start((uv_stream_t*)&c->handle, alloc_buffer, on_read);
}

static void close_walk_cb(uv_handle_t* handle, void* arg) {
    (void)arg;
    if (handle->data != NULL)
        close_connection(handle->data);
    else if (!uv_is_closing(handle))
        uv_close(handle, on_close);
}

/* SIGINT or SIGTERM: close every handle; uv_run returns once they are. */
static void on_signal(uv_signal_t* handle, int signum) {
    (void)handle;
    (void)signum;
    uv_walk(loop, close_walk_cb, NULL);
}

int main(int argc, char** argv) {
    char* end = NULL;
    long port = argc == 3 ? strtol(argv[2], &end, 10) : -1;
    if (argc != 3 || *end != '\0' || port < 0 || port > 65535 ||
        (strcmp(argv[1], "echo") != 0 && strcmp(argv[1], "http") != 0)) {
        fprintf(stderr, "usage: %s echo|http PORT   (PORT 0: any free port)\n", argv[0]);
        return 2;
    }
    http_mode = strcmp(argv[1], "http") == 0;
    loop = uv_default_loop();

    uv_signal_init(loop, &sigint_handle);
    uv_signal_start(&sigint_handle, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm_handle);
    uv_signal_start(&sigterm_handle, on_signal, SIGTERM);

    /* uv_tcp_bind sets SO_REUSEADDR, as the raw servers do. */
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", (int)port, &addr);
    int status = uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0);
    if (status != 0) die("bind", status);
    status = uv_listen((uv_stream_t*)&server, SOMAXCONN, on_connection);
    if (status != 0) die("listen", status);
    int len = sizeof addr;
    status = uv_tcp_getsockname(&server, (struct sockaddr*)&addr, &len);
    if (status != 0) die("getsockname", status);
    printf("Serving on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout); /* run.py waits for this line on a pipe */

    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
