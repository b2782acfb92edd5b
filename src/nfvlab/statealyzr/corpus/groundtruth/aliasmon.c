/* Ground-truth middlebox 4: a monitor whose state is updated only through pointer aliases.
 *
 * The statistics live in a static struct that packet processing reaches only through the global
 * pointer `cur_stats` and through formals (`st`, `ctr`); a flow table is updated by pointer
 * arithmetic; a scratch header copy is written by memcpy; the rule table is read-only. Packets
 * matching a rule are written to a pcap dump (packet output) while a token bucket allows it.
 * Labels: aliasmon.yaml.
 */
#include <pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <net/ethernet.h>

#define FLOWS 4096

struct stats {
    unsigned long pkts, bytes;
    unsigned long proto_count[256];
};

struct rule {
    uint8_t proto;
    int action;
};

static struct stats g_stats;           /* updated only through aliases */
struct stats *cur_stats = &g_stats;    /* the pointer itself is never reassigned */
const struct rule rules[] = {{IPPROTO_TCP, 1}, {IPPROTO_UDP, 0}, {IPPROTO_ICMP, 1}};
int nrules = 3;                        /* read-only (not const: clang folds const ints away) */
unsigned char last_hdr[64];            /* per-packet scratch copy: updated by memcpy */
uint32_t flow_bytes[FLOWS];            /* keyed by (src, dst) through pointer arithmetic */
int tokens = 1000;                     /* token bucket: updated, impacts packet output */
pcap_dumper_t *dumper;                 /* packet output handle */
int log_every = 1000;                  /* read-only config */

static void bump(unsigned long *ctr, unsigned long by)
{
    *ctr += by;
}

static void account(struct stats *st, const struct ip *iph, unsigned len)
{
    st->pkts++;
    bump(&st->bytes, len);
    bump(&st->proto_count[iph->ip_p], 1);
}

static uint32_t *flow_slot(const struct ip *iph)
{
    uint32_t h = (iph->ip_src.s_addr * 31u) ^ iph->ip_dst.s_addr;
    return flow_bytes + (h & (FLOWS - 1));
}

static int match(const struct ip *iph)
{
    for (int i = 0; i < nrules; i++)
        if (rules[i].proto == iph->ip_p)
            return rules[i].action;
    return 0;
}

static void process(struct pcap_pkthdr *h, const u_char *pkt)
{
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip))
        return;
    const struct ip *iph = (const struct ip *)(pkt + sizeof(struct ether_header));
    memcpy(last_hdr, iph, sizeof(struct ip));
    account(cur_stats, iph, h->len);
    uint32_t *slot = flow_slot(iph);
    *slot += h->len;
    if (match(iph) && tokens > 0) {
        tokens--;
        pcap_dump((u_char *)dumper, h, pkt);
    }
    if (cur_stats->pkts % log_every == 0)
        printf("pkts %lu bytes %lu\n", cur_stats->pkts, cur_stats->bytes);
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    struct pcap_pkthdr h;
    const u_char *pkt;
    if (argc < 3)
        return 1;
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc)
        return 1;
    dumper = pcap_dump_open(pc, argv[2]);
    while ((pkt = pcap_next(pc, &h)) != NULL)
        process(&h, pkt);
    pcap_dump_close(dumper);
    printf("done %lu\n", g_stats.pkts);
    return 0;
}
