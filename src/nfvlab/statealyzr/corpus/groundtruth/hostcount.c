/* Ground-truth middlebox 2: a host counter (pcap_loop callback, linked list of hosts).
 *
 * Blocks external hosts that open too many connections (the dissertation's running example,
 * Fig 4.5): a linked list of per-host SYN counters searched by source address, a threshold read
 * from the command line, allowed packets re-injected with pcap_inject (packet output), periodic
 * reports with fprintf (log output). Labels: hostcount.yaml.
 */
#include <pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <net/ethernet.h>

struct host {
    uint32_t ip;
    int count;
    struct host *next;
};

pcap_t *int_pcap;              /* output handle: used (pcap_inject), its libpcap state changes */
int threshold = 5;             /* config: read-only */
struct host *hosts;            /* linked list keyed by source address: updated */
unsigned long blocked;         /* counter: updated, impacts log output */
unsigned long forwarded;       /* counter: updated through the alias fwd_ctr, impacts log output */
unsigned long *fwd_ctr = &forwarded; /* pointer to the counter: read-only itself */
int report_every = 100;        /* config: read-only, impacts log output (when to report) */
static unsigned long seen;     /* file-static counter: updated */
char banner[64] = "hostcount"; /* init only */

static struct host *lookup(uint32_t ip)
{
    struct host *curr = hosts;
    while (curr != NULL) {
        if (curr->ip == ip)
            return curr;
        curr = curr->next;
    }
    return NULL;
}

static void report(void)
{
    fprintf(stderr, "forwarded %lu blocked %lu\n", *fwd_ctr, blocked);
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    (void)user;
    seen++;
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip))
        return;
    const struct ip *iph = (const struct ip *)(pkt + sizeof(struct ether_header));
    if (iph->ip_p != IPPROTO_TCP)
        return;
    const struct tcphdr *th = (const struct tcphdr *)((const u_char *)iph + iph->ip_hl * 4);
    struct host *entry = lookup(iph->ip_src.s_addr);
    if (entry == NULL) {
        entry = malloc(sizeof *entry);
        entry->ip = iph->ip_src.s_addr;
        entry->count = 0;
        entry->next = hosts;
        hosts = entry;
    }
    if ((th->th_flags & TH_SYN) && !(th->th_flags & TH_ACK))
        entry->count++;
    if (entry->count < threshold) {
        pcap_inject(int_pcap, pkt, h->caplen);
        (*fwd_ctr)++;
    } else {
        blocked++;
    }
    if (seen % report_every == 0)
        report();
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc < 3)
        return 1;
    if (argc > 3)
        threshold = atoi(argv[3]);
    snprintf(banner, sizeof banner, "hostcount %s", argv[1]);
    pcap_t *ext_pcap = pcap_open_offline(argv[1], errbuf);
    int_pcap = pcap_open_dead(DLT_EN10MB, 65535);
    if (!ext_pcap || !int_pcap) {
        fprintf(stderr, "%s: %s\n", banner, errbuf);
        return 1;
    }
    pcap_loop(ext_pcap, -1, on_packet, NULL);
    report();
    return 0;
}
