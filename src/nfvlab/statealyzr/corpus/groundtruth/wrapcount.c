/* Ground-truth middlebox (soundness): counters written inside allocation wrappers.
 *
 * p0f/tcpdump style ck_alloc()/ck_free() wrappers: besides initialising (or poisoning) the memory
 * they hand out, they update global statistics. Those global writes are state updates during
 * packet processing; only the writes to the fresh (or freed) memory are not. Labels:
 * wrapcount.yaml.
 */
#include <pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <net/ethernet.h>

struct host {
    uint32_t addr;
    unsigned long packets;
    struct host *next;
};

unsigned long n_allocs;          /* written only inside ck_alloc(): updated */
unsigned long bytes_live;        /* written only inside ck_alloc()/ck_free(): updated */
static unsigned long n_frees;    /* written only inside ck_free(): updated */
struct host *hosts;              /* list keyed by source address */
int max_hosts = 4;               /* config: read-only */

static void *ck_alloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    memset(p, 0, n);             /* fresh memory: not a state update by itself */
    n_allocs++;
    bytes_live += n;
    return p;
}

static void ck_free(void *p, size_t n)
{
    if (!p)
        return;
    memset(p, 0xAA, n);          /* poisoning memory being freed */
    n_frees++;
    bytes_live -= n;
    free(p);
}

static void on_packet(const u_char *pkt, uint32_t caplen)
{
    if (caplen < sizeof(struct ether_header) + sizeof(struct ip))
        return;
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    struct host *h, **pp = &hosts;
    int n = 0;
    for (h = hosts; h != NULL; h = h->next, n++) {
        if (h->addr == ip->ip_src.s_addr)
            break;
        pp = &h->next;
    }
    if (h == NULL) {
        if (n >= max_hosts && hosts) {          /* evict the head */
            struct host *old = hosts;
            hosts = old->next;
            ck_free(old, sizeof *old);
        }
        h = ck_alloc(sizeof *h);
        h->addr = ip->ip_src.s_addr;
        h->next = hosts;
        hosts = h;
    }
    (void)pp;
    h->packets++;
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc < 2)
        return 1;
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc)
        return 1;
    struct pcap_pkthdr *hdr;
    const u_char *data;
    while (pcap_next_ex(pc, &hdr, &data) == 1)
        on_packet(data, hdr->caplen);
    printf("allocs %lu frees %lu live %lu\n", n_allocs, n_frees, bytes_live);
    return 0;
}
