/* Ground-truth middlebox 3: an event-queue UDP proxy (recvfrom loop, events dispatched through
 * function pointers, as in Squid's event queue, §4.3.1).
 *
 * The receive loop enqueues an event {handler, buffer} and a dispatcher later calls the handler
 * through a function pointer, so the handlers are packet-processing procedures reachable only
 * through data dependences. The queue's tail index is updated only through an alias (the
 * dissertation's `tail` example, Fig 4.5 line 37-38). Labels: queueproxy.yaml.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QLEN 64
#define NBACKENDS 4

struct event {
    void (*fn)(struct event *);
    char *buf;
    int len;
    struct sockaddr_in from;
};

struct backend {
    struct sockaddr_in addr;
    unsigned long bytes;
};

struct event queue[QLEN];           /* updated (enqueue) */
int head;                           /* updated directly */
int tail;                           /* updated only through the alias `index` */
struct backend backends[NBACKENDS]; /* keyed by the client's source port: updated */
int listen_fd = -1, out_fd = -1;    /* sockets: read-only during processing */
int running = 1;                    /* updated by the QUIT control message */
int mode;                           /* updated by control messages, impacts packet output */
char rxbuf[2048];                   /* receive buffer: updated by recvfrom */
char *greeting = "queueproxy";      /* init only */
unsigned long ctrl_msgs;            /* counter: updated, impacts log output */

static void on_data(struct event *e);
static void on_ctrl(struct event *e);

static void enqueue(void (*fn)(struct event *), char *buf, int len, struct sockaddr_in *from)
{
    head = (head + 1) % QLEN;
    queue[head].fn = fn;
    queue[head].buf = buf;
    queue[head].len = len;
    queue[head].from = *from;
}

static struct event *dequeue(void)
{
    int *index = &tail;
    *index = (*index + 1) % QLEN;
    return &queue[*index];
}

static void on_data(struct event *e)
{
    struct backend *b = &backends[ntohs(e->from.sin_port) % NBACKENDS];
    b->bytes += e->len;
    if (mode == 1)
        return;   /* drain mode: drop */
    sendto(out_fd, e->buf, e->len, 0, (struct sockaddr *)&b->addr, sizeof b->addr);
}

static void on_ctrl(struct event *e)
{
    ctrl_msgs++;
    if (e->len >= 4 && memcmp(e->buf, "QUIT", 4) == 0)
        running = 0;
    else if (e->len >= 5 && memcmp(e->buf, "DRAIN", 5) == 0)
        mode = 1;
    fprintf(stderr, "control message %lu\n", ctrl_msgs);
}

static void run_events(void)
{
    while (head != tail) {
        struct event *e = dequeue();
        e->fn(e);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in me = {0};
    int port = argc > 1 ? atoi(argv[1]) : 9000;
    listen_fd = socket(AF_INET, SOCK_DGRAM, 0);
    out_fd = socket(AF_INET, SOCK_DGRAM, 0);
    me.sin_family = AF_INET;
    me.sin_port = htons(port);
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&me, sizeof me) < 0) {
        perror(greeting);
        return 1;
    }
    for (int i = 0; i < NBACKENDS; i++) {
        backends[i].addr.sin_family = AF_INET;
        backends[i].addr.sin_port = htons(port + 1 + i);
        backends[i].addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    while (running) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int n = recvfrom(listen_fd, rxbuf, sizeof rxbuf, 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            break;
        if (n > 0 && rxbuf[0] == '!')
            enqueue(on_ctrl, rxbuf + 1, n - 1, &from);
        else
            enqueue(on_data, rxbuf, n, &from);
        run_events();
    }
    close(listen_fd);
    return 0;
}
