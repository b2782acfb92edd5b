/* Ground-truth middlebox 1: a connection tracker (pcap_next_ex loop, hash table of connections).
 *
 * State: a chained hash table keyed by the 5-tuple, global counters, a per-packet scratch
 * global, read-only configuration, an init-only handle. Labels: conntrack.yaml.
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

#define TABLE_SIZE 1024

struct conn {
    uint32_t saddr, daddr;
    uint16_t sport, dport;
    uint8_t proto;
    uint64_t packets, bytes;
    int state;
    struct conn *next;
};

struct conn *conn_table[TABLE_SIZE];  /* keyed by 5-tuple, updated */
unsigned long total_packets;          /* cross-flow counter, updated */
unsigned long total_conns;            /* cross-flow counter, updated */
unsigned long dropped;                /* updated only on non-IP packets */
int idle_timeout = 60;                /* config: read-only during packet processing */
int verbose;                          /* config: read-only during packet processing */
char *config_path = "conntrack.conf"; /* init only: never used in packet processing */
const struct ip *cur_ip;              /* per-packet scratch global, updated */
FILE *log_fp;                           /* log file handle: read-only (pointer) */

static unsigned hash5(uint32_t s, uint32_t d, uint16_t sp, uint16_t dp, uint8_t p)
{
    unsigned h = s ^ (d * 2654435761u) ^ ((unsigned)sp << 16) ^ dp ^ p;
    return h % TABLE_SIZE;
}

static struct conn *lookup_or_create(const struct ip *ip, const struct tcphdr *th)
{
    uint16_t sport = th ? th->th_sport : 0;
    uint16_t dport = th ? th->th_dport : 0;
    unsigned idx = hash5(ip->ip_src.s_addr, ip->ip_dst.s_addr, sport, dport, ip->ip_p);
    struct conn *c;
    for (c = conn_table[idx]; c != NULL; c = c->next)
        if (c->saddr == ip->ip_src.s_addr && c->daddr == ip->ip_dst.s_addr && c->sport == sport &&
            c->dport == dport && c->proto == ip->ip_p)
            return c;
    c = calloc(1, sizeof *c);
    c->saddr = ip->ip_src.s_addr;
    c->daddr = ip->ip_dst.s_addr;
    c->sport = sport;
    c->dport = dport;
    c->proto = ip->ip_p;
    c->next = conn_table[idx];
    conn_table[idx] = c;
    total_conns++;
    return c;
}

static void handle(const struct pcap_pkthdr *h, const u_char *pkt)
{
    const struct ether_header *eth = (const struct ether_header *)pkt;
    if (h->caplen < sizeof *eth + sizeof(struct ip) || ntohs(eth->ether_type) != ETHERTYPE_IP) {
        dropped++;
        return;
    }
    cur_ip = (const struct ip *)(pkt + sizeof *eth);
    const struct tcphdr *th = NULL;
    if (cur_ip->ip_p == IPPROTO_TCP)
        th = (const struct tcphdr *)((const u_char *)cur_ip + cur_ip->ip_hl * 4);
    struct conn *c = lookup_or_create(cur_ip, th);
    c->packets++;
    c->bytes += h->len;
    if (th && (th->th_flags & TH_FIN))
        c->state = 2;
    else if (c->packets > (uint64_t)idle_timeout)
        c->state = 1;
    if (verbose)
        fprintf(log_fp, "conn %08x:%u state %d packets %lu\n", c->saddr, c->sport, c->state,
                (unsigned long)c->packets);
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    struct pcap_pkthdr *hdr;
    const u_char *data;
    int rc;
    if (argc < 2)
        return 1;
    if (argc > 2)
        verbose = atoi(argv[2]);
    if (getenv("CT_TIMEOUT"))
        idle_timeout = atoi(getenv("CT_TIMEOUT"));
    if (getenv("CT_CONF"))
        config_path = getenv("CT_CONF");
    log_fp = stderr;
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc) {
        fprintf(stderr, "%s: %s\n", config_path, errbuf);
        return 1;
    }
    while ((rc = pcap_next_ex(pc, &hdr, &data)) >= 0) {
        if (rc == 0)
            continue;
        total_packets++;
        handle(hdr, data);
    }
    fprintf(log_fp, "packets %lu conns %lu dropped %lu\n", total_packets, total_conns, dropped);
    pcap_close(pc);
    return 0;
}
