/* The benchmark's UDP sender: valid lacrimosa framed events, as fast as it can or paced.
 *
 *   sender HOST PORT COUNT SIZE [RATE [SECONDS]]
 *
 * SIZE is the whole datagram (the 24-byte frame header included, so at least 24). RATE 0 (the
 * default) sends as fast as sendmmsg goes; otherwise batches leave at absolute deadlines
 * (clock_nanosleep, TIMER_ABSTIME) so that on average RATE datagrams leave per second. It stops
 * after COUNT datagrams or SECONDS seconds (0: no limit), whichever comes first, and prints
 * "SENT ELAPSED_NS" on stdout.
 *
 * The frames are made once, before the clock starts: a pool of POOL distinct frames (node 1,
 * stream i % 4, the frame's index in the payload), each with its CRC-32 computed by the small
 * table below, sent round-robin. So no per-datagram work is left in the sender but the system
 * call, and nothing but libc is needed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POOL 4096
#define MAX_BATCH 512
#define HEADER 24
#define MAX_SIZE 65507
#define PACE_NS 200000 /* paced batches are about this far apart */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_ieee(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t deadline) {
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s HOST PORT COUNT SIZE [RATE [SECONDS]]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *port = argv[2];
    long long count = atoll(argv[3]);
    long size = atol(argv[4]);
    double rate = argc > 5 ? atof(argv[5]) : 0.0;
    double seconds = argc > 6 ? atof(argv[6]) : 0.0;
    if (count < 0 || size < HEADER || size > MAX_SIZE || rate < 0 || seconds < 0) {
        fprintf(stderr, "sender: bad arguments\n");
        return 2;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake at the deadline, not up to 50 us after */

    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "sender: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        perror("sender: socket/connect");
        return 1;
    }
    freeaddrinfo(ai);

    crc_init();
    unsigned char *frames = malloc((size_t)POOL * (size_t)size);
    if (!frames) {
        perror("sender: malloc");
        return 1;
    }
    for (long i = 0; i < POOL; i++) {
        unsigned char *f = frames + (size_t)i * (size_t)size;
        memset(f, 'a' + (int)(i % 26), (size_t)size);
        memcpy(f, "\xa7LQ\x01", 4);
        put64(f + 8, 0);                  /* clock: none */
        put32(f + 16, 1);                 /* node */
        f[20] = (unsigned char)(i % 4);   /* stream */
        f[21] = 0;
        f[22] = f[23] = 0;                /* flags */
        if (size >= HEADER + 8) put64(f + HEADER, (uint64_t)i);
        put32(f + 4, crc32_ieee(f + 8, (size_t)size - 8));
    }

    static struct iovec iov[POOL];
    static struct mmsghdr msgs[POOL + MAX_BATCH];
    for (long i = 0; i < POOL + MAX_BATCH; i++) {
        long k = i % POOL;
        iov[k].iov_base = frames + (size_t)k * (size_t)size;
        iov[k].iov_len = (size_t)size;
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[k];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    long batch = MAX_BATCH;
    double batch_ns = 0;
    if (rate > 0) {
        batch = (long)(rate * PACE_NS / 1e9);
        if (batch < 1) batch = 1;
        if (batch > MAX_BATCH) batch = MAX_BATCH;
        batch_ns = batch * 1e9 / rate;
    }
    int64_t start = now_ns();
    int64_t stop = seconds > 0 ? start + (int64_t)(seconds * 1e9) : INT64_MAX;
    long long sent = 0, errors = 0, batches = 0;
    long next = 0; /* index into the pool of the next frame */
    while (sent < count) {
        if (rate > 0) sleep_until(start + (int64_t)(batches * batch_ns));
        if (now_ns() >= stop) break;
        long want = batch;
        if (want > count - sent) want = (long)(count - sent);
        long done = 0;
        while (done < want) {
            int n = sendmmsg(fd, msgs + next + done, (unsigned)(want - done), 0);
            if (n < 0) {
                /* ENOBUFS/EAGAIN: the path is momentarily full; ECONNREFUSED: an ICMP error
                 * from an earlier datagram (nobody listening then). Either way try again. */
                if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED || errno == EINTR) {
                    if (++errors > 1000000) {
                        perror("sender: sendmmsg keeps failing");
                        return 1;
                    }
                    continue;
                }
                perror("sender: sendmmsg");
                return 1;
            }
            done += n;
        }
        sent += done;
        next = (next + done) % POOL;
        batches++;
    }
    int64_t elapsed = now_ns() - start;
    printf("%lld %lld\n", sent, (long long)elapsed);
    return 0;
}
