/* tls_record_cost: what OpenSSL itself costs a TLS echo server per message,
 * the floor under the TLS echo workload (run.py --workload tls).
 *
 *   tls_record_cost CERTFILE KEYFILE [--size BYTES] [--messages N] [--rounds R]
 *
 * One process, no sockets: a client SSL and a server SSL (OpenSSL's defaults,
 * as echo_client --tls and the servers have them) joined by memory BIOs. The
 * handshake is done first; then, in batches of BATCH messages:
 *
 *   client: SSL_write(BYTES) each message         -> BATCH records, kept apart
 *   server: per record, as the TLS servers do it   (timed, the batch as one)
 *           BIO_write the record into its BIO, SSL_read(BYTES),
 *           SSL_write(BYTES), BIO_read the reply record out
 *   client: SSL_read(BYTES) each reply, checked
 *
 * Only the server's side is timed, in CPU time of the process
 * (CLOCK_PROCESS_CPUTIME_ID, as run.py reads the servers' from /proc), one
 * clock read per batch so that the clock costs nothing per message: that is
 * server_ns_per_msg. The two BIO copies are what any memory-BIO layer (ours,
 * CPython's sslproto, uvloop's) adds to a server on sockets; SSL_read +
 * SSL_write is the record work proper (AEAD, framing). To split them, each
 * round also runs a batch one call at a time (all BIO_writes, then all
 * SSL_reads, ...), timed per call kind: bio_in_ns, ssl_read_ns,
 * ssl_write_ns, bio_out_ns (their sum comes close to server_ns_per_msg, the
 * data being less hot). Figures are means per message over a round, then
 * the median over rounds, in one JSON line:
 *
 *   {"cipher": "...", "version": "TLSv1.3", "size": 1024, "record_bytes": 1046,
 *    "server_ns_per_msg": ..., "bio_in_ns": ..., "ssl_read_ns": ...,
 *    "ssl_write_ns": ..., "bio_out_ns": ..., "rounds": [...]} */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static void fail(const char* what) {
    fprintf(stderr, "tls_record_cost: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Moves everything pending in `from` (an SSL's outgoing BIO) into `to`
 * (the other's incoming BIO); the bytes moved. */
static size_t pump(BIO* from, BIO* to, unsigned char* scratch, size_t cap) {
    size_t moved = 0;
    for (;;) {
        int n = BIO_read(from, scratch, (int)cap);
        if (n <= 0) break;
        if (BIO_write(to, scratch, n) != n) fail("BIO_write");
        moved += (size_t)n;
    }
    return moved;
}

struct end {
    SSL* ssl;
    BIO* in;  /* what the peer sent, to be read by this SSL */
    BIO* out; /* what this SSL wrote, to be sent to the peer */
};

static struct end make_end(SSL_CTX* ctx) {
    struct end e;
    e.ssl = SSL_new(ctx);
    e.in = BIO_new(BIO_s_mem());
    e.out = BIO_new(BIO_s_mem());
    if (e.ssl == NULL || e.in == NULL || e.out == NULL) fail("SSL_new/BIO_new");
    BIO_set_mem_eof_return(e.in, -1); /* empty: "want more", as the servers' */
    SSL_set_bio(e.ssl, e.in, e.out);
    return e;
}

static int compare_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static double median(double* values, int n) {
    qsort(values, (size_t)n, sizeof *values, compare_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static void usage(const char* argv0) {
    fprintf(stderr, "usage: %s CERTFILE KEYFILE [--size BYTES] [--messages N] [--rounds R]\n",
            argv0);
    exit(2);
}

enum { MAX_ROUNDS = 101, BATCH = 1000 };

int main(int argc, char** argv) {
    if (argc < 3) usage(argv[0]);
    size_t size = 1024;
    long messages = 200000;
    int rounds = 5;
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 >= argc) usage(argv[0]);
        long value = strtol(argv[i + 1], NULL, 10);
        if (value < 1) usage(argv[0]);
        if (strcmp(argv[i], "--size") == 0)
            size = (size_t)value;
        else if (strcmp(argv[i], "--messages") == 0)
            messages = value;
        else if (strcmp(argv[i], "--rounds") == 0 && value <= MAX_ROUNDS)
            rounds = (int)value;
        else
            usage(argv[0]);
    }

    SSL_CTX* server_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
    if (server_ctx == NULL || client_ctx == NULL) fail("SSL_CTX_new");
    /* As ssl.create_default_context: TLS 1.2 and up. */
    SSL_CTX_set_min_proto_version(server_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(server_ctx, argv[1]) != 1) fail("the certificate");
    if (SSL_CTX_use_PrivateKey_file(server_ctx, argv[2], SSL_FILETYPE_PEM) != 1) fail("the key");
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);

    struct end server = make_end(server_ctx), client = make_end(client_ctx);
    SSL_set_accept_state(server.ssl);
    SSL_set_connect_state(client.ssl);
    size_t cap = size + 64 * 1024;
    unsigned char* scratch = malloc(cap);
    unsigned char* message = malloc(size);
    unsigned char* got = malloc(size);
    if (scratch == NULL || message == NULL || got == NULL) fail("malloc");

    for (int step = 0;; ++step) {
        int c = SSL_do_handshake(client.ssl);
        pump(client.out, server.in, scratch, cap);
        int s = SSL_do_handshake(server.ssl);
        pump(server.out, client.in, scratch, cap);
        if (c == 1 && s == 1) break;
        if (step > 10) fail("the handshake");
    }

    /* BATCH client records, and BATCH server replies, each in its own slot. */
    size_t slot = size + 256;
    unsigned char* records = malloc(slot * BATCH);
    unsigned char* replies = malloc(slot * BATCH);
    int* record_len = malloc(sizeof(int) * BATCH);
    int* reply_len = malloc(sizeof(int) * BATCH);
    if (records == NULL || replies == NULL || record_len == NULL || reply_len == NULL)
        fail("malloc");
    long batches = (messages + BATCH - 1) / BATCH;
    double total[MAX_ROUNDS], bio_in[MAX_ROUNDS], reads[MAX_ROUNDS], writes[MAX_ROUNDS],
        bio_out[MAX_ROUNDS];
    size_t record_bytes = 0;
    uint64_t seq = 0;
    /* One more round than measured: the first warms the caches up. */
    for (int r = -1; r < rounds; ++r) {
        uint64_t sum_total = 0, sum[4] = {0, 0, 0, 0};
        /* mode 0: the batch interleaved per message, as a server does it;
         * mode 1: one call kind at a time, to split the cost. */
        for (int mode = 0; mode < 2; ++mode) {
            for (long b = 0; b < batches; ++b) {
                size_t n = 0;
                for (int k = 0; k < BATCH; ++k) {
                    for (size_t i = 0; i < size; ++i)
                        message[i] = (unsigned char)((seq + (uint64_t)k) * 131 + i);
                    if (SSL_write_ex(client.ssl, message, size, &n) != 1 || n != size)
                        fail("the client's SSL_write");
                    record_len[k] = BIO_read(client.out, records + slot * k, (int)slot);
                    if (record_len[k] <= 0 || BIO_ctrl_pending(client.out) != 0)
                        fail("the client's record");
                }
                record_bytes = (size_t)record_len[0];

                if (mode == 0) {
                    uint64_t t0 = cpu_ns();
                    for (int k = 0; k < BATCH; ++k) {
                        if (BIO_write(server.in, records + slot * k, record_len[k]) !=
                            record_len[k])
                            fail("the server's BIO_write");
                        if (SSL_read_ex(server.ssl, got, size, &n) != 1 || n != size)
                            fail("the server's SSL_read");
                        if (SSL_write_ex(server.ssl, got, size, &n) != 1 || n != size)
                            fail("the server's SSL_write");
                        reply_len[k] = BIO_read(server.out, replies + slot * k, (int)slot);
                        if (reply_len[k] <= 0) fail("the server's record");
                    }
                    sum_total += cpu_ns() - t0;
                } else {
                    uint64_t t[5];
                    t[0] = cpu_ns();
                    for (int k = 0; k < BATCH; ++k)
                        if (BIO_write(server.in, records + slot * k, record_len[k]) !=
                            record_len[k])
                            fail("the server's BIO_write");
                    t[1] = cpu_ns();
                    /* The plaintexts go to the reply slots for now. */
                    for (int k = 0; k < BATCH; ++k)
                        if (SSL_read_ex(server.ssl, replies + slot * k, size, &n) != 1 || n != size)
                            fail("the server's SSL_read");
                    t[2] = cpu_ns();
                    for (int k = 0; k < BATCH; ++k)
                        if (SSL_write_ex(server.ssl, replies + slot * k, size, &n) != 1 ||
                            n != size)
                            fail("the server's SSL_write");
                    t[3] = cpu_ns();
                    for (int k = 0; k < BATCH; ++k) {
                        reply_len[k] = BIO_read(server.out, replies + slot * k,
                                                k + 1 < BATCH ? record_len[k] : (int)slot);
                        if (reply_len[k] <= 0) fail("the server's record");
                    }
                    t[4] = cpu_ns();
                    if (BIO_ctrl_pending(server.out) != 0) fail("the server's records");
                    for (int i = 0; i < 4; ++i)
                        sum[i] += t[i + 1] - t[i];
                }

                for (int k = 0; k < BATCH; ++k) {
                    for (size_t i = 0; i < size; ++i)
                        message[i] = (unsigned char)((seq + (uint64_t)k) * 131 + i);
                    if (BIO_write(client.in, replies + slot * k, reply_len[k]) != reply_len[k])
                        fail("the client's BIO_write");
                    if (SSL_read_ex(client.ssl, got, size, &n) != 1 || n != size ||
                        memcmp(got, message, size) != 0)
                        fail("the client's SSL_read (or the echo's bytes)");
                }
                seq += BATCH;
            }
        }
        if (r < 0) continue;
        double per = (double)(batches * BATCH);
        total[r] = (double)sum_total / per;
        bio_in[r] = (double)sum[0] / per;
        reads[r] = (double)sum[1] / per;
        writes[r] = (double)sum[2] / per;
        bio_out[r] = (double)sum[3] / per;
    }

    double each[MAX_ROUNDS];
    memcpy(each, total, sizeof(double) * (size_t)rounds);
    printf(
        "{\"cipher\": \"%s\", \"version\": \"%s\", \"size\": %zu, \"record_bytes\": %zu, "
        "\"messages_per_round\": %ld, \"server_ns_per_msg\": %.1f, ",
        SSL_get_cipher_name(server.ssl), SSL_get_version(server.ssl), size, record_bytes,
        batches * BATCH, median(each, rounds));
    printf(
        "\"bio_in_ns\": %.1f, \"ssl_read_ns\": %.1f, \"ssl_write_ns\": %.1f, "
        "\"bio_out_ns\": %.1f, \"rounds\": [",
        median(bio_in, rounds), median(reads, rounds), median(writes, rounds),
        median(bio_out, rounds));
    for (int r = 0; r < rounds; ++r)
        printf("%s%.1f", r ? ", " : "", total[r]);
    printf("]}\n");

    SSL_free(server.ssl);
    SSL_free(client.ssl);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    free(scratch);
    free(message);
    free(got);
    free(records);
    free(replies);
    free(record_len);
    free(reply_len);
    return 0;
}
