/* Ground-truth middlebox 6: host and flow tables behind one shared hash helper (p0f's pattern).
 *
 * The pcap_dispatch callback parses each IPv4/TCP packet into a `struct packet_data` (addresses
 * copied with memcpy, ports, TTL, TOS). A host table is keyed by the source address only, a flow
 * table by the 4-tuple, a TTL histogram by the TTL; both tables hash through the same
 * `hash32(const void *, len)` and search their bucket lists with memcmp. A field-insensitive chop
 * gives every table every parsed field; the right flowspaces differ. Labels: hostflow.yaml.
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

#define HOST_BUCKETS 256
#define FLOW_BUCKETS 1024

struct packet_data {
    uint8_t src[4], dst[4];
    uint16_t sport, dport;
    uint8_t ttl, tos;
};

struct host {
    uint8_t addr[4];
    unsigned packets;
    struct host *next;
};

struct flow {
    uint8_t src[4], dst[4];
    uint16_t sport, dport;
    unsigned packets;
    struct flow *next;
};

struct host *host_b[HOST_BUCKETS];   /* keyed by the source address */
struct flow *flow_b[FLOW_BUCKETS];   /* keyed by the 4-tuple */
unsigned ttl_hist[256];              /* keyed by the TTL */
unsigned long tos_marked;            /* cross-flow counter */
unsigned hash_seed = 0x9e3779b9u;    /* config: read-only in packet processing */

static uint32_t hash32(const void *key, uint32_t len)
{
    const uint8_t *k = key;
    uint32_t h = hash_seed;
    while (len--)
        h = (h ^ *k++) * 16777619u;
    return h;
}

static struct host *lookup_host(const uint8_t *addr)
{
    uint32_t b = hash32(addr, 4) % HOST_BUCKETS;
    struct host *h;
    for (h = host_b[b]; h; h = h->next)
        if (!memcmp(h->addr, addr, 4))
            return h;
    h = calloc(1, sizeof *h);
    memcpy(h->addr, addr, 4);
    h->next = host_b[b];
    host_b[b] = h;
    return h;
}

static uint32_t flow_bucket(const struct packet_data *pk)
{
    uint32_t b = hash32(pk->src, 4) ^ hash32(pk->dst, 4);
    b ^= hash32(&pk->sport, 2) ^ hash32(&pk->dport, 2);
    return b % FLOW_BUCKETS;
}

static struct flow *lookup_flow(const struct packet_data *pk)
{
    uint32_t b = flow_bucket(pk);
    struct flow *f;
    for (f = flow_b[b]; f; f = f->next)
        if (!memcmp(f->src, pk->src, 4) && !memcmp(f->dst, pk->dst, 4) && f->sport == pk->sport &&
            f->dport == pk->dport)
            return f;
    f = calloc(1, sizeof *f);
    memcpy(f->src, pk->src, 4);
    memcpy(f->dst, pk->dst, 4);
    f->sport = pk->sport;
    f->dport = pk->dport;
    f->next = flow_b[b];
    flow_b[b] = f;
    return f;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *hdr, const u_char *pkt)
{
    struct packet_data pk;
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    const struct tcphdr *th;
    (void)user;
    if (hdr->caplen < sizeof(struct ether_header) + sizeof *ip + sizeof *th || ip->ip_p != IPPROTO_TCP)
        return;
    th = (const struct tcphdr *)((const u_char *)ip + ip->ip_hl * 4);
    memcpy(pk.src, &ip->ip_src, 4);
    memcpy(pk.dst, &ip->ip_dst, 4);
    pk.sport = ntohs(th->th_sport);
    pk.dport = ntohs(th->th_dport);
    pk.ttl = ip->ip_ttl;
    pk.tos = ip->ip_tos;
    lookup_host(pk.src)->packets++;
    lookup_flow(&pk)->packets++;
    ttl_hist[pk.ttl]++;
    if (pk.tos)
        tos_marked++;
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pcap_t *pc;
    if (argc < 2)
        return 1;
    if (getenv("HF_SEED"))
        hash_seed = (unsigned)atoi(getenv("HF_SEED"));
    pc = pcap_open_offline(argv[1], errbuf);
    if (!pc) {
        fprintf(stderr, "%s\n", errbuf);
        return 1;
    }
    while (pcap_dispatch(pc, 64, on_packet, NULL) > 0)
        ;
    fprintf(stdout, "tos-marked %lu ttl64 %u\n", tos_marked, ttl_hist[64]);
    pcap_close(pc);
    return 0;
}
