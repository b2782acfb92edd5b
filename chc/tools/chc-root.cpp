// The root of a physical chain (§3.3.1, §3.4): reads a pcap, stamps each packet with its logical
// clock (root id in the high bits), logs it, and forwards it through its splitter at a set rate
// (packets/s) or as fast as the tunnel takes it.
//   chc-root --pcap FILE --next IP:PORT[,..] [--scope 5tuple] [--root-id R] [--rate-pps N|0]
//            [--loops K] [--log-ring N] [--bind IP:PORT] [--control PATH]
//            [--deletes [--log local|store] [--log-max N] [--store H:P[,..]] [--xor-check]] [--times-out FILE]
//            [--persist-clock N [--recover] [--input-from K]]
// --times-out: "clock send_ns" per packet (first send, CLOCK_MONOTONIC, shared by every namespace of
// the host), so the harness can join it with the sink's arrival times for end-to-end latency.
// Without --deletes the log is a ring of the last --log-ring packets and the root exits once all are
// sent. With --deletes (issue 12, §3.4.4) a packet stays logged until the chain's last NF sends a
// delete request for its clock (and, with --xor-check, until the XOR of the commit signals the store
// appended for that clock to its stream "chc:commit:r<root id>" equals the packet's XOR vector);
// the root stops admitting input while the log holds --log-max packets, and exits when every packet
// is sent and the log is empty (or on "stop"). --log store keeps the frames in the store's hash
// "chc:{log:r<root id>}" (clock -> frame) instead of the root's memory.
// --persist-clock N (§3.4.4 root failover, §3.6.2): the root writes its packet counter to the store's
// hash "chc:{root:r<id>}" every N packets and admits packet c only once a written value >= c - N is
// acknowledged (a lease: a new root that starts at stored + N never reuses a clock, even when the
// last write was in flight). --recover: the failover root reads the stored counter L and period N and
// continues at counter L + N; --input-from K: its input starts at packet K of the trace (the packets
// the framework buffered while no root ran; the harness knows K, see faults.py kill-root).
// Control socket: stats | go | pause-at N | hold I | replay I | clone I HOST:PORT ID |
// clone-at N I HOST:PORT ID | add HOST:PORT | move ID FROM TO FROM_INSTANCE HI [nomark] | stop (docs/chc.md).
// "add" (R2 scale-up) appends a downstream instance the hash rule sends nothing to; "move" sends the
// flows of downstream FROM in buckets [0, HI) of 4096 to TO from now on (chc/move.h), after a "last"
// marker to FROM and a "first" marker to TO (flags LAST / FIRST, the move as payload, clock 0);
// "nomark" changes the rule only (the OpenNF-style baseline: its controller moved the state already).
// "clone" (R5, §3.4.3): replays every logged packet of downstream I to the clone at HOST:PORT (flagged
// REPLAYED, clone id ID), then sends it the end-of-replay marker (REPLAYED|LAST, no frame), and from
// then on replicates every new packet for I to it (counted as "replicated", not as "sent"); "clone-at"
// does the same once packet N is admitted (exactly there, while packets are in flight). --paused: admit
// nothing until "go"; "pause-at N": stop admitting once packet N is admitted, until "go" (so a
// harness injects a fault exactly there, whatever its own scheduling delay). Prints a JSON summary.
#include <event2/event.h>
#include <pcap/pcap.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "chc/monotonic.h"
#include "chc/cli.h"
#include "chc/control.h"
#include "chc/move.h"
#include "chc/packet.h"
#include "chc/splitter.h"
#include "chc/store.h"
#include "chc/tunnel.h"

using chc::now_ns;

namespace {
// The packet log: clock -> (downstream index, frame). In store mode the frame lives in the store and
// the entry keeps only where the packet went (the root's own metadata, needed to replay it).
struct LogEntry {
  std::size_t downstream = 0;
  std::vector<uint8_t> frame;  // empty in store mode
};

struct Totals {
  uint64_t sent = 0, unparsed = 0, frame_bytes = 0, delete_requests = 0, deleted = 0, commits = 0, replayed = 0,
           stalls = 0, max_logged = 0, stray = 0, stray_commits = 0, stray_deletes = 0;
};
}  // namespace

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"pcap", "next", "scope", "root-id", "rate-pps", "loops", "log-ring", "bind", "control",
                              "deletes", "log", "log-max", "store", "xor-check", "times-out", "paused",
                              "persist-clock", "recover", "input-from"});
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
  chc::Tunnel tunnel(chc::Endpoint::parse(args.get("bind", "0.0.0.0:0")), 16 << 20);
  const auto root_id = static_cast<uint8_t>(args.num("root-id", 1));
  const long long rate = args.num("rate-pps", 0), loops = args.num("loops", 1);
  const bool deletes = args.has("deletes"), xor_check = args.has("xor-check");
  const std::string log_mode = args.get("log", "local");
  if (log_mode != "local" && log_mode != "store") throw std::invalid_argument("--log must be local or store");
  const bool in_store = log_mode == "store";
  if ((in_store || xor_check) && !args.has("store")) throw std::invalid_argument("--log store and --xor-check need --store");
  if ((in_store || xor_check) && !deletes) throw std::invalid_argument("--log store and --xor-check need --deletes");
  const std::size_t ring = static_cast<std::size_t>(args.num("log-ring", 65536));
  const std::size_t log_max = static_cast<std::size_t>(args.num("log-max", 4096));
  const std::string rid = std::to_string(root_id);
  const std::string log_key = "chc:{log:r" + rid + "}", commit_key = "chc:commit:r" + rid;
  const std::string clock_key = "chc:{root:r" + rid + "}";
  uint64_t persist_every = static_cast<uint64_t>(args.num("persist-clock", 0));
  const bool recover = args.has("recover");
  if ((persist_every || recover) && !args.has("store")) throw std::invalid_argument("--persist-clock and --recover need --store");
  if (recover && !persist_every) throw std::invalid_argument("--recover needs --persist-clock");
  const long long input_from = args.num("input-from", 0);
  if (input_from < 0) throw std::invalid_argument("--input-from must be >= 0");

  event_base* base = event_base_new();
  // Freed last, also when an error unwinds the block below (its store clients need the base).
  std::unique_ptr<event_base, decltype(&event_base_free)> base_owner(base, &event_base_free);
  bool running = true, paused = args.has("paused");
  int rc = 0;
  {
    // Two store clients: log writes on one, the blocking XREAD of the commit stream on the other.
    // Declared before the store clients, so it outlives them: the clock-write callbacks write it,
    // and a client freed while unwinding an error still calls its pending callbacks.
    uint64_t persisted = 0;  // the last persisted counter the store acknowledged
    std::unique_ptr<chc::StoreClient> store, commits;
    if (args.has("store")) {
      chc::StoreOptions opts;
      opts.nodes = chc::parse_store_nodes(args.need("store"));
      store = std::make_unique<chc::StoreClient>(base, opts, 0, 0);
      if (xor_check) commits = std::make_unique<chc::StoreClient>(base, opts, 0, 0);
    }
    if (in_store) store->command_sync(log_key, {"DEL", log_key});

    // The clock lease: `counter` is the last counter used; packets up to persisted + persist_every may
    // be admitted. A failover root continues at the stored counter + the stored period.
    uint64_t counter = 0, clock_waits = 0, resumed_from = 0, read_ns = 0, recovery_ns = 0;
    const uint64_t recovery_t0 = now_ns();
    if (recover) {
      store->command_sync(clock_key, {"PING"});  // connected: what follows is what a standby root pays
      const uint64_t read_t0 = now_ns();
      chc::Reply r = store->command_sync(clock_key, {"HMGET", clock_key, "counter", "every"});
      read_ns = now_ns() - read_t0;
      if (r.elements.size() != 2 || r.elements[0].is_nil() || r.elements[1].is_nil())
        throw std::runtime_error("--recover: no persisted clock in " + clock_key);
      resumed_from = std::stoull(r.elements[0].str);
      persist_every = std::stoull(r.elements[1].str);
      counter = resumed_from + persist_every;
    }
    if (persist_every) {  // the starting point is durable before the first packet
      chc::Reply r = store->command_sync(clock_key, {"HSET", clock_key, "counter", std::to_string(counter), "every",
                                                     std::to_string(persist_every)});
      if (r.is_error()) throw std::runtime_error("cannot persist the clock: " + r.str);
      persisted = counter;
    }
    // What root failover costs in the root (§3.6.3: "< 41.2 µs"): read_ns is the clock read on a
    // connected client (a standby root); recovery_ns adds connecting and making the new starting point
    // durable (process start and the harness not included).
    if (recover) recovery_ns = now_ns() - recovery_t0;
    uint64_t written = counter;  // the last counter value sent to the store
    const uint64_t start_counter = counter;
    std::size_t next = static_cast<std::size_t>(input_from);
    uint64_t admitted = 0;  // packets this root admitted (its pacing and pause-at count these)
    const std::size_t total = frames.size() * static_cast<std::size_t>(loops);

    std::map<uint64_t, LogEntry> log;
    std::unordered_map<uint64_t, uint32_t> want;     // clock -> XOR vector of its delete request
    std::unordered_map<uint64_t, uint32_t> signals;  // clock -> XOR of the commit signals so far
    std::set<std::size_t> held;                      // downstream instances the root must not send to
    Totals t;

    auto erase = [&](uint64_t clock) {
      if (!log.erase(clock)) return;
      ++t.deleted;
      want.erase(clock);
      signals.erase(clock);
      if (in_store) store->command(log_key, {"HDEL", log_key, std::to_string(clock)}, nullptr);
    };
    auto try_delete = [&](uint64_t clock) {
      auto w = want.find(clock);
      if (w == want.end()) return;
      auto s = signals.find(clock);
      uint32_t got = s == signals.end() ? 0 : s->second;
      if (!xor_check || got == w->second) erase(clock);
    };

    // --- commit signals: XREAD BLOCK on every store node, re-issued after each reply.
    std::vector<std::string> last_ids;
    std::function<void(std::size_t)> read_commits = [&](std::size_t node) {
      commits->command_on(node, {"XREAD", "BLOCK", "100", "COUNT", "1024", "STREAMS", commit_key, last_ids[node]},
                          [&, node](const chc::Reply& r) {
                            if (r.is_error()) {
                              if (running) std::cerr << "chc-root: commit stream: " << r.str << "\n";
                              return;  // the store went away: no more signals from this node
                            }
                            // [[key, [[id, [f1, v1, f2, v2]], ...]]] or nil on timeout
                            for (const auto& stream : r.elements) {
                              if (stream.elements.size() < 2) continue;
                              for (const auto& e : stream.elements[1].elements) {
                                last_ids[node] = e.elements[0].str;
                                uint64_t clock = 0;
                                uint32_t x = 0;
                                const auto& kv = e.elements[1].elements;
                                for (std::size_t i = 0; i + 1 < kv.size(); i += 2) {
                                  if (kv[i].str == "c") clock = std::stoull(kv[i + 1].str);
                                  if (kv[i].str == "x") x = static_cast<uint32_t>(std::stoul(kv[i + 1].str));
                                }
                                ++t.commits;
                                if (!log.count(clock)) {  // an earlier root's packet, or already deleted
                                  ++t.stray_commits;
                                  continue;
                                }
                                signals[clock] ^= x;
                                try_delete(clock);
                              }
                            }
                            if (!r.elements.empty())  // read entries are done with: trim them
                              store->command_on(node, {"XTRIM", commit_key, "MINID", last_ids[node]}, nullptr);
                            if (running) read_commits(node);
                          });
    };
    if (commits) {
      for (std::size_t n = 0; n < commits->node_count(); ++n) {
        // Start after the newest entry now in the stream (an earlier run's signals are not ours).
        bool done = false;
        std::string id = "0-0";
        commits->command_on(n, {"XREVRANGE", commit_key, "+", "-", "COUNT", "1"}, [&](const chc::Reply& r) {
          if (!r.elements.empty() && !r.elements[0].elements.empty()) id = r.elements[0].elements[0].str;
          done = true;
        });
        while (!done) event_base_loop(base, EVLOOP_ONCE);
        last_ids.push_back(id);
      }
      for (std::size_t n = 0; n < commits->node_count(); ++n) read_commits(n);
    }

    std::unique_ptr<chc::ControlSocket> control;
    if (args.has("control")) control = std::make_unique<chc::ControlSocket>(base, args.need("control"));
    event* rx = event_new(base, tunnel.fd(), EV_READ | EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
    event_add(rx, nullptr);
    auto stop_cb = [](evutil_socket_t, short, void* flag) { *static_cast<bool*>(flag) = false; };
    event* sigterm = evsignal_new(base, SIGTERM, stop_cb, &running);
    event_add(sigterm, nullptr);

    std::vector<chc::Datagram> out(chc::kBatch), in(chc::kBatch);
    std::size_t nout = 0;
    const bool times = args.has("times-out");
    std::vector<uint64_t> sent_at;  // by packet counter - 1: first send
    // Straggler clones: downstream index -> the clone's address (every new packet goes there too).
    std::map<std::size_t, sockaddr_in> clones;
    struct PendingClone {
      uint64_t at;
      std::size_t downstream;
      sockaddr_in to;
      uint16_t id;
    };
    std::optional<PendingClone> pending_clone;
    uint64_t clone_replayed = 0;
    std::vector<chc::Datagram> copies(chc::kBatch);
    std::size_t ncopies = 0;
    uint64_t replicated = 0;
    auto flush_copies = [&] {
      if (ncopies) replicated += tunnel.send_batch(copies, ncopies);
      ncopies = 0;
    };
    auto flush = [&] {
      if (times) {
        uint64_t now = now_ns();
        for (std::size_t k = 0; k < nout; ++k) {
          uint64_t c = out[k].header().counter();
          if (c == 0) continue;  // a clone's end-of-replay marker carries no packet
          if (sent_at.size() < c) sent_at.resize(c, 0);
          if (!sent_at[c - 1]) sent_at[c - 1] = now;
        }
      }
      if (nout) t.sent += tunnel.send_batch(out, nout);
      nout = 0;
      flush_copies();
    };

    // Replays every logged packet that went to downstream `i`, in clock order, flagged REPLAYED
    // (R6 NF failover: the replacement instance listens where the failed one did).
    auto replay = [&](std::size_t i, const sockaddr_in* to = nullptr, uint16_t clone_id = 0) {
      flush();
      const uint64_t sent_before = t.sent;  // replays to a clone are not new input
      std::vector<uint64_t> clocks;
      for (const auto& [clock, e] : log)
        if (e.downstream == i) clocks.push_back(clock);
      for (std::size_t k = 0; k < clocks.size(); k += chc::kBatch) {
        std::size_t n = std::min(chc::kBatch, clocks.size() - k);
        std::vector<std::vector<uint8_t>> got(n);
        if (in_store) {
          std::vector<std::string> mget{"HMGET", log_key};
          for (std::size_t j = 0; j < n; ++j) mget.push_back(std::to_string(clocks[k + j]));
          chc::Reply r = store->command_sync(log_key, mget);
          for (std::size_t j = 0; j < n && j < r.elements.size(); ++j)
            got[j].assign(r.elements[j].str.begin(), r.elements[j].str.end());
        } else {
          for (std::size_t j = 0; j < n; ++j) got[j] = log[clocks[k + j]].frame;
        }
        for (std::size_t j = 0; j < n; ++j) {
          if (got[j].empty()) continue;  // deleted meanwhile (or lost with the store)
          chc::Header h;
          h.clock = clocks[k + j];
          h.flags = chc::kFlagReplayed;
          h.clone_id = clone_id;
          out[nout].set(h, got[j].data(), got[j].size());
          out[nout++].peer = to ? *to : splitter.address(i);
          ++t.replayed;
        }
        flush();
      }
      if (to) {  // the clone's end-of-replay marker; then the straggler's traffic is replicated to it
        chc::Header m;
        m.flags = chc::kFlagReplayed | chc::kFlagLast;
        m.clone_id = clone_id;
        out[nout].set(m, out[nout].frame(), 0);
        out[nout++].peer = *to;
        flush();
        t.sent = sent_before;
        clones[i] = *to;
      } else {
        held.erase(i);
      }
      return clocks.size();
    };

    uint64_t t0 = now_ns(), paused_since = t0, pause_at = 0, input_done_ns = 0;
    uint64_t lease_blocked_since = 0, lease_wait_ns = 0;  // time input waited for a clock write's ack
    auto handle = [&](const std::string& line) -> std::string {
      std::istringstream cmd(line);
      std::string op;
      cmd >> op;
      if (op == "stats") {
        std::ostringstream s;
        s << "ok sent=" << t.sent << " logged=" << log.size() << " deleted=" << t.deleted
          << " delete_requests=" << t.delete_requests << " commits=" << t.commits << " replayed=" << t.replayed
          << " stalls=" << t.stalls << " paused=" << (paused ? 1 : 0) << " counter=" << counter
          << " persisted=" << persisted << " input=" << next << " input_done=" << (next >= total ? 1 : 0)
          << " clone_replayed=" << clone_replayed << " replicated=" << replicated;
        return s.str();
      }
      if (op == "go") {
        if (paused) t0 += now_ns() - paused_since;  // pacing resumes where it stopped, no burst
        paused = false;
        return "ok";
      }
      if (op == "pause-at") {
        cmd >> pause_at;
        return "ok";
      }
      if (op == "hold" || op == "replay") {
        std::size_t i = down.size();
        cmd >> i;
        if (i >= down.size()) return "err no downstream " + std::to_string(i);
        if (op == "hold") {
          held.insert(i);
          return "ok";
        }
        return "ok replayed=" + std::to_string(replay(i));
      }
      if (op == "clone" || op == "clone-at") {
        uint64_t at = 0;
        if (op == "clone-at") cmd >> at;
        std::size_t i = down.size();
        std::string addr;
        unsigned id = 0;
        cmd >> i >> addr >> id;
        if (i >= down.size()) return "err no downstream " + std::to_string(i);
        if (id == 0 || id > 0xffff) return "err clone id must be 1..65535";
        if (in_store) return "err clone replays from the local log only";
        sockaddr_in to{};
        try {
          to = chc::Endpoint::parse(addr).sockaddr();
        } catch (const std::exception& e) {
          return std::string("err ") + e.what();
        }
        if (op == "clone-at") {
          pending_clone = PendingClone{at, i, to, static_cast<uint16_t>(id)};
          return "ok";
        }
        return "ok replayed=" + std::to_string(replay(i, &to, static_cast<uint16_t>(id)));
      }
      if (op == "add") {
        std::string addr;
        cmd >> addr;
        try {
          down.push_back(chc::Endpoint::parse(addr));
        } catch (const std::exception& e) {
          return std::string("err ") + e.what();
        }
        return "ok index=" + std::to_string(splitter.add_downstream(down.back()));
      }
      if (op == "move") {
        chc::Move m;
        unsigned from_instance = 0;
        if (!(cmd >> m.id >> m.from_index >> m.to_index >> from_instance >> m.hi))
          return "err usage: move ID FROM TO FROM_INSTANCE HI [nomark]";
        std::string mark;
        cmd >> mark;  // "nomark": only the rule changes (the OpenNF-style baseline's switch update)
        std::ostringstream text;
        text << "move " << m.id << " " << splitter.scope() << " " << splitter.base_count() << " " << m.from_index << " "
             << m.to_index << " " << from_instance << " " << m.hi;
        try {
          m = chc::Move::parse(text.str());
          splitter.add_move(m);
        } catch (const std::exception& e) {
          return std::string("err ") + e.what();
        }
        flush();  // everything admitted before the move reaches FROM ahead of its "last" marker
        const uint64_t at = now_ns();
        const std::string payload = m.encode();
        const uint64_t sent_before = t.sent;
        for (auto [to, flag] : {std::pair{m.from_index, chc::kFlagLast}, std::pair{m.to_index, chc::kFlagFirst}}) {
          if (mark == "nomark") break;
          chc::Header h;
          h.flags = flag;
          out[nout].set(h, reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
          out[nout++].peer = splitter.address(to);
        }
        flush();
        t.sent = sent_before;  // markers are not input
        return "ok t_ns=" + std::to_string(at) + " admitted=" + std::to_string(admitted);
      }
      if (op == "stop") {
        running = false;
        return "ok";
      }
      return "err unknown command: " + line;
    };

    constexpr uint64_t kSpinNs = 20000;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // wake on time (default slack 50 µs)
    while (running) {
      // Admit input: as fast as allowed, paced by --rate-pps, while the log has room.
      bool stalled = false;
      while (!paused && next < total && nout < out.size()) {
        if (pending_clone && admitted >= pending_clone->at) {  // clone-at: exactly here
          PendingClone due_clone = *pending_clone;
          pending_clone.reset();
          clone_replayed = replay(due_clone.downstream, &due_clone.to, due_clone.id);
        }
        if (pause_at && admitted >= pause_at) {
          paused = true;
          paused_since = now_ns();
          pause_at = 0;
          break;
        }
        if (deletes && log.size() >= log_max) {
          stalled = true;
          break;
        }
        if (persist_every && counter >= persisted + persist_every) {  // the lease is used up: wait for the ack
          stalled = true;
          ++clock_waits;
          if (!lease_blocked_since) lease_blocked_since = now_ns();
          break;
        }
        if (lease_blocked_since) {
          lease_wait_ns += now_ns() - lease_blocked_since;
          lease_blocked_since = 0;
        }
        if (rate > 0 && now_ns() < t0 + (admitted + 1) * 1000000000ull / static_cast<uint64_t>(rate)) break;
        const auto& f = frames[next++ % frames.size()];
        chc::Header h;
        h.clock = chc::Header::make_clock(root_id, ++counter);
        ++admitted;
        if (persist_every && counter >= written + persist_every) {
          written = counter;
          store->command(clock_key, {"HSET", clock_key, "counter", std::to_string(counter)},
                         [&persisted, c = counter](const chc::Reply& r) {
                           if (!r.is_error()) persisted = std::max(persisted, c);
                         });
        }
        chc::Datagram& d = out[nout];
        d.set(h, f.data(), f.size());
        auto fr = chc::Frame::parse(d.frame(), f.size());
        if (!fr) ++t.unparsed;  // non-IPv4/TCP/UDP frames go to the first instance
        std::size_t to = fr ? splitter.pick(fr->tuple) : 0;
        d.peer = splitter.address(to);
        if (deletes) {
          LogEntry& e = log[h.clock];
          e.downstream = to;
          if (in_store)
            store->command(log_key, {"HSET", log_key, std::to_string(h.clock),
                                     std::string(reinterpret_cast<const char*>(f.data()), f.size())}, nullptr);
          else
            e.frame = f;
          t.max_logged = std::max<uint64_t>(t.max_logged, log.size());
        } else {
          log[h.clock] = LogEntry{to, f};
          if (log.size() > ring) log.erase(log.begin());
        }
        t.frame_bytes += f.size();
        auto clone = clones.find(to);
        if (clone != clones.end()) {  // R5: the straggler's clone gets every packet too
          copies[ncopies].set(h, f.data(), f.size());
          copies[ncopies++].peer = clone->second;
          if (ncopies == copies.size()) flush_copies();
        }
        if (!held.count(to)) ++nout;  // held: logged only, replayed when the instance is back
        if (rate > 0) flush();        // paced: one datagram per send
      }
      if (stalled) ++t.stalls;
      flush();
      if (!input_done_ns && next >= total) input_done_ns = now_ns();  // the last packet is out
      // Delete requests from the last NF.
      std::size_t n = tunnel.recv_batch(in);
      for (std::size_t i = 0; i < n; ++i) {
        auto h = chc::decode(in[i].bytes, in[i].len);
        if (!h || !(h->flags & chc::kFlagDelete)) {
          ++t.stray;
          continue;
        }
        ++t.delete_requests;
        if (!log.count(h->clock)) {  // a duplicate request (replay) for a deleted packet, or an earlier root's
          ++t.stray_deletes;
          continue;
        }
        want[h->clock] = h->xor_vec;
        try_delete(h->clock);
      }
      if (control && control->has_pending()) control->run_pending(handle);
      if (next >= total && (!deletes || log.empty())) break;
      bool busy = n > 0 || (next < total && !stalled && !paused);
      if (busy && n == 0 && rate > 0) {
        // Paced and the next packet not yet due: sleep through long gaps (a spinning root starves the
        // instances sharing its core on a small machine), at most 1 ms so deletes and control wait little.
        const uint64_t due = t0 + (admitted + 1) * 1000000000ull / static_cast<uint64_t>(rate);
        const uint64_t now = now_ns();
        if (due > now + kSpinNs) {
          const uint64_t wake = std::min<uint64_t>(due - kSpinNs, now + 1000000ull);
          timespec ts{static_cast<time_t>(wake / 1000000000ull), static_cast<long>(wake % 1000000000ull)};
          clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
        }
      }
      event_base_loop(base, busy ? EVLOOP_NONBLOCK | EVLOOP_ONCE : EVLOOP_ONCE);
    }
    double secs = static_cast<double>(now_ns() - t0) / 1e9;
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu_secs = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                            static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    if (store) store->drain();
    if (times) {
      std::ofstream f(args.need("times-out"));
      for (std::size_t k = 0; k < sent_at.size(); ++k)
        f << chc::Header::make_clock(root_id, k + 1) << " " << sent_at[k] << "\n";
    }
    std::printf(
        "{\"sent\":%llu,\"unparsed\":%llu,\"logged\":%zu,\"seconds\":%.6f,\"send_seconds\":%.6f,\"cpu_seconds\":%.6f,\"lease_wait_seconds\":%.6f,\"pps\":%.1f,\"mbps\":%.3f,"
        "\"last_clock\":%llu,\"admitted\":%llu,\"input_from\":%lld,\"input_end\":%zu,\"start_counter\":%llu,"
        "\"resumed_from\":%llu,\"clock_read_us\":%.1f,\"recovery_us\":%.1f,\"persist_every\":%llu,\"persisted\":%llu,\"clock_waits\":%llu,"
        "\"delete_requests\":%llu,\"deleted\":%llu,\"commits\":%llu,\"stray_deletes\":%llu,"
        "\"stray_commits\":%llu,\"replayed\":%llu,\"replicated\":%llu,\"clone_replayed\":%llu,\"stalls\":%llu,"
        "\"max_logged\":%llu,"
        "\"log\":\"%s\"}\n",
        (unsigned long long)t.sent, (unsigned long long)t.unparsed, log.size(), secs,
        input_done_ns ? static_cast<double>(input_done_ns - t0) / 1e9 : secs, cpu_secs,
        static_cast<double>(lease_wait_ns) / 1e9, t.sent / secs,
        t.frame_bytes * 8 / secs / 1e6, (unsigned long long)chc::Header::make_clock(root_id, counter),
        (unsigned long long)admitted, input_from, next, (unsigned long long)start_counter,
        (unsigned long long)resumed_from, read_ns / 1e3, recovery_ns / 1e3, (unsigned long long)persist_every, (unsigned long long)persisted,
        (unsigned long long)clock_waits, (unsigned long long)t.delete_requests, (unsigned long long)t.deleted,
        (unsigned long long)t.commits, (unsigned long long)t.stray_deletes, (unsigned long long)t.stray_commits,
        (unsigned long long)t.replayed, (unsigned long long)replicated, (unsigned long long)clone_replayed,
        (unsigned long long)t.stalls,
        (unsigned long long)t.max_logged,
        log_mode.c_str());
    event_free(rx);
    event_free(sigterm);
    control.reset();
    running = false;
    commits.reset();  // pending XREADs end with a null reply (running is false: no re-issue)
    store.reset();
    if (deletes && !log.empty()) rc = 3;  // stopped with packets not yet done
  }
  return rc;
} catch (const std::exception& e) {
  std::cerr << "chc-root: " << e.what() << "\n";
  return 2;
}
