/* Ground-truth middlebox 5: the dissertation's running example (Fig 4.5), made compilable.
 *
 * Blocks external hosts creating too many connections. The receive loop (loopProcedure) enqueues
 * packets; processPacket runs in another thread (started through pthread_create, so it is reached
 * only through data dependences on the queue); `tail` is updated only through the alias `index`.
 * Labels: paperfig45.yaml.
 */
#include <pcap.h>
#include <pthread.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <net/ethernet.h>

struct host {
    unsigned ip;
    int count;
    struct host *next;
};

pcap_t *intPcap, *extPcap;
int threshold;
const u_char *queue[100];
int head = 0, tail = 0;
struct host *hosts = NULL;
pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct host *lookup(unsigned ip)
{
    struct host *curr = hosts;
    while (curr != NULL) {
        if (curr->ip == ip)
            return curr;
        curr = curr->next;
    }
    return NULL;
}

static void enqueue(const u_char *pkt)
{
    head = (head + 1) % 100;
    queue[head] = pkt;
}

static const u_char *dequeue(void)
{
    int *index = &tail;
    *index = (*index + 1) % 100;
    return queue[*index];
}

static void *processPacket(void *arg)
{
    (void)arg;
    while (1) {
        pthread_mutex_lock(&lock);
        if (head == tail) {
            pthread_mutex_unlock(&lock);
            continue;
        }
        const u_char *pkt = dequeue();
        pthread_mutex_unlock(&lock);
        const struct ether_header *ethHdr = (const struct ether_header *)pkt;
        const struct iphdr *ipHdr = (const struct iphdr *)(ethHdr + 1);
        const struct tcphdr *tcpHdr = (const struct tcphdr *)(ipHdr + 1);
        struct host *entry = lookup(ipHdr->saddr);
        if (entry == NULL) {
            entry = malloc(sizeof(struct host));
            entry->ip = ipHdr->saddr;
            entry->count = 0;
            entry->next = hosts;
            hosts = entry;
        }
        if (tcpHdr->syn && !tcpHdr->ack)
            entry->count++;
    }
    return NULL;
}

static int loopProcedure(void)
{
    while (1) {
        struct pcap_pkthdr pcapHdr;
        const u_char *pkt = pcap_next(extPcap, &pcapHdr);
        if (pkt == NULL)
            return 0;
        pthread_mutex_lock(&lock);
        enqueue(pkt);
        pthread_mutex_unlock(&lock);
        struct host *entry = lookup(((const struct iphdr *)(pkt + 14))->saddr);
        if (entry == NULL || entry->count < threshold)
            pcap_inject(intPcap, pkt, pcapHdr.caplen);
    }
}

int main(int argc, char **argv)
{
    pthread_t thread;
    char errbuf[PCAP_ERRBUF_SIZE];
    if (argc < 4)
        return 1;
    intPcap = pcap_open_dead(DLT_EN10MB, 65535);
    extPcap = pcap_open_offline(argv[1], errbuf);
    threshold = atoi(argv[3]);
    pthread_create(&thread, NULL, processPacket, NULL);
    return loopProcedure();
}
