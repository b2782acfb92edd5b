/* Ground-truth middlebox (soundness and precision): a rule-based monitor whose configuration is
 * re-parsed by a reload thread while packets are processed.
 *
 * The reload thread makes the parser reachable at run time, and because packet processing bumps
 * a hit counter inside the rules the parser allocates, a field-insensitive forward slice from
 * the packet reaches the parser too. The parser is not packet processing: its scratch buffer and
 * error counter are not per-/cross-flow state. The rule pointer it swaps in *is* updated while
 * packets are processed. Labels: reloadcfg.yaml.
 */
#include <pcap.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <net/ethernet.h>

struct rule {
    uint32_t net, mask;
    int action;
    unsigned long hits;
    struct rule *next;
};

struct rule *rules;              /* swapped in by the reload thread, read and bumped per packet */
char linebuf[128];               /* parser scratch: not per-/cross-flow state */
int parse_errors;                /* parser-only counter */
unsigned long verdicts[2];       /* per-verdict counters: updated */
const char *rule_path;           /* set at start-up: read by the parser only */
int reloads = 3;                 /* config of the reload thread: read-only */

static struct rule *parse_rules(const char *path)
{
    struct rule *head = NULL, **tail = &head;
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    while (fgets(linebuf, sizeof linebuf, f)) {
        char net[64];
        int bits, action;
        if (sscanf(linebuf, "%63s %d %d", net, &bits, &action) != 3) {
            parse_errors++;
            continue;
        }
        struct rule *r = calloc(1, sizeof *r);
        r->net = inet_addr(net);
        r->mask = bits ? htonl(~0u << (32 - bits)) : 0;
        r->net &= r->mask;
        r->action = action;
        for (struct rule *q = head; q; q = q->next)
            q->hits += 0;        /* a pass over the list (e.g. merging duplicate rules) */
        *tail = r;
        tail = &r->next;
    }
    fclose(f);
    return head;
}

static void *reload_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < reloads; i++) {
        usleep(1000);
        struct rule *n = parse_rules(rule_path);
        if (n)
            rules = n;           /* the old list leaks: packets may still use it */
    }
    return NULL;
}

static void on_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *pkt)
{
    (void)user;
    if (h->caplen < sizeof(struct ether_header) + sizeof(struct ip))
        return;
    const struct ip *ip = (const struct ip *)(pkt + sizeof(struct ether_header));
    int verdict = 0;
    for (struct rule *r = rules; r; r = r->next)
        if ((ip->ip_src.s_addr & r->mask) == r->net) {
            r->hits++;
            verdict = r->action & 1;
            break;
        }
    verdicts[verdict]++;
}

int main(int argc, char **argv)
{
    char errbuf[PCAP_ERRBUF_SIZE];
    pthread_t th;
    if (argc < 3)
        return 1;
    rule_path = argv[2];
    rules = parse_rules(rule_path);
    pcap_t *pc = pcap_open_offline(argv[1], errbuf);
    if (!pc)
        return 1;
    pthread_create(&th, NULL, reload_thread, NULL);
    pcap_loop(pc, -1, on_packet, NULL);
    pthread_join(th, NULL);
    printf("pass %lu drop %lu errors %d\n", verdicts[0], verdicts[1], parse_errors);
    return 0;
}
