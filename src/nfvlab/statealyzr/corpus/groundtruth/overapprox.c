/* Ground-truth middlebox (precision): the over-approximations real middleboxes show.
 *
 *  - `cur`: a per-packet scratch global, cleared and filled at the start of every packet and
 *    only read after that: no value survives from one packet to the next;
 *  - `dispatch[]`: a function-pointer table filled once at start-up, called per packet;
 *  - `conf`: configuration parsed at start-up and only read later, searched with strstr/strchr
 *    (which read their arguments: they do not write them);
 *  - `grow()`: a realloc-style wrapper shared by an unrelated byte buffer and a host array;
 *  - `find()`: one lookup helper shared by two tables keyed by different header fields.
 * Labels: overapprox.yaml.
 */
#include <pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <net/ethernet.h>

#define NB 64

struct pinfo {
    uint32_t src, dst;
    uint16_t sport, dport;
    unsigned len;
    const u_char *payload;
};

struct config {
    char pattern[32];
    char sep[8];
    int verbose;
};

struct entry {
    uint32_t key;
    unsigned long hits;
    struct entry *next;
};

struct hostrec {
    uint32_t addr;
    unsigned long bytes;
};

struct pinfo cur;                        /* per-packet scratch */
static void (*dispatch[256])(void);      /* filled at start-up, called per packet */
struct config conf;                      /* parsed at start-up, read per packet */
unsigned long matches, tcp_pkts, other_pkts;
char *reqbuf;                            /* payload bytes seen (grown by grow()) */
size_t reqlen;
struct hostrec *hostv;                   /* host array (grown by grow()), searched by address */
size_t nhosts;
struct entry *by_src[NB];                /* keyed by source address, through find() */
struct entry *by_port[NB];               /* keyed by destination port, through find() */

static void *grow(void *old, size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    if (old) {
        memcpy(p, old, n / 2);
        free(old);
    }
    return p;
}

static struct entry *find(struct entry **tab, uint32_t key)
{
    struct entry *e;
    for (e = tab[key % NB]; e; e = e->next)
        if (e->key == key)
            return e;
    e = calloc(1, sizeof *e);
    e->key = key;
    e->next = tab[key % NB];
    tab[key % NB] = e;
    return e;
}

static void on_tcp(void) { tcp_pkts++; }
static void on_other(void) { other_pkts++; }

static void init_dispatch(void)
{
    for (int i = 0; i < 256; i++)
        dispatch[i] = on_other;
    dispatch[IPPROTO_TCP] = on_tcp;
}

static void parse_config(const char *arg)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon ? (size_t)(colon - arg) : strlen(arg);
    if (n >= sizeof conf.pattern)
        n = sizeof conf.pattern - 1;
    memcpy(conf.pattern, arg, n);
    conf.pattern[n] = 0;
    strcpy(conf.sep, "\r\n");
    conf.verbose = colon != NULL;
}

static void decode(const u_char *pkt, unsigned caplen)
{
    memset(&cur, 0, sizeof cur);
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    cur.src = ip->ip_src.s_addr;
    cur.dst = ip->ip_dst.s_addr;
    cur.len = caplen;
    if (ip->ip_p == IPPROTO_TCP) {
        const struct tcphdr *th = (const struct tcphdr *)((const u_char *)ip + ip->ip_hl * 4);
        cur.sport = th->th_sport;
        cur.dport = th->th_dport;
        cur.payload = (const u_char *)th + th->th_off * 4;
    }
}

static void process(const u_char *pkt, unsigned caplen)
{
    if (caplen < sizeof(struct ether_header) + sizeof(struct ip) + sizeof(struct tcphdr))
        return;
    decode(pkt, caplen);
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    dispatch[ip->ip_p]();
    find(by_src, cur.src)->hits++;
    if (cur.dport)
        find(by_port, cur.dport)->hits++;
    size_t i;
    for (i = 0; i < nhosts; i++)
        if (hostv[i].addr == cur.src)
            break;
    if (i == nhosts) {
        hostv = grow(hostv, 2 * (nhosts + 1) * sizeof *hostv);
        hostv[nhosts].addr = cur.src;
        hostv[nhosts].bytes = 0;
        nhosts++;
    }
    hostv[i].bytes += cur.len;
    if (cur.payload && cur.payload < pkt + caplen) {
        size_t len = (size_t)(pkt + caplen - cur.payload);
        char line[128];
        if (len > sizeof line - 1)
            len = sizeof line - 1;
        memcpy(line, cur.payload, len);
        line[len] = 0;
        reqbuf = grow(reqbuf, 2 * (reqlen + len + 1));
        memcpy(reqbuf + reqlen, line, len);
        reqlen += len;
        if (strstr(line, conf.pattern) && !strchr(conf.sep, line[0]))
            matches++;
    }
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc < 3)
        return 1;
    init_dispatch();
    parse_config(argv[2]);
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc)
        return 1;
    struct pcap_pkthdr *hdr;
    const u_char *data;
    while (pcap_next_ex(pc, &hdr, &data) == 1)
        process(data, hdr->caplen);
    printf("matches %lu tcp %lu other %lu hosts %zu bytes %zu\n", matches, tcp_pkts, other_pkts,
           nhosts, reqlen);
    return 0;
}
