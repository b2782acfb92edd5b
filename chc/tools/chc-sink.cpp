// The chain's exit: receives tunnel datagrams, writes the frames to a pcap and their clocks to a
// text file, and stops after --expect packets or --idle-ms without any.
//   chc-sink --listen IP:PORT [--pcap-out FILE] [--clocks-out FILE] [--expect N] [--idle-ms MS]
//            [--times-out FILE] ("clock arrival_ns" per packet, CLOCK_MONOTONIC: end-to-end latency)
//            [--start-timeout-ms MS]   (how long to wait for the first packet; the idle clock starts then)
//            [--dedup]   (drop a packet whose clock was already delivered: the downstream queue's
//                         duplicate-output suppression of R5/R6, counted as "duplicates")
// SIGTERM/SIGINT end it like the idle timeout (the pcap is flushed, the summary printed, exit 0): a
// harness that knows the chain is done need not wait out --idle-ms.
// Prints a JSON summary: packets, frame bytes, seconds from first to last packet, pps, Mbit/s.
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <unordered_set>

#include "chc/monotonic.h"
#include "chc/cli.h"
#include "chc/tunnel.h"

using chc::now_ns;

namespace {
volatile sig_atomic_t stop_requested = 0;
void on_stop(int) { stop_requested = 1; }

}  // namespace

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"listen", "pcap-out", "clocks-out", "expect", "idle-ms", "start-timeout-ms", "times-out",
                              "dedup"});
  const bool dedup = args.has("dedup");
  std::unordered_set<uint64_t> seen;
  chc::Tunnel tunnel(chc::Endpoint::parse(args.need("listen")), 16 << 20);
  const long long expect = args.num("expect", 0), idle_ms = args.num("idle-ms", 2000),
                  start_ms = args.num("start-timeout-ms", 60000);
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* dump = nullptr;
  if (args.has("pcap-out")) {
    dump = pcap_dump_open(dead, args.need("pcap-out").c_str());
    if (!dump) throw std::runtime_error(std::string("cannot write pcap: ") + pcap_geterr(dead));
  }
  std::unique_ptr<std::ofstream> clocks;
  if (args.has("clocks-out")) clocks = std::make_unique<std::ofstream>(args.need("clocks-out"));
  std::unique_ptr<std::ofstream> times;
  if (args.has("times-out")) times = std::make_unique<std::ofstream>(args.need("times-out"));
  std::printf("{\"listening\":%u}\n", tunnel.local_port());
  std::fflush(stdout);

  std::vector<chc::Datagram> in(chc::kBatch);
  uint64_t packets = 0, bytes = 0, bad = 0, first = 0, last = 0, duplicates = 0, replayed = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop;  // no SA_RESTART: poll returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  while ((expect == 0 || static_cast<long long>(packets) < expect) && !stop_requested) {
    pollfd p{tunnel.fd(), POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(packets ? idle_ms : start_ms));
    if (ready == 0) break;  // idle: the chain has drained
    if (ready < 0) continue;  // EINTR: the loop condition sees the stop request
    std::size_t n = tunnel.recv_batch(in);
    uint64_t t = now_ns();
    for (std::size_t i = 0; i < n; ++i) {
      auto h = chc::decode(in[i].bytes, in[i].len);
      if (!h) {
        ++bad;
        continue;
      }
      if (h->flags & chc::kFlagReplayed) ++replayed;
      if (dedup && !seen.insert(h->clock).second) {
        ++duplicates;
        continue;
      }
      if (!first) first = t;
      last = t;
      ++packets;
      bytes += h->frame_len;
      if (dump) {
        pcap_pkthdr ph{};
        ph.ts.tv_sec = static_cast<time_t>(t / 1000000000ull);
        ph.ts.tv_usec = static_cast<suseconds_t>(t % 1000000000ull / 1000);
        ph.caplen = ph.len = h->frame_len;
        pcap_dump(reinterpret_cast<u_char*>(dump), &ph, in[i].frame());
      }
      if (clocks) *clocks << h->clock << " " << h->xor_vec << " " << h->origin_instance << "\n";
      if (times) *times << h->clock << " " << t << "\n";
    }
  }
  if (dump) pcap_dump_close(dump);
  pcap_close(dead);
  double secs = static_cast<double>(last - first) / 1e9;
  std::printf("{\"packets\":%llu,\"bad\":%llu,\"bytes\":%llu,\"duplicates\":%llu,\"replayed\":%llu,"
              "\"seconds\":%.6f,\"pps\":%.1f,\"mbps\":%.3f}\n",
              (unsigned long long)packets, (unsigned long long)bad, (unsigned long long)bytes,
              (unsigned long long)duplicates, (unsigned long long)replayed, secs,
              secs > 0 ? packets / secs : 0.0, secs > 0 ? bytes * 8 / secs / 1e6 : 0.0);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "chc-sink: " << e.what() << "\n";
  return 2;
}
