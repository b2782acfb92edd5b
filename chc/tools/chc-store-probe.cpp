// Drives the CHC client library from a line script on stdin (one result line per command), so tests
// can check its behaviour against real redis-servers. Commands:
//   key shared|flow OBJ            call FN KEY CLOCK ARGS...    noack FN KEY CLOCK ARGS...
//   cmd KEY ARGS...                drain                        node KEY
//   track                          tget KEY                     wait-inval N TIMEOUT_MS    stats
#include <event2/event.h>

#include <chrono>
#include <iostream>
#include <sstream>

#include "chc/cli.h"
#include "chc/store.h"

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"store", "cluster", "vertex", "instance", "retransmit-ms"});
  event_base* base = event_base_new();
  chc::StoreOptions opts;
  opts.nodes = chc::parse_store_nodes(args.need("store"));
  opts.cluster = args.has("cluster");
  opts.retransmit_timeout_ms = static_cast<int>(args.num("retransmit-ms", 50));
  {
    chc::StoreClient client(base, opts, static_cast<uint16_t>(args.num("vertex", 1)),
                            static_cast<uint16_t>(args.num("instance", 1)));
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string op;
      in >> op;
      std::vector<std::string> rest;
      for (std::string t; in >> t;) rest.push_back(t);
      if (op.empty()) continue;
      if (op == "key" && rest.size() == 2) {
        std::cout << (rest[0] == "flow" ? client.flow_key(rest[1]) : client.shared_key(rest[1])) << "\n";
      } else if ((op == "call" || op == "noack") && rest.size() >= 3) {
        std::vector<std::string> fargs(rest.begin() + 3, rest.end());
        uint64_t clock = std::stoull(rest[2]);
        if (op == "call") {
          std::cout << chc::format_reply(client.call_sync(rest[0], rest[1], clock, fargs)) << "\n";
        } else {
          client.call_noack(rest[0], rest[1], clock, fargs);
          std::cout << "queued\n";
        }
      } else if (op == "cmd" && !rest.empty()) {
        std::vector<std::string> cargs(rest.begin() + 1, rest.end());
        std::cout << chc::format_reply(client.command_sync(rest[0], cargs)) << "\n";
      } else if (op == "drain") {
        client.drain();
        std::cout << "drained unacked=" << client.unacked() << "\n";
      } else if (op == "node" && rest.size() == 1) {
        std::cout << client.node_of(rest[0]) << "\n";
      } else if (op == "track") {
        client.enable_tracking();
        std::cout << "tracking\n";
      } else if (op == "tget" && rest.size() == 1) {
        bool cached = client.tracked_cached(rest[0]);
        std::cout << "s:" << client.tracked_get(rest[0]) << (cached ? " cached" : " fetched") << "\n";
      } else if (op == "wait-inval" && rest.size() == 2) {
        uint64_t want = std::stoull(rest[0]);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoll(rest[1]));
        timeval tick{0, 10000};
        while (client.stats().invalidations < want && std::chrono::steady_clock::now() < deadline) {
          event_base_loopexit(base, &tick);
          event_base_loop(base, EVLOOP_ONCE);
        }
        client.drain();  // the refresh GETs
        std::cout << "invalidations=" << client.stats().invalidations << "\n";
      } else if (op == "stats") {
        const auto& s = client.stats();
        std::cout << "sent=" << s.ops_sent << " acks=" << s.acks << " retransmissions=" << s.retransmissions
                  << " errors=" << s.errors << " invalidations=" << s.invalidations << "\n";
      } else {
        std::cout << "e:bad command: " << line << "\n";
      }
      std::cout.flush();
    }
    client.drain();
  }
  event_base_free(base);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "chc-store-probe: " << e.what() << "\n";
  return 2;
}
