/* Ground-truth middlebox (soundness): a connection table hashed on a *local copy* of the packet's
 * addresses.
 *
 * The decoder copies the IPv4 header out of the (possibly unaligned) frame into a local struct
 * and the addresses from there into a flow key; the key, not the packet, is hashed. A chop that
 * stops at the first read whose points-to set touches the packet never follows the copy's writer
 * and loses the addresses. Labels: copykey.yaml.
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

#define NB 256

struct fkey {
    uint32_t a, b;
    uint16_t pa, pb;
    uint8_t proto;
};

struct conn {
    struct fkey key;
    unsigned long packets;
    struct conn *next;
};

struct conn *conns[NB];          /* keyed by the 5-tuple, through the copied key */
unsigned long n_conns;

static unsigned key_hash(const struct fkey *k)
{
    return (k->a * 31u + k->b * 17u + k->pa * 7u + k->pb + k->proto) % NB;
}

static void decode_key(const u_char *frame, struct fkey *k)
{
    struct ip iph;
    memcpy(&iph, frame + sizeof(struct ether_header), sizeof iph);   /* unaligned-safe copy */
    struct in_addr src = iph.ip_src, dst = iph.ip_dst;
    memset(k, 0, sizeof *k);
    memcpy(&k->a, &src, sizeof k->a);
    memcpy(&k->b, &dst, sizeof k->b);
    k->proto = iph.ip_p;
    if (iph.ip_p == IPPROTO_TCP) {
        struct tcphdr th;
        memcpy(&th, frame + sizeof(struct ether_header) + iph.ip_hl * 4, sizeof th);
        k->pa = th.th_sport;
        k->pb = th.th_dport;
    }
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    (void)user;
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip) + sizeof(struct tcphdr))
        return;
    struct fkey k;
    decode_key(pkt, &k);
    unsigned i = key_hash(&k);
    struct conn *c;
    for (c = conns[i]; c; c = c->next)
        if (memcmp(&c->key, &k, sizeof k) == 0)
            break;
    if (!c) {
        c = calloc(1, sizeof *c);
        c->key = k;
        c->next = conns[i];
        conns[i] = c;
        n_conns++;
    }
    c->packets++;
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc < 2)
        return 1;
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc)
        return 1;
    pcap_loop(pc, -1, on_packet, NULL);
    printf("conns %lu\n", n_conns);
    return 0;
}
