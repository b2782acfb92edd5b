// The root of a physical chain (§3.3.1, §3.4): reads a pcap, stamps each packet with its logical
// clock (root id in the high bits), logs it in a local ring, and forwards it through its splitter
// at a set rate (packets/s) or as fast as the tunnel takes it.
//   chc-root --pcap FILE --next IP:PORT[,..] [--scope 5tuple] [--root-id R] [--rate-pps N|0]
//            [--loops K] [--log-ring N] [--bind IP:PORT] [--times-out FILE]
// --times-out: "clock send_ns" per packet (CLOCK_MONOTONIC, shared by every namespace of the host),
// so the harness can join it with the sink's arrival times for end-to-end latency.
// Prints a JSON summary: packets sent, seconds, pps, Mbit/s of frame bytes.
#include <pcap/pcap.h>
#include <sys/prctl.h>
#include <time.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <vector>

#include "chc/cli.h"
#include "chc/packet.h"
#include "chc/splitter.h"
#include "chc/tunnel.h"

namespace {
uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The packet log (§3.4): the last `capacity` packets by clock. Delete requests from the last NF
// and the in-store variant come with issue 12; the ring already holds what they need.
class PacketLog {
 public:
  explicit PacketLog(std::size_t capacity) : ring_(capacity) {}
  void append(uint64_t clock, const uint8_t* frame, std::size_t len) {
    if (ring_.empty()) return;
    Entry& e = ring_[next_++ % ring_.size()];
    e.clock = clock;
    e.frame.assign(frame, frame + len);
  }
  std::size_t size() const { return std::min<std::size_t>(next_, ring_.size()); }

 private:
  struct Entry {
    uint64_t clock = 0;
    std::vector<uint8_t> frame;
  };
  std::vector<Entry> ring_;
  std::size_t next_ = 0;
};
}  // namespace

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"pcap", "next", "scope", "root-id", "rate-pps", "loops", "log-ring", "bind", "times-out"});
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* pc = pcap_open_offline(args.need("pcap").c_str(), err);
  if (!pc) throw std::runtime_error(std::string("cannot read pcap: ") + err);
  if (pcap_datalink(pc) != DLT_EN10MB) throw std::runtime_error("pcap must hold Ethernet frames (DLT_EN10MB)");
  std::vector<std::vector<uint8_t>> frames;
  pcap_pkthdr* ph;
  const u_char* bytes;
  while (pcap_next_ex(pc, &ph, &bytes) == 1) frames.emplace_back(bytes, bytes + ph->caplen);
  pcap_close(pc);

  chc::Splitter splitter;
  std::vector<chc::Endpoint> down;
  for (const auto& e : chc::split(args.need("next"), ',')) down.push_back(chc::Endpoint::parse(e));
  splitter.set_rule(args.get("scope", "5tuple"), down);
  chc::Tunnel tunnel(chc::Endpoint::parse(args.get("bind", "0.0.0.0:0")));
  const auto root_id = static_cast<uint8_t>(args.num("root-id", 1));
  const long long rate = args.num("rate-pps", 0), loops = args.num("loops", 1);
  PacketLog log(static_cast<std::size_t>(args.num("log-ring", 65536)));

  std::vector<chc::Datagram> out(chc::kBatch);
  constexpr uint64_t kSpinNs = 20000;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // wake on time (default slack 50 µs)
  const bool times = args.has("times-out");
  std::vector<uint64_t> sent_at;  // by counter - 1
  auto stamp = [&](std::size_t n) {
    if (times) sent_at.insert(sent_at.end(), n, now_ns());
  };
  uint64_t counter = 0, sent = 0, frame_bytes = 0, unparsed = 0;
  const uint64_t t0 = now_ns();
  std::size_t nout = 0;
  for (long long loop = 0; loop < loops; ++loop) {
    for (auto& f : frames) {
      chc::Header h;
      h.clock = chc::Header::make_clock(root_id, ++counter);
      chc::Datagram& d = out[nout++];
      d.set(h, f.data(), f.size());
      auto fr = chc::Frame::parse(d.frame(), f.size());
      if (!fr) ++unparsed;  // non-IPv4/TCP/UDP frames go to the first instance
      d.peer = splitter.address(fr ? splitter.pick(fr->tuple) : 0);
      log.append(h.clock, f.data(), f.size());
      frame_bytes += f.size();
      if (rate > 0) {  // pace: packet k leaves at t0 + k / rate, one datagram per send
        uint64_t due = t0 + counter * 1000000000ull / static_cast<uint64_t>(rate);
        // Sleep through long gaps (a spinning root starves the instances sharing its core on a
        // small machine), spin through the last stretch and short gaps.
        if (due > now_ns() + kSpinNs) {
          const uint64_t wake = due - kSpinNs;
          timespec ts{static_cast<time_t>(wake / 1000000000ull), static_cast<long>(wake % 1000000000ull)};
          clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
        }
        while (now_ns() < due) {
        }
        stamp(nout);
        sent += tunnel.send_batch(out, nout);
        nout = 0;
      } else if (nout == out.size()) {
        stamp(nout);
        sent += tunnel.send_batch(out, nout);
        nout = 0;
      }
    }
  }
  if (nout) {
    stamp(nout);
    sent += tunnel.send_batch(out, nout);
  }
  if (times) {
    std::ofstream f(args.need("times-out"));
    for (std::size_t k = 0; k < sent_at.size(); ++k) f << chc::Header::make_clock(root_id, k + 1) << " " << sent_at[k] << "\n";
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf(
      "{\"sent\":%llu,\"unparsed\":%llu,\"logged\":%zu,\"seconds\":%.6f,\"pps\":%.1f,\"mbps\":%.3f,"
      "\"last_clock\":%llu}\n",
      (unsigned long long)sent, (unsigned long long)unparsed, log.size(), secs, sent / secs,
      frame_bytes * 8 / secs / 1e6, (unsigned long long)chc::Header::make_clock(root_id, counter));
  return 0;
} catch (const std::exception& e) {
  std::cerr << "chc-root: " << e.what() << "\n";
  return 2;
}
