// An NF instance on the CHC runtime: receives tunnel datagrams, runs the NF on each packet with its
// state behind the chosen model, and forwards the output through its splitter.
//   chc-nf --nf nat --model EO+C+NA --listen IP:PORT --next IP:PORT[,..] [--scope 5tuple]
//          [--store H:P[,..] [--cluster]] --vertex V --instance I [--config k=v,..]
//          [--control PATH] [--samples FILE] [--vertex-instances N] [--tap IP:PORT[,..] [--tap-scope S]]
//          [--root IP:PORT [--last]] [--recover] [--opennf IP:PORT]
//          [--pause-us N --pause-every-ms M [--pause-phase-ms P]]
//          [--straggle-us LOW-HIGH [--seed S]] [--clone-id N] [--dedup | --count-duplicates]
//          [--move-naive] [--movable]
// --tap: an off-path vertex (e.g. the Trojan detector at the NAT) gets a copy of every packet this
// instance receives, as it arrived (before the NF rewrites it), through its own splitter; the copy
// carries the same header (clock, XOR vector) so R2-R6 can treat it like any other packet.
//   chc-nf --nf TYPE --scopes   prints the NF's state scopes, fine -> coarse, one line, and exits
// --root: send the root a delete request (header only, kFlagDelete, the packet's clock and XOR vector)
// for every packet this instance drops and, with --last (the chain's last NF), for every packet it
// forwards -- before the output leaves (§3.4.4). --recover: this process replaces a failed instance
// (same vertex and instance id): nothing is seeded, per-flow values come from the store (R6).
// --opennf: the OpenNF-style shared-state baseline (§3.6.3 R3; model T, chc/replica.h): the
// cross-flow counters and lists are local copies kept strongly consistent through that controller.
// --pause-us/--pause-every-ms: FTMB-style checkpointing emulated as the paper did (§3.6.3 R1): the
// instance stops taking packets for N µs every M ms (first pause P ms, default M, after the first
// packet); packets queue in its socket meanwhile. The summary counts the pauses that delayed traffic
// (a packet arrived after them), not those of the idle tail before the harness stops the instance.
// R5 (§3.4.3): --straggle-us makes this instance a straggler (a random LOW-HIGH µs busy delay per
// packet); --clone-id N makes it a clone of a straggler (same vertex and instance id, started with
// --recover): it processes the root's replay (flagged REPLAYED) first and buffers replicated packets
// until the root's end-of-replay marker (REPLAYED|LAST, no frame), then processes those. --dedup: a
// packet whose clock this instance already processed is dropped (duplicate-output suppression at the
// downstream queue); --count-duplicates processes them; either way they are counted (duplicates_in,
// and duplicate_updates: the state updates issued while processing them). Both keep a set of every
// clock processed (a trace's worth; a long-lived queue would prune it with the root's deletes), so an
// instance started with neither keeps none.
// R2 (§3.4.1, Fig 3.7; chc/move.h): a "last" marker from the upstream splitter tells this (old)
// instance that the move's flows go elsewhere from now on: it sends what it has processed, flushes
// its outstanding store ops and writes the move's handover key. A "first" marker tells the new
// instance: it reads the handover key with store callbacks on (CLIENT TRACKING), buffers the moved
// flows' packets until the store notifies it of the old instance's write (the invalidation of that
// key), then processes them with the old instance's per-flow keys, read from the store on a miss.
// --move-naive (a control): the new instance does not wait for the handover.
// --movable (model T): the OpenNF-style loss-free move, the R2 baseline, driven by the controller
// over the control socket: "export MOVE" returns the moved flows' per-flow entries and from then on
// holds their packets (OpenNF's events); "import STATE" installs entries at the new instance;
// "release HOST:PORT" sends the held packets there and forwards any later ones of those flows.
// Per-packet processing time (ns, measured around the NF's process() including its store waits) is
// written to --samples, one line per packet (with --sample-times: "start_ns duration_ns", CLOCK_MONOTONIC,
// for timelines such as the recovery of Fig 3.19); a JSON summary goes to stdout on exit (SIGTERM/SIGINT
// or "stop" on the control socket).
#include <event2/event.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <random>
#include <unordered_set>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "chc/monotonic.h"
#include "chc/cli.h"
#include "chc/control.h"
#include "chc/move.h"
#include "chc/nf.h"
#include "chc/splitter.h"
#include "chc/store.h"
#include "chc/tunnel.h"

using chc::now_ns;

namespace {
struct Counters {
  uint64_t received = 0, malformed = 0, dropped = 0, forwarded = 0;
};

std::vector<chc::Endpoint> parse_endpoints(const std::string& list) {
  std::vector<chc::Endpoint> eps;
  for (const auto& e : chc::split(list, ',')) eps.push_back(chc::Endpoint::parse(e));
  return eps;
}
}  // namespace

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"nf", "model", "listen", "next", "scope", "store", "cluster", "vertex", "instance",
                              "config", "control", "samples", "retransmit-ms", "vertex-instances", "tap", "tap-scope", "scopes",
                              "root", "last", "recover", "opennf", "pause-us", "pause-every-ms",
                              "pause-phase-ms", "sample-times", "straggle-us", "seed", "clone-id",
                              "dedup", "count-duplicates", "move-naive", "movable"});
  const chc::Model model = chc::parse_model(args.get("model", "T"));
  const uint16_t vertex = static_cast<uint16_t>(args.num("vertex", 1));
  const uint16_t instance = static_cast<uint16_t>(args.num("instance", 1));
  auto nf = chc::make_nf(args.need("nf"), chc::parse_config(args.get("config", "")));
  if (args.has("scopes")) {  // what the control plane partitions on (§3.3.1)
    for (const auto& s : nf->scopes()) std::printf("%s ", s.c_str());
    std::printf("\n");
    return 0;
  }
  const uint64_t pause_ns = static_cast<uint64_t>(args.num("pause-us", 0)) * 1000ull;
  const uint64_t pause_every_ns = static_cast<uint64_t>(args.num("pause-every-ms", 0)) * 1000000ull;
  if (pause_ns && !pause_every_ns) throw std::invalid_argument("--pause-us needs --pause-every-ms");
  const uint64_t pause_phase_ns =
      static_cast<uint64_t>(args.num("pause-phase-ms", static_cast<long long>(pause_every_ns / 1000000ull))) * 1000000ull;
  uint64_t straggle_lo_ns = 0, straggle_hi_ns = 0;
  if (args.has("straggle-us")) {
    auto range = chc::split(args.need("straggle-us"), '-');
    if (range.size() != 2 || std::stoll(range[0]) < 0 || std::stoll(range[0]) > std::stoll(range[1]))
      throw std::invalid_argument("--straggle-us must be LOW-HIGH (µs, LOW <= HIGH), got " + args.need("straggle-us"));
    straggle_lo_ns = static_cast<uint64_t>(std::stoll(range[0])) * 1000ull;
    straggle_hi_ns = static_cast<uint64_t>(std::stoll(range[1])) * 1000ull;
  }
  std::mt19937_64 straggle_rng(static_cast<uint64_t>(args.num("seed", 1)));
  const uint16_t clone_id = static_cast<uint16_t>(args.num("clone-id", 0));
  if (clone_id && !args.has("recover"))
    throw std::invalid_argument("--clone-id needs --recover: a clone starts from the straggler's state in the store");
  const bool dedup = args.has("dedup");
  const bool track_clocks = dedup || args.has("count-duplicates");
  chc::Tunnel tunnel(chc::Endpoint::parse(args.need("listen")));
  chc::Splitter splitter;
  if (args.has("next")) splitter.set_rule(args.get("scope", "5tuple"), parse_endpoints(args.get("next", "")));
  chc::Splitter tap;
  if (args.has("tap")) tap.set_rule(args.get("tap-scope", "5tuple"), parse_endpoints(args.get("tap", "")));

  event_base* base = event_base_new();
  bool running = true;
  {
    std::unique_ptr<chc::StoreClient> store;
    if (model != chc::Model::Traditional) {
      chc::StoreOptions opts;
      opts.nodes = chc::parse_store_nodes(args.need("store"));
      opts.cluster = args.has("cluster");
      opts.retransmit_timeout_ms = static_cast<int>(args.num("retransmit-ms", 50));
      store = std::make_unique<chc::StoreClient>(base, opts, vertex, instance);
    }
    const int vertex_instances = static_cast<int>(args.num("vertex-instances", 1));
    if (vertex_instances > 1 && model == chc::Model::Traditional && !args.has("opennf"))
      throw std::invalid_argument("traditional NFs keep all state local: one instance per vertex (or --opennf)");
    chc::State state(model, store.get(), instance, vertex_instances, args.has("recover"));
    std::unique_ptr<chc::ReplicaClient> replica;
    if (args.has("opennf"))
      replica = std::make_unique<chc::ReplicaClient>(chc::Endpoint::parse(args.need("opennf")), instance,
                                                     [&state](const chc::ReplicaOp& op) { return state.apply_replicated(op); });
    uint64_t next_pause = 0, last_rx = 0;  // next_pause: set at the first packet
    std::vector<uint64_t> pause_times;
    const bool deletes = args.has("root"), last = args.has("last");
    sockaddr_in root_addr{};
    if (deletes) root_addr = chc::Endpoint::parse(args.need("root")).sockaddr();
    uint64_t deletes_sent = 0;
    nf->setup(state);
    if (replica) {  // after setup: every instance starts from the same copy of the shared objects
      replica->register_with_controller(10000);
      state.set_replica(replica.get());
    }
    std::unique_ptr<chc::ControlSocket> control;
    if (args.has("control")) control = std::make_unique<chc::ControlSocket>(base, args.need("control"));

    // Wake the loop when datagrams arrive or a signal asks us to stop.
    event* rx = event_new(base, tunnel.fd(), EV_READ | EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
    event_add(rx, nullptr);
    event* replica_rx = nullptr;  // the controller's forwards of other instances' updates, while idle
    if (replica) {
      replica_rx = event_new(base, replica->fd(), EV_READ | EV_PERSIST,
                             [](evutil_socket_t, short, void* r) { static_cast<chc::ReplicaClient*>(r)->poll(); },
                             replica.get());
      event_add(replica_rx, nullptr);
    }
    auto stop_cb = [](evutil_socket_t, short, void* flag) { *static_cast<bool*>(flag) = false; };
    event* sigterm = evsignal_new(base, SIGTERM, stop_cb, &running);
    event* sigint = evsignal_new(base, SIGINT, stop_cb, &running);
    event_add(sigterm, nullptr);
    event_add(sigint, nullptr);

    Counters c;
    uint64_t tapped = 0;
    std::vector<uint32_t> samples;
    std::vector<uint64_t> sample_starts;  // --sample-times
    const bool sample_times = args.has("sample-times");
    std::vector<chc::Datagram> in(chc::kBatch), out(chc::kBatch), taps(tap.empty() ? 0 : chc::kBatch), dels(chc::kBatch);
    bool replaying = clone_id != 0;           // a clone: the root's replay comes first (R5)
    std::deque<chc::Datagram> buffered;       // replicated packets that arrived during the replay
    std::unordered_set<uint64_t> seen;        // clocks processed here (duplicate detection)
    // R2 moves: released here (this is the old instance) and coming in (the new one).
    struct Incoming {
      chc::Move move;
      std::string key;
      bool notified = false, done = false;
      std::deque<chc::Datagram> held;
      uint64_t first_ns = 0, handover_ns = 0;
    };
    std::vector<Incoming> incoming;
    const bool move_naive = args.has("move-naive");
    uint64_t moves_out = 0, moved_buffered = 0, moved_packets = 0, move_marker_ns = 0, move_release_ns = 0,
             late_moved = 0;
    std::vector<chc::Move> released;
    std::unordered_set<uint64_t> moved_flows;  // scope hashes of the moved flows processed here
    // The OpenNF-style baseline (--movable): flows exported from here, their held packets (events).
    const bool movable = args.has("movable");
    if (movable) state.track_flows();
    std::vector<chc::Move> exported;
    std::deque<chc::Datagram> events;
    std::optional<sockaddr_in> events_to;  // after "release": where the exported flows' packets go
    uint64_t events_held = 0, events_forwarded = 0;
    if (store)
      store->on_invalidate = [&incoming](const std::string& key) {
        for (auto& m : incoming)
          if (!m.done && m.key == key) m.notified = true;
      };
    uint64_t duplicates_in = 0, duplicate_updates = 0, markers = 0, buffered_total = 0;
    auto handle = [&](const std::string& line) -> std::string {
      std::istringstream cmd(line);
      std::string op;
      cmd >> op;
      if (op == "stats") {
        std::ostringstream s;
        s << "ok received=" << c.received << " forwarded=" << c.forwarded << " dropped=" << c.dropped
          << " malformed=" << c.malformed << " tapped=" << tapped << " unacked=" << (store ? store->unacked() : 0)
          << " deletes=" << deletes_sent << " duplicates_in=" << duplicates_in
          << " duplicate_updates=" << duplicate_updates << " replaying=" << (replaying ? 1 : 0)
          << " buffered=" << buffered_total << " moves_out=" << moves_out << " moves_in=" << incoming.size()
          << " moves_done=" << std::count_if(incoming.begin(), incoming.end(), [](const Incoming& m) { return m.done; })
          << " moved_buffered=" << moved_buffered << " moved_packets=" << moved_packets
          << " events_held=" << events_held << " events_forwarded=" << events_forwarded << " split=";
        for (auto n : splitter.counts()) s << n << ";";
        s << " tapsplit=";
        for (auto n : tap.counts()) s << n << ";";
        return s.str();
      }
      if (op == "split") {
        std::string scope, eps;
        cmd >> scope;
        std::vector<chc::Endpoint> down;
        for (std::string e; cmd >> e;) down.push_back(chc::Endpoint::parse(e));
        splitter.set_rule(scope, down);
        return "ok";
      }
      if (op == "tap" && !tap.empty()) {  // tap SCOPE HOST:PORT...: re-partition the off-path copies
        std::string scope;
        cmd >> scope;
        std::vector<chc::Endpoint> down;
        for (std::string e; cmd >> e;) down.push_back(chc::Endpoint::parse(e));
        tap.set_rule(scope, down);
        return "ok";
      }
      if (op == "cache") {  // cache OBJ_ID on|off: exclusive caching of a cross-flow object
        int obj;
        std::string mode;
        cmd >> obj >> mode;
        state.set_exclusive(static_cast<uint16_t>(obj), mode == "on");
        return "ok";
      }
      if (op == "export" || op == "import" || op == "release") {
        if (!movable) return "err " + op + " needs --movable";
        const uint64_t t = now_ns();
        std::string rest;
        std::getline(cmd >> std::ws, rest);
        try {
          if (op == "export") {  // export move ID SCOPE BASE_N FROM TO FROM_INSTANCE HI
            chc::Move mv = chc::Move::parse(rest);
            auto entries = state.export_flows([&mv](uint64_t h) { return mv.covers_hash(h); });
            exported.push_back(mv);
            std::string reply = "ok t_ns=" + std::to_string(t) + " entries=" + std::to_string(entries.size()) + " state=";
            for (const auto& e : entries)
              reply += chc::hex(e.key) + "/" + chc::hex(e.value) + "/" + std::to_string(e.hash) + ",";
            return reply;
          }
          if (op == "import") {
            std::vector<chc::State::FlowEntry> entries;
            for (const auto& item : chc::split(rest, ',')) {
              if (item.empty()) continue;
              auto f = chc::split(item, '/');
              if (f.size() != 3) return "err bad state entry " + item;
              entries.push_back({chc::unhex(f[0]), chc::unhex(f[1]), std::stoull(f[2])});
            }
            state.import_flows(entries);
            return "ok t_ns=" + std::to_string(now_ns()) + " entries=" + std::to_string(entries.size());
          }
          events_to = chc::Endpoint::parse(rest).sockaddr();  // release
          std::vector<chc::Datagram> batch(chc::kBatch);
          const std::size_t held = events.size();
          while (!events.empty()) {
            std::size_t k = 0;
            for (; k < batch.size() && !events.empty(); ++k, events.pop_front()) {
              batch[k] = events.front();
              batch[k].peer = *events_to;
            }
            events_forwarded += tunnel.send_batch(batch, k);
          }
          return "ok t_ns=" + std::to_string(now_ns()) + " released=" + std::to_string(held);
        } catch (const std::exception& e) {
          return std::string("err ") + e.what();
        }
      }
      if (op == "report") {
        std::string r = nf->report(state);
        for (auto& ch : r)
          if (ch == '\n') ch = ';';
        return "ok " + r;
      }
      if (op == "stop") {
        running = false;
        return "ok";
      }
      return "err unknown command: " + line;
    };

    while (running) {
      if (pause_ns && next_pause && now_ns() >= next_pause) {  // the emulated checkpoint
        timespec pause{static_cast<time_t>(pause_ns / 1000000000ull), static_cast<long>(pause_ns % 1000000000ull)};
        pause_times.push_back(now_ns());
        nanosleep(&pause, nullptr);
        next_pause += pause_every_ns;
      }
      std::size_t n = tunnel.recv_batch(in);
      if (pause_ns && n) {
        last_rx = now_ns();
        if (!next_pause) next_pause = last_rx + pause_phase_ns;
      }
      std::size_t nout = 0, ntap = 0, ndel = 0;
      auto send_pending = [&] {
        if (ndel) deletes_sent += tunnel.send_batch(dels, ndel);  // before the output (§3.4.4)
        if (nout) c.forwarded += tunnel.send_batch(out, nout);
        if (ntap) tapped += tunnel.send_batch(taps, ntap);
        nout = ntap = ndel = 0;
      };
      auto moved_in = [&](const chc::FiveTuple& t) -> Incoming* {
        for (auto& m : incoming)
          if (m.move.covers(t)) return &m;
        return nullptr;
      };
      auto process_datagram = [&](chc::Datagram& dg, const chc::Header& hdr, const chc::Frame& parsed) {
        if (nout == out.size() || ndel == dels.size() || (!tap.empty() && ntap == taps.size())) send_pending();
        chc::Frame fr = parsed;
        chc::Header h = hdr;
        chc::PacketCtx pkt{h, fr};
        const bool duplicate = track_clocks && !seen.insert(h.clock).second;
        if (duplicate) {
          ++duplicates_in;
          if (dedup) return;  // suppressed at this downstream queue
        }
        if (!tap.empty()) {  // the off-path copy, as received
          chc::Datagram& d = taps[ntap++];
          chc::Header th = h;
          th.origin_instance = instance;
          d.set(th, dg.frame(), fr.len);
          d.peer = tap.address(tap.pick(fr.tuple));
        }
        const uint64_t updates_before = state.updates();
        uint64_t t0 = now_ns();
        uint16_t owner = 0;
        if (movable) state.set_flow_hash(chc::scope_hash("5tuple", fr.tuple));
        if (!incoming.empty())
          if (Incoming* m = moved_in(fr.tuple)) {
            owner = m->move.from_instance;
            ++moved_packets;
            moved_flows.insert(chc::scope_hash(m->move.scope, fr.tuple));
          }
        state.begin_packet(&pkt.header, owner);
        nf->process(pkt, state);
        state.end_packet();
        if (straggle_hi_ns) {  // the straggler's extra work, inside its per-packet time
          const uint64_t delay = std::uniform_int_distribution<uint64_t>(straggle_lo_ns, straggle_hi_ns)(straggle_rng);
          while (now_ns() - t0 < delay) {
          }
        }
        samples.push_back(static_cast<uint32_t>(std::min<uint64_t>(now_ns() - t0, UINT32_MAX)));
        if (sample_times) sample_starts.push_back(t0);
        if (duplicate) duplicate_updates += state.updates() - updates_before;
        if (deletes && (pkt.drop || splitter.empty() || last)) {  // this packet is done: ask the root to delete it
          chc::Header del = pkt.header;
          del.flags = static_cast<uint8_t>(del.flags | chc::kFlagDelete);
          del.origin_instance = instance;
          dels[ndel].set(del, dg.frame(), 0);
          dels[ndel++].peer = root_addr;
        }
        if (pkt.drop || splitter.empty()) {
          ++c.dropped;
          return;
        }
        pkt.header.origin_instance = instance;
        pkt.header.clone_id = 0;  // the clone processed it: downstream sees an ordinary packet (§3.4.3)
        chc::Datagram& d = out[nout++];
        d.set(pkt.header, dg.frame(), fr.len);
        d.peer = splitter.address(splitter.pick(fr.tuple));
      };
      for (auto& m : incoming) {  // the store notified the handover: the held packets go first, in order
        if (m.done || !m.notified) continue;
        m.done = true;
        m.handover_ns = now_ns();
        store->command(m.key, {"SET", m.key, "owner " + std::to_string(instance)}, nullptr);  // associates its id
        for (; !m.held.empty(); m.held.pop_front()) {
          chc::Datagram& b = m.held.front();
          auto bh = chc::decode(b.bytes, b.len);
          auto bf = chc::Frame::parse(b.frame(), bh->frame_len);
          process_datagram(b, *bh, *bf);
        }
      }
      for (std::size_t i = 0; i < n; ++i) {
        ++c.received;
        auto hdr = chc::decode(in[i].bytes, in[i].len);
        if (hdr && hdr->frame_len == 0 && (hdr->flags & chc::kFlagReplayed) && (hdr->flags & chc::kFlagLast)) {
          ++markers;  // the root's end of replay: the buffered replicated packets are next
          if (replaying) {
            replaying = false;
            while (!buffered.empty()) {
              chc::Datagram& b = buffered.front();
              auto bh = chc::decode(b.bytes, b.len);
              auto bf = chc::Frame::parse(b.frame(), bh->frame_len);
              if (bf) process_datagram(b, *bh, *bf);
              buffered.pop_front();
            }
          }
          continue;
        }
        if (hdr && hdr->frame_len && (hdr->flags & (chc::kFlagLast | chc::kFlagFirst)) &&
            !(hdr->flags & chc::kFlagReplayed)) {
          auto mv = chc::marker_move(in[i].frame(), hdr->frame_len);
          if (mv) {
            if (!store) throw std::runtime_error("a move needs externalized state (not model T)");
            if (hdr->flags & chc::kFlagLast) {  // the old instance: release the moved flows' state
              move_marker_ns = now_ns();
              send_pending();  // what it processed leaves before the new instance can start
              state.drain();   // the flush: every outstanding op of the moved flows is in the store
              const std::string key = mv->handover_key(vertex);
              chc::Reply r = store->command_sync(key, {"SET", key, "released " + std::to_string(instance)});
              if (r.is_error()) throw std::runtime_error("handover of move " + std::to_string(mv->id) + ": " + r.str);
              move_release_ns = now_ns();
              released.push_back(*mv);
              ++moves_out;
            } else {  // the new instance: wait for the handover, with a store callback
              Incoming m;
              m.move = *mv;
              m.key = mv->handover_key(vertex);
              m.first_ns = now_ns();
              store->enable_tracking();
              chc::Reply r = store->command_sync(m.key, {"GET", m.key});  // tracked: the write notifies us
              m.notified = move_naive || (!r.is_nil() && r.str.rfind("released", 0) == 0);
              incoming.push_back(std::move(m));
            }
            continue;
          }
        }
        auto frame = hdr ? chc::Frame::parse(in[i].frame(), hdr->frame_len) : std::nullopt;
        if (!frame) {
          ++c.malformed;
          continue;
        }
        if (replaying && !(hdr->flags & chc::kFlagReplayed)) {  // replicated, ahead of the replay's end
          buffered.push_back(in[i]);
          ++buffered_total;
          continue;
        }
        if (!exported.empty() && std::any_of(exported.begin(), exported.end(),
                                             [&](const chc::Move& m) { return m.covers(frame->tuple); })) {
          if (events_to) {  // moved already: on to the new instance
            if (nout == out.size()) send_pending();
            out[nout] = in[i];
            out[nout++].peer = *events_to;
            ++events_forwarded;
          } else {  // OpenNF's event: held until the controller releases it
            events.push_back(in[i]);
            ++events_held;
          }
          continue;
        }
        if (!released.empty() && std::any_of(released.begin(), released.end(),
                                             [&](const chc::Move& m) { return m.covers(frame->tuple); }))
          ++late_moved;  // a moved flow's packet behind the "last" marker: must not happen
        if (Incoming* m = moved_in(frame->tuple); m && !m->done) {
          m->held.push_back(in[i]);
          ++moved_buffered;
          continue;
        }
        process_datagram(in[i], *hdr, *frame);
      }
      send_pending();
      if (control && control->has_pending()) control->run_pending(handle);
      // Deliver store replies/ACKs and control input; block only when no datagram is waiting.
      // (NONBLOCK alone would keep looping while the tunnel fd stays readable: ONCE ends it.)
      event_base_loop(base, n ? EVLOOP_NONBLOCK | EVLOOP_ONCE : EVLOOP_ONCE);
    }
    state.drain();
    const auto pauses = std::count_if(pause_times.begin(), pause_times.end(), [&](uint64_t t) { return t < last_rx; });
    if (args.has("samples")) {
      std::ofstream f(args.need("samples"));
      for (std::size_t k = 0; k < samples.size(); ++k) {
        if (sample_times) f << sample_starts[k] << " ";
        f << samples[k] << "\n";
      }
    }
    std::string rep = nf->report(state);
    for (auto& ch : rep)
      if (ch == '\n') ch = ';';
    std::printf(
        "{\"model\":\"%s\",\"received\":%llu,\"forwarded\":%llu,\"dropped\":%llu,\"malformed\":%llu,"
        "\"tapped\":%llu,\"store_ops\":%llu,\"retransmissions\":%llu,\"pauses\":%llu,\"replica_events\":%llu,"
        "\"replica_applied\":%llu,\"replica_wait_us\":%.1f,\"duplicates_in\":%llu,\"duplicate_updates\":%llu,"
        "\"replay_markers\":%llu,\"buffered\":%llu,\"moves_out\":%llu,\"moves_in\":%zu,\"moved_buffered\":%llu,"
        "\"moved_packets\":%llu,\"moved_flows\":%zu,\"late_moved\":%llu,\"move_marker_ns\":%llu,"
        "\"move_release_ns\":%llu,\"move_first_ns\":%llu,\"move_handover_ns\":%llu,\"events_held\":%llu,"
        "\"events_forwarded\":%llu,\"report\":\"%s\"}\n",
        chc::model_name(model).c_str(), (unsigned long long)c.received, (unsigned long long)c.forwarded,
        (unsigned long long)c.dropped, (unsigned long long)c.malformed, (unsigned long long)tapped,
        (unsigned long long)(store ? store->stats().ops_sent : 0),
        (unsigned long long)(store ? store->stats().retransmissions : 0), (unsigned long long)pauses,
        (unsigned long long)(replica ? replica->stats().executed : 0),
        (unsigned long long)(replica ? replica->stats().applied : 0),
        replica ? static_cast<double>(replica->stats().wait_ns) / 1e3 : 0.0, (unsigned long long)duplicates_in,
        (unsigned long long)duplicate_updates, (unsigned long long)markers, (unsigned long long)buffered_total,
        (unsigned long long)moves_out, incoming.size(), (unsigned long long)moved_buffered,
        (unsigned long long)moved_packets, moved_flows.size(), (unsigned long long)late_moved,
        (unsigned long long)move_marker_ns, (unsigned long long)move_release_ns,
        (unsigned long long)(incoming.empty() ? 0 : incoming.back().first_ns),
        (unsigned long long)(incoming.empty() ? 0 : incoming.back().handover_ns), (unsigned long long)events_held,
        (unsigned long long)events_forwarded, rep.c_str());
    event_free(rx);
    if (replica_rx) event_free(replica_rx);
    event_free(sigterm);
    event_free(sigint);
    control.reset();
    state.drain();
  }
  event_base_free(base);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "chc-nf: " << e.what() << "\n";
  return 2;
}
