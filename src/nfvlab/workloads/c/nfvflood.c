/*
 * nfvflood: a small UDP/TCP flood sender and receiver for the nfvlab Iron experiments.
 *
 *   nfvflood send --proto udp|tcp --dst IP[,IP...] --port P [--flows N] [--size 1400]
 *                 [--rate-mbps R] [--catchup-ms 20] [--duration S] [--batch B] [--bind IP]
 *                 [--sndbuf BYTES]
 *   nfvflood recv --proto udp|tcp --port P [--bind IP] [--duration S] [--size 1400]
 *                 [--rcvbuf BYTES]
 *
 * send: N flows (one socket each, so distinct source ports) spread round-robin over the
 *       destinations, sending `size`-byte payloads back to back, or paced to R Mbit/s of payload
 *       in total (token bucket; after a stall at most --catchup-ms, default 20, of sending is made
 *       up in a burst, so scheduling delays do not lower the rate). UDP send errors (ENOBUFS,
 *       ECONNREFUSED, ...) are counted, not fatal. TCP flows are non-blocking and driven by epoll so
 *       that every flow makes progress.
 * recv: UDP: one socket, recvmmsg in batches; kernel drops on the socket are reported (SO_RXQ_OVFL).
 *       TCP: accepts any number of connections, epoll; "packets" counts size-byte messages
 *       (bytes / size) since TCP has no message boundaries.
 *
 * Both stop at --duration or on SIGTERM/SIGINT and print exactly one JSON line on stdout, e.g.
 *   {"mode":"send","proto":"udp","packets":1,"bytes":1400,"errors":0,"seconds":1.000000,...}
 * Exit status: 0 on a normal stop, 2 on a usage error, 1 on a setup failure (message on stderr).
 *
 * One file, no dependencies:  gcc -O2 -Wall -o nfvflood nfvflood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_DST 64
#define MAX_FLOWS 65536
#define MAX_BATCH 64
#define MAX_SIZE 65507
#define TCP_BURST 16          /* chunks written to one TCP flow per wake-up */
#define RECV_ROUNDS 64        /* recvmmsg calls per wake-up before re-checking for a stop */

enum proto { P_UDP, P_TCP };

struct opts {
    int send;                 /* 1 = send, 0 = recv */
    enum proto proto;
    struct in_addr dst[MAX_DST];
    int ndst;
    int port;
    int flows;
    int size;
    double rate_mbps;         /* 0 = as fast as possible */
    double catchup_ms;        /* pacing: at most this much sending time is made up after a stall */
    double duration;          /* 0 = until signalled */
    int batch;
    int have_bind;
    struct in_addr bind;
    int sndbuf, rcvbuf;
};

static volatile sig_atomic_t g_stop;
static int g_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    (void)sig;
    g_stop = 1;
    if (g_pipe[1] >= 0) {
        ssize_t r = write(g_pipe[1], "x", 1);
        (void)r;
    }
    errno = saved;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nfvflood: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "nfvflood: %s\n", msg);
    fputs("usage: nfvflood send --proto udp|tcp --dst IP[,IP...] --port P [--flows N] [--size BYTES]\n"
          "                     [--rate-mbps R] [--catchup-ms MS] [--duration S] [--batch B] [--bind IP]\n"
          "                     [--sndbuf BYTES]\n"
          "       nfvflood recv --proto udp|tcp --port P [--bind IP] [--duration S] [--size BYTES]\n"
          "                     [--rcvbuf BYTES]\n",
          stderr);
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long parse_long(const char *s, const char *name, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "nfvflood: %s must be an integer in [%ld, %ld], got '%s'\n", name, lo, hi, s);
        exit(2);
    }
    return v;
}

static double parse_double(const char *s, const char *name)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= 0)) {
        fprintf(stderr, "nfvflood: %s must be a non-negative number, got '%s'\n", name, s);
        exit(2);
    }
    return v;
}

static void parse_addr(const char *s, struct in_addr *out)
{
    if (inet_pton(AF_INET, s, out) != 1) {
        fprintf(stderr, "nfvflood: not an IPv4 address: '%s'\n", s);
        exit(2);
    }
}

static void parse_dst_list(const char *arg, struct opts *o)
{
    char *copy = strdup(arg), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->ndst == MAX_DST)
            usage("too many destinations (max 64)");
        parse_addr(tok, &o->dst[o->ndst++]);
    }
    free(copy);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->flows = 1;
    o->size = 1400;
    o->batch = 1;
    o->port = -1;
    o->catchup_ms = 20;
    int have_proto = 0;
    if (argc < 2)
        usage(NULL);
    if (!strcmp(argv[1], "send"))
        o->send = 1;
    else if (!strcmp(argv[1], "recv"))
        o->send = 0;
    else
        usage("first argument must be 'send' or 'recv'");
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help"))
            usage(NULL);
        if (i + 1 >= argc) {
            fprintf(stderr, "nfvflood: option %s needs a value\n", k);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--proto")) {
            if (!strcmp(v, "udp"))
                o->proto = P_UDP;
            else if (!strcmp(v, "tcp"))
                o->proto = P_TCP;
            else
                usage("--proto must be udp or tcp");
            have_proto = 1;
        } else if (!strcmp(k, "--dst")) {
            parse_dst_list(v, o);
        } else if (!strcmp(k, "--port")) {
            o->port = (int)parse_long(v, "--port", 1, 65535);
        } else if (!strcmp(k, "--flows")) {
            o->flows = (int)parse_long(v, "--flows", 1, MAX_FLOWS);
        } else if (!strcmp(k, "--size")) {
            o->size = (int)parse_long(v, "--size", 1, MAX_SIZE);
        } else if (!strcmp(k, "--rate-mbps")) {
            o->rate_mbps = parse_double(v, "--rate-mbps");
        } else if (!strcmp(k, "--catchup-ms")) {
            o->catchup_ms = parse_double(v, "--catchup-ms");
        } else if (!strcmp(k, "--duration")) {
            o->duration = parse_double(v, "--duration");
        } else if (!strcmp(k, "--batch")) {
            o->batch = (int)parse_long(v, "--batch", 1, MAX_BATCH);
        } else if (!strcmp(k, "--bind")) {
            parse_addr(v, &o->bind);
            o->have_bind = 1;
        } else if (!strcmp(k, "--sndbuf")) {
            o->sndbuf = (int)parse_long(v, "--sndbuf", 1, 1L << 30);
        } else if (!strcmp(k, "--rcvbuf")) {
            o->rcvbuf = (int)parse_long(v, "--rcvbuf", 1, 1L << 30);
        } else {
            fprintf(stderr, "nfvflood: unknown option %s\n", k);
            usage(NULL);
        }
    }
    if (!have_proto)
        usage("--proto is required");
    if (o->port < 0)
        usage("--port is required");
    if (o->send && o->ndst == 0)
        usage("send needs --dst");
}

static void setup_signals(void)
{
    if (pipe2(g_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        die("pipe2: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocking call returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* many flows need many descriptors */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* exact sleeps for pacing */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl: %s", strerror(errno));
}

static void epoll_add(int ep, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* Wait on `ep` until an event, the deadline (absolute monotonic seconds, 0 = none) or `until`
 * (another absolute time, 0 = none), whichever is first. Returns the epoll_pwait2 result. */
static int wait_events(int ep, struct epoll_event *evs, int n, double deadline, double until)
{
    double t = 0;
    if (deadline > 0)
        t = deadline;
    if (until > 0 && (t == 0 || until < t))
        t = until;
    struct timespec ts, *tp = NULL;
    if (t > 0) {
        double d = t - now_s();
        if (d < 0)
            d = 0;
        ts.tv_sec = (time_t)d;
        ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    int r = epoll_pwait2(ep, evs, n, tp, NULL);
    if (r < 0 && errno != EINTR)
        die("epoll_pwait2: %s", strerror(errno));
    return r;
}

static const char *proto_name(enum proto p) { return p == P_UDP ? "udp" : "tcp"; }

/* ------------------------------------------------------------------ pacing */

struct pacer {
    double bytes_per_s; /* 0 = unpaced */
    double catchup_s;   /* the bucket depth, in seconds of sending */
    double t0;          /* start of the credit window */
    double sent;        /* bytes sent since t0 */
};

/* How many `size`-byte packets may be sent now (up to `want`); 0 means wait until pacer_next(). */
static int pacer_allow(struct pacer *p, int size, int want, double t)
{
    if (p->bytes_per_s <= 0)
        return want;
    double credit = p->bytes_per_s * (t - p->t0) - p->sent;
    double cap = p->bytes_per_s * p->catchup_s;
    if (cap < (double)size * want)
        cap = (double)size * want;
    if (credit > cap) { /* after a stall, make up at most catchup_s worth */
        p->t0 += (credit - cap) / p->bytes_per_s;
        credit = cap;
    }
    int n = (int)(credit / size);
    return n < want ? n : want;
}

static double pacer_next(const struct pacer *p, int size)
{
    return p->t0 + (p->sent + size) / p->bytes_per_s;
}

/* ------------------------------------------------------------------ output */

struct stats {
    uint64_t packets, bytes, errors, drops, connections;
    uint64_t flow_min, flow_max; /* send: bytes of the slowest and fastest flow */
    double t_start, t_end, t_first, t_last;
};

static void print_stats(const struct opts *o, const struct stats *s)
{
    double secs = s->t_end - s->t_start;
    double active = s->t_first > 0 ? s->t_last - s->t_first : 0.0;
    printf("{\"mode\":\"%s\",\"proto\":\"%s\",\"packets\":%llu,\"bytes\":%llu,\"errors\":%llu,"
           "\"seconds\":%.6f,\"active_seconds\":%.6f,\"drops\":%llu,\"connections\":%llu,"
           "\"flows\":%d,\"flow_bytes_min\":%llu,\"flow_bytes_max\":%llu,\"size\":%d,"
           "\"rate_mbps_target\":%.3f}\n",
           o->send ? "send" : "recv", proto_name(o->proto), (unsigned long long)s->packets,
           (unsigned long long)s->bytes, (unsigned long long)s->errors, secs, active,
           (unsigned long long)s->drops, (unsigned long long)s->connections, o->send ? o->flows : 0,
           (unsigned long long)s->flow_min, (unsigned long long)s->flow_max, o->size, o->send ? o->rate_mbps : 0.0);
    fflush(stdout);
}

/* ------------------------------------------------------------------ send */

static int make_socket(const struct opts *o, int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (o->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof(o->sndbuf)) < 0)
        die("SO_SNDBUF: %s", strerror(errno));
    if (o->rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf)) < 0)
        die("SO_RCVBUF: %s", strerror(errno));
    return fd;
}

static void bind_source(const struct opts *o, int fd, int port)
{
    if (!o->have_bind && port == 0)
        return;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr = o->have_bind ? o->bind : (struct in_addr){.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
        die("bind %s:%d: %s", buf, port, strerror(errno));
    }
}

/* Connect flow i to its destination. TCP retries a refused connection for up to 3 s so a
 * sender may start just before its receiver. */
static int connect_flow(const struct opts *o, int i)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    a.sin_addr = o->dst[i % o->ndst];
    double give_up = now_s() + 3.0;
    for (;;) {
        int fd = make_socket(o, o->proto == P_UDP ? SOCK_DGRAM : SOCK_STREAM);
        bind_source(o, fd, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
        int err = errno;
        close(fd);
        if (o->proto == P_TCP && (err == ECONNREFUSED || err == EINTR) && !g_stop && now_s() < give_up) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (g_stop)
            return -1;
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
        die("connect %s:%d (flow %d): %s", buf, o->port, i, strerror(err));
    }
}

/* Errors that mean the sender itself is misconfigured: stop instead of counting forever. */
static int fatal_send_errno(int e)
{
    return e == EBADF || e == EFAULT || e == EINVAL || e == EMSGSIZE || e == ENOTSOCK ||
           e == EDESTADDRREQ || e == EOPNOTSUPP;
}

static int run_send(const struct opts *o)
{
    struct stats s;
    memset(&s, 0, sizeof(s));
    int *fds = calloc((size_t)o->flows, sizeof(int));
    int *off = calloc((size_t)o->flows, sizeof(int)); /* TCP: bytes of the current chunk written */
    uint64_t *fbytes = calloc((size_t)o->flows, sizeof(uint64_t));
    char *payload = malloc((size_t)o->size);
    if (!fds || !off || !fbytes || !payload)
        die("out of memory");
    for (int i = 0; i < o->size; i++)
        payload[i] = (char)('a' + i % 26);

    int ep_ctl = epoll_create1(EPOLL_CLOEXEC), ep_data = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ctl < 0 || ep_data < 0)
        die("epoll_create1: %s", strerror(errno));
    epoll_add(ep_ctl, g_pipe[0], EPOLLIN, UINT64_MAX);
    epoll_add(ep_data, ep_ctl, EPOLLIN, UINT64_MAX);

    int nflows = 0;
    for (int i = 0; i < o->flows && !g_stop; i++) {
        int fd = connect_flow(o, i);
        if (fd < 0)
            break;
        set_nonblock(fd);
        fds[nflows] = fd;
        epoll_add(ep_data, fd, EPOLLOUT, (uint64_t)nflows);
        nflows++;
    }
    s.connections = (uint64_t)(o->proto == P_TCP ? nflows : 0);

    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov = {.iov_base = payload, .iov_len = (size_t)o->size};
    memset(msgs, 0, sizeof(msgs));
    for (int b = 0; b < MAX_BATCH; b++) {
        msgs[b].msg_hdr.msg_iov = &iov;
        msgs[b].msg_hdr.msg_iovlen = 1;
    }

    struct pacer pc = {.bytes_per_s = o->rate_mbps * 1e6 / 8.0, .catchup_s = o->catchup_ms / 1000.0};
    s.t_start = now_s();
    pc.t0 = s.t_start;
    double deadline = o->duration > 0 ? s.t_start + o->duration : 0;
    int live = nflows, cur = 0;
    char *dead = calloc((size_t)(nflows ? nflows : 1), 1);
    struct epoll_event evs[256];
    const int burst = o->proto == P_UDP ? o->batch : TCP_BURST;

    while (!g_stop && live > 0) {
        double t = now_s();
        if (deadline > 0 && t >= deadline)
            break;
        int allow = pacer_allow(&pc, o->size, burst, t);
        if (allow == 0) { /* paced: sleep until the next packet is due (or a signal / the end) */
            wait_events(ep_ctl, evs, 1, deadline, pacer_next(&pc, o->size));
            continue;
        }
        /* one round-robin pass over the flows; stop early if the pacer runs out */
        int progress = 0;
        for (int k = 0; k < nflows && allow > 0 && !g_stop; k++) {
            int i = cur;
            cur = (cur + 1) % nflows;
            if (dead[i])
                continue;
            int sent_pk = 0;
            long sent_b = 0;
            if (o->proto == P_UDP) {
                int r = allow == 1 ? (int)(send(fds[i], payload, (size_t)o->size, 0) >= 0 ? 1 : -1)
                                   : sendmmsg(fds[i], msgs, (unsigned)allow, 0);
                if (r > 0) {
                    sent_pk = r;
                    sent_b = (long)r * o->size;
                } else if (errno == EAGAIN || errno == EINTR) {
                    /* socket buffer full: try the next flow */
                } else if (fatal_send_errno(errno)) {
                    die("send: %s", strerror(errno));
                } else {
                    s.errors++; /* ENOBUFS, ECONNREFUSED, EHOSTUNREACH, EPERM, ...: count and go on */
                    progress = 1;
                }
            } else {
                for (int c = 0; c < allow; c++) {
                    ssize_t r = send(fds[i], payload + off[i], (size_t)(o->size - off[i]), 0);
                    if (r < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                            s.errors++;
                            dead[i] = 1;
                            live--;
                            epoll_ctl(ep_data, EPOLL_CTL_DEL, fds[i], NULL);
                            progress = 1;
                        }
                        break;
                    }
                    sent_b += r;
                    off[i] += (int)r;
                    if (off[i] == o->size) {
                        off[i] = 0;
                        sent_pk++;
                    } else {
                        break; /* partial write: the buffer is full */
                    }
                }
            }
            if (sent_b > 0) {
                progress = 1;
                s.packets += (uint64_t)sent_pk;
                s.bytes += (uint64_t)sent_b;
                fbytes[i] += (uint64_t)sent_b;
                pc.sent += (double)sent_b;
                if (pc.bytes_per_s > 0)
                    allow = pacer_allow(&pc, o->size, burst, now_s());
            }
        }
        if (!progress) /* every flow's buffer is full: wait for room */
            wait_events(ep_data, evs, 256, deadline, 0);
    }
    s.t_end = now_s();
    s.t_first = s.t_start;
    s.t_last = s.t_end;
    for (int i = 0; i < nflows; i++) {
        if (i == 0 || fbytes[i] < s.flow_min)
            s.flow_min = fbytes[i];
        if (fbytes[i] > s.flow_max)
            s.flow_max = fbytes[i];
    }
    print_stats(o, &s);
    for (int i = 0; i < nflows; i++)
        close(fds[i]);
    free(fbytes);
    free(dead);
    free(fds);
    free(off);
    free(payload);
    return 0;
}

/* ------------------------------------------------------------------ recv */

static int listen_socket(const struct opts *o)
{
    int fd = make_socket(o, o->proto == P_UDP ? SOCK_DGRAM : SOCK_STREAM);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    a.sin_addr = o->have_bind ? o->bind : (struct in_addr){.s_addr = htonl(INADDR_ANY)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("bind port %d: %s", o->port, strerror(errno));
    if (o->proto == P_TCP && listen(fd, 1024) < 0)
        die("listen: %s", strerror(errno));
    if (o->proto == P_UDP)
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    set_nonblock(fd);
    return fd;
}

static void recv_udp(const struct opts *o, int fd, int ep, struct stats *s, double deadline)
{
    enum { B = 32 };
    /* Each datagram is copied into a buffer of (at least) the expected size; MSG_TRUNC makes
     * msg_len the real datagram length, so bigger datagrams are still counted right. Small buffers
     * keep the receiver's cache footprint like a simple recv() loop's. */
    size_t bufsz = (size_t)(o->size > 2048 ? o->size : 2048);
    char *bufs = malloc(bufsz * B);
    static char ctrl[B][CMSG_SPACE(sizeof(uint32_t))];
    struct iovec iov[B];
    struct mmsghdr msgs[B];
    struct epoll_event evs[4];
    if (!bufs)
        die("out of memory");
    while (!g_stop) {
        if (deadline > 0 && now_s() >= deadline)
            break;
        int n = wait_events(ep, evs, 4, deadline, 0);
        if (n <= 0)
            continue;
        for (int round = 0; round < RECV_ROUNDS && !g_stop; round++) {
            for (int b = 0; b < B; b++) {
                iov[b].iov_base = bufs + (size_t)b * bufsz;
                iov[b].iov_len = bufsz;
                memset(&msgs[b].msg_hdr, 0, sizeof(msgs[b].msg_hdr));
                msgs[b].msg_hdr.msg_iov = &iov[b];
                msgs[b].msg_hdr.msg_iovlen = 1;
                msgs[b].msg_hdr.msg_control = ctrl[b];
                msgs[b].msg_hdr.msg_controllen = sizeof(ctrl[b]);
            }
            int r = recvmmsg(fd, msgs, B, MSG_DONTWAIT | MSG_TRUNC, NULL);
            if (r < 0) {
                if (errno != EAGAIN && errno != EINTR)
                    s->errors++;
                break;
            }
            double t = now_s();
            if (s->t_first == 0)
                s->t_first = t;
            s->t_last = t;
            s->packets += (uint64_t)r;
            for (int b = 0; b < r; b++) {
                s->bytes += msgs[b].msg_len;
                struct msghdr *h = &msgs[b].msg_hdr;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                        uint32_t d;
                        memcpy(&d, CMSG_DATA(c), sizeof(d));
                        if (d > s->drops)
                            s->drops = d;
                    }
                }
            }
            if (r < B)
                break;
        }
    }
    free(bufs);
}

static void recv_tcp(const struct opts *o, int lfd, int ep, struct stats *s, double deadline)
{
    static char buf[1 << 16];
    struct epoll_event evs[256];
    (void)o;
    while (!g_stop) {
        if (deadline > 0 && now_s() >= deadline)
            break;
        int n = wait_events(ep, evs, 256, deadline, 0);
        for (int e = 0; e < n && !g_stop; e++) {
            int fd = (int)evs[e].data.u64;
            if (evs[e].data.u64 == UINT64_MAX)
                continue; /* the signal pipe */
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break;
                    if (o->rcvbuf)
                        setsockopt(c, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
                    epoll_add(ep, c, EPOLLIN | EPOLLRDHUP, (uint64_t)c);
                    s->connections++;
                }
                continue;
            }
            for (int round = 0; round < 16; round++) {
                ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (r > 0) {
                    double t = now_s();
                    if (s->t_first == 0)
                        s->t_first = t;
                    s->t_last = t;
                    s->bytes += (uint64_t)r;
                    if (r < (ssize_t)sizeof(buf))
                        break;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    if (r < 0)
                        s->errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
                break;
            }
        }
    }
    s->packets = s->bytes / (uint64_t)o->size;
}

static int run_recv(const struct opts *o)
{
    struct stats s;
    memset(&s, 0, sizeof(s));
    int fd = listen_socket(o);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    epoll_add(ep, g_pipe[0], EPOLLIN, UINT64_MAX);
    epoll_add(ep, fd, EPOLLIN, (uint64_t)fd);
    /* Tell a supervisor we are ready to receive (stderr keeps stdout to the one JSON line). */
    fprintf(stderr, "nfvflood: listening on %s port %d\n", proto_name(o->proto), o->port);
    fflush(stderr);
    s.t_start = now_s();
    double deadline = o->duration > 0 ? s.t_start + o->duration : 0;
    if (o->proto == P_UDP)
        recv_udp(o, fd, ep, &s, deadline);
    else
        recv_tcp(o, fd, ep, &s, deadline);
    s.t_end = now_s();
    print_stats(o, &s);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    setup_signals(); /* first, so an early SIGTERM still ends with a report */
    parse_args(argc, argv, &o);
    return o.send ? run_send(&o) : run_recv(&o);
}
