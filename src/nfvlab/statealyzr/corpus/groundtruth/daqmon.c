/* Ground-truth middlebox (soundness): a libdaq 2.x monitor whose packet procedure is reached only
 * through the DAQ callback registration.
 *
 * Like Snort 2.9's DAQ_Acquire(): with HAVE_DAQ_ACQUIRE_WITH_META the loop goes through
 * daq_acquire_with_meta(module, handle, cnt, callback, metaback, user), otherwise through
 * daq_acquire(module, handle, cnt, callback, user). process_packet() and on_meta() have no
 * other caller. Labels: daqmon.yaml.
 */
#define HAVE_DAQ_ACQUIRE_WITH_META 1
#include <daq.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <net/ethernet.h>

#define NBUCKETS 64

struct flow {
    uint32_t src, dst;
    unsigned long packets;
    struct flow *next;
};

static const DAQ_Module_t *daq_mod;      /* set at start-up, used by the loop: read-only */
static void *daq_handle;                 /* idem */
struct flow *flows[NBUCKETS];            /* keyed by (src, dst) */
unsigned long pkt_count;                 /* per-packet counter in the callback: updated */
unsigned long meta_events;               /* updated by the meta callback */
int use_meta = 1;                        /* config: read-only */

static DAQ_Verdict process_packet(void *user, const DAQ_PktHdr_t *h, const uint8_t *pkt)
{
    (void)user;
    pkt_count++;
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip))
        return DAQ_VERDICT_PASS;
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    unsigned b = (ip->ip_src.s_addr ^ ip->ip_dst.s_addr) % NBUCKETS;
    struct flow *f;
    for (f = flows[b]; f; f = f->next)
        if (f->src == ip->ip_src.s_addr && f->dst == ip->ip_dst.s_addr)
            break;
    if (!f) {
        f = calloc(1, sizeof *f);
        f->src = ip->ip_src.s_addr;
        f->dst = ip->ip_dst.s_addr;
        f->next = flows[b];
        flows[b] = f;
    }
    f->packets++;
    return DAQ_VERDICT_PASS;
}

static int on_meta(void *user, const DAQ_MetaHdr_t *h, const uint8_t *data)
{
    (void)user; (void)h; (void)data;
    meta_events++;
    return 0;
}

/* Snort's wrapper: the entry point differs with the library's features */
static int DAQ_Acquire(int max, DAQ_Analysis_Func_t callback, uint8_t *user)
{
#if HAVE_DAQ_ACQUIRE_WITH_META
    if (use_meta)
        return daq_acquire_with_meta(daq_mod, daq_handle, max, callback, on_meta, user);
#endif
    return daq_acquire(daq_mod, daq_handle, max, callback, user);
}

int main(int argc, char **argv)
{
    static const char *dirs[] = {DAQ_MODULE_DIR, NULL};
    char errbuf[256];
    DAQ_Config_t cfg;
    if (argc < 2)
        return 1;
    if (argc > 2)
        use_meta = atoi(argv[2]);
    if (daq_load_modules(dirs) != DAQ_SUCCESS || !(daq_mod = daq_find_module("pcap")))
        return 2;
    memset(&cfg, 0, sizeof cfg);
    cfg.name = argv[1];
    cfg.snaplen = 65535;
    cfg.mode = DAQ_MODE_READ_FILE;
    if (daq_initialize(daq_mod, &cfg, &daq_handle, errbuf, sizeof errbuf) != DAQ_SUCCESS)
        return 3;
    if (daq_start(daq_mod, daq_handle) != DAQ_SUCCESS)
        return 4;
    DAQ_Acquire(0, process_packet, NULL);
    printf("packets %lu meta %lu\n", pkt_count, meta_events);
    daq_stop(daq_mod, daq_handle);
    daq_shutdown(daq_mod, daq_handle);
    exit(0);
}
