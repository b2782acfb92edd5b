// Store throughput through the CHC client: offloaded increment (FCALL chc_incr), get, set
// (FCALL chc_set) with `depth` ops in flight (pipelining), keys spread over `keys` objects.
// Prints one JSON line: {"op":..,"ops":..,"seconds":..,"ops_per_s":..}.
#include <event2/event.h>
#include <time.h>

#include <cstdio>
#include <iostream>

#include "chc/cli.h"
#include "chc/store.h"

static double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"store", "cluster", "op", "ops", "depth", "keys", "instance"});
  std::string op = args.get("op", "incr");
  if (op != "incr" && op != "get" && op != "set") throw std::invalid_argument("--op must be incr, get or set");
  long long total = args.num("ops", 100000), depth = args.num("depth", 16), keys = args.num("keys", 1000);
  if (total <= 0 || depth <= 0 || keys <= 0) throw std::invalid_argument("--ops, --depth, --keys must be > 0");
  event_base* base = event_base_new();
  chc::StoreOptions opts;
  opts.nodes = chc::parse_store_nodes(args.need("store"));
  opts.cluster = args.has("cluster");
  double seconds;
  long long errors = 0;
  {
    chc::StoreClient client(base, opts, 1, static_cast<uint16_t>(args.num("instance", 1)));
    std::vector<std::string> key_names;
    for (long long k = 0; k < keys; ++k) key_names.push_back(client.shared_key("bench" + std::to_string(k)));
    long long issued = 0, done = 0;
    std::function<void()> issue;
    chc::ReplyFn on_reply = [&](const chc::Reply& r) {
      ++done;
      if (r.is_error()) ++errors;
      if (issued < total) issue();
    };
    issue = [&]() {
      const std::string& key = key_names[issued % keys];
      uint64_t clock = static_cast<uint64_t>(++issued);
      if (op == "incr") client.call("chc_incr", key, clock, {"1"}, on_reply);
      else if (op == "set") client.call("chc_set", key, clock, {"v"}, on_reply);
      else client.command(key, {"GET", key}, on_reply);
    };
    double t0 = now_s();
    for (long long i = 0; i < depth && issued < total; ++i) issue();
    while (done < total) event_base_loop(base, EVLOOP_ONCE);
    seconds = now_s() - t0;
  }
  event_base_free(base);
  std::printf("{\"op\":\"%s\",\"ops\":%lld,\"depth\":%lld,\"errors\":%lld,\"seconds\":%.6f,\"ops_per_s\":%.1f}\n",
              op.c_str(), total, depth, errors, seconds, total / seconds);
  return errors ? 1 : 0;
} catch (const std::exception& e) {
  std::cerr << "chc-store-bench: " << e.what() << "\n";
  return 2;
}
