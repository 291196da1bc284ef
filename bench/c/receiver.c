/* The benchmark's reference receiver: what receiving UDP datagrams costs with nothing but
 * recvmmsg, into fixed buffers, batch 512 and 4096-byte rows (as lacrimosa's receiver).
 *
 *   receiver HOST RCVBUF
 *
 * Binds HOST:0, asks for RCVBUF bytes of receive buffer (SO_RCVBUFFORCE, else SO_RCVBUF) and
 * prints "PORT RCVBUF FORCED" (RCVBUF as the kernel reports it, doubled). Then it obeys lines on
 * stdin, answering each with "DATAGRAMS BYTES ELAPSED_NS":
 *
 *   drain   receive with MSG_DONTWAIT recvmmsg calls until nothing is ready (the clock runs from
 *           the first call to the empty one)
 *   live    keep receiving (poll, then drain) until the next line arrives, then drain once more;
 *           the clock runs from "live" to the end
 *
 * It exits at the end of stdin.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 512
#define STRIDE 4096

static unsigned char buffers[BATCH][STRIDE];
static struct iovec iov[BATCH];
static struct mmsghdr msgs[BATCH];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One line from stdin (unbuffered, so poll() on fd 0 tells the truth); 0 at its end. */
static int read_line(char *line, size_t size) {
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t got = read(0, &c, 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return n > 0;
        if (c == '\n') break;
        if (n + 1 < size) line[n++] = c;
    }
    line[n] = 0;
    return 1;
}

/* Receive until nothing is ready; add to the totals. */
static void drain(int fd, long long *datagrams, long long *bytes) {
    for (;;) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            perror("receiver: recvmmsg");
            exit(1);
        }
        if (n == 0) return;
        *datagrams += n;
        for (int i = 0; i < n; i++) *bytes += msgs[i].msg_len;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST RCVBUF\n", argv[0]);
        return 2;
    }
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(argv[1], "0", &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "receiver: %s: %s\n", argv[1], gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("receiver: socket");
        return 1;
    }
    int want = atoi(argv[2]), forced = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) < 0) {
        forced = 0;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        perror("receiver: bind");
        return 1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    int port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    int rcvbuf = 0;
    socklen_t optlen = sizeof rcvbuf;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &optlen);
    printf("%d %d %d\n", port, rcvbuf, forced);
    fflush(stdout);

    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buffers[i];
        iov[i].iov_len = STRIDE;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    char line[64];
    while (read_line(line, sizeof line)) {
        long long datagrams = 0, bytes = 0;
        int64_t start = now_ns();
        if (strcmp(line, "live") == 0) {
            struct pollfd fds[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
            for (;;) {
                if (poll(fds, 2, -1) < 0) {
                    if (errno == EINTR) continue;
                    perror("receiver: poll");
                    return 1;
                }
                if (fds[0].revents) drain(fd, &datagrams, &bytes);
                if (fds[1].revents) {
                    read_line(line, sizeof line);
                    drain(fd, &datagrams, &bytes);
                    break;
                }
            }
        } else {
            drain(fd, &datagrams, &bytes);
        }
        printf("%lld %lld %lld\n", datagrams, bytes, (long long)(now_ns() - start));
        fflush(stdout);
    }
    return 0;
}
