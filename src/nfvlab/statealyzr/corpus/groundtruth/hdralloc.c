/* Ground-truth middlebox (state transfer): p0f's allocation-wrapper layout.
 *
 * ck_alloc() returns malloc()'s block plus 8, behind its own header (a canary and the size, p0f's
 * ALLOC_C/ALLOC_S); ck_realloc() and ck_free() read that header back, and the packet path reads
 * the stored size too. So an export must take the whole malloc block a pointer lands in, header
 * included, and an import must recreate it, or the standby aborts or miscounts. A host table
 * keyed by source address, each host with a history buffer grown by ck_realloc(); the
 * pcap_dispatch callback sees only TCP (a BPF filter), so its n-th call is not the trace's n-th
 * packet; `in` holds the library's handle next to a counter, and the standby must keep its own handle. Labels:
 * hdralloc.yaml.
 */
#include <pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <net/ethernet.h>

#define HDR 8
#define MAGIC 0xFF00
#define HDR_C(p) (((uint16_t *)(p))[-3])
#define HDR_S(p) (((uint32_t *)(p))[-1])

struct host {
    uint32_t addr;
    uint32_t syns;
    uint8_t *seen;               /* TCP flags of every packet from the host (ck_realloc'ed) */
    struct host *next;
};

struct host *hosts;              /* keyed by source address */
unsigned long n_hosts;
struct input {
    pcap_t *pc;                  /* the library's handle: the standby keeps its own */
    unsigned long packets;
} in;                            /* updated per packet, so transferred with its handle inside */
int max_hosts = 6;               /* config: read-only */

static void *ck_alloc(uint32_t n)
{
    uint8_t *r = malloc(n + HDR);
    if (!r)
        abort();
    r += HDR;
    HDR_C(r) = MAGIC;
    HDR_S(r) = n;
    memset(r, 0, n);
    return r;
}

static void ck_check(void *p)
{
    if (HDR_C(p) != MAGIC) {
        fprintf(stderr, "bad heap pointer %p\n", p);
        abort();
    }
}

static void *ck_realloc(void *p, uint32_t n)
{
    if (!p)
        return ck_alloc(n);
    ck_check(p);
    uint32_t old = HDR_S(p);
    uint8_t *r = realloc((uint8_t *)p - HDR, n + HDR);
    if (!r)
        abort();
    r += HDR;
    HDR_S(r) = n;
    if (n > old)
        memset(r + old, 0, n - old);
    return r;
}

static void ck_free(void *p)
{
    if (!p)
        return;
    ck_check(p);
    HDR_C(p) = 0;
    free((uint8_t *)p - HDR);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    (void)user;
    in.packets++;
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip) + 14)
        return;
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    uint8_t flags = ((const uint8_t *)ip)[ip->ip_hl * 4 + 13];
    struct host *e;
    for (e = hosts; e != NULL; e = e->next)
        if (e->addr == ip->ip_src.s_addr)
            break;
    if (e == NULL) {
        if (n_hosts >= (unsigned long)max_hosts) {   /* evict the newest-but-one */
            struct host *old = hosts->next;
            hosts->next = old->next;
            ck_free(old->seen);
            ck_free(old);
            n_hosts--;
        }
        e = ck_alloc(sizeof *e);
        e->addr = ip->ip_src.s_addr;
        e->next = hosts;
        hosts = e;
        n_hosts++;
    }
    uint32_t len = e->seen ? HDR_S(e->seen) : 0;
    e->seen = ck_realloc(e->seen, len + 1);
    e->seen[len] = flags;
    if (flags & 0x02)
        e->syns++;
    printf("%08x seen %u syns %u\n", e->addr, len + 1, e->syns);
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    struct bpf_program prog;
    if (argc < 2)
        return 1;
    in.pc = pcap_open_offline(argv[1], errbuf);
    if (!in.pc)
        return 1;
    if (pcap_compile(in.pc, &prog, "tcp", 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(in.pc, &prog) != 0)
        return 1;
    pcap_freecode(&prog);
    while (pcap_dispatch(in.pc, 16, on_packet, NULL) > 0)
        ;
    for (struct host *e = hosts; e != NULL; e = e->next) {
        unsigned sum = 0;
        for (uint32_t i = 0; i < HDR_S(e->seen); i++)
            sum += e->seen[i];
        printf("host %08x syns %u packets %u flagsum %u\n", e->addr, e->syns, HDR_S(e->seen), sum);
    }
    printf("hosts %lu tcp packets %lu\n", n_hosts, in.packets);
    return 0;
}
