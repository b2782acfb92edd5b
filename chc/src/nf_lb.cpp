// Load balancer (Table 3.12): per-server active connections (cross-flow, read/write often), per-
// server byte counters (cross-flow, write mostly), connection-to-server map (per-flow, write rarely).
// A new connection to a service port goes to the least-loaded server (the store's chc_lb_pick);
// its packets get that server as destination (incremental checksums); a client FIN ends it.
#include <set>

#include "chc/cli.h"
#include "chc/nf.h"

namespace chc {
namespace {

enum Obj : uint16_t { kActive = 1, kBytes = 2, kConnMap = 3 };

class LoadBalancer : public NetworkFunction {
 public:
  explicit LoadBalancer(const Config& c) {
    auto it = c.find("servers");
    for (const auto& s : split(it == c.end() ? "198.18.44.1|198.18.44.2|198.18.44.3" : it->second, '|')) {
      ip_parse(s);  // validates
      servers_.push_back(s);
    }
    auto pt = c.find("ports");
    for (const auto& p : split(pt == c.end() ? "80|443|8080" : pt->second, '|')) ports_.insert(std::stoi(p));
    if (servers_.empty()) throw std::invalid_argument("lb needs servers=IP|IP...");
  }

  std::vector<std::string> scopes() const override { return {"5tuple"}; }

  void setup(State& s) override {
    s.declare({kActive, "lb:active", Scope::CrossFlow, Access::ReadWriteOften});
    s.declare({kBytes, "lb:bytes", Scope::CrossFlow, Access::WriteMostly});
    s.declare({kConnMap, "lb:conn", Scope::PerFlow, Access::WriteRarely});
    std::map<std::string, std::string> zero;
    for (const auto& srv : servers_) zero[srv] = "0";
    s.hash_init(kActive, zero);
  }

  void process(PacketCtx& pkt, State& s) override {
    FiveTuple& t = pkt.frame.tuple;
    if (!ports_.count(t.dst_port)) return;  // not to a balanced service: forwarded as is
    std::string conn = t.key();
    auto server = s.flow_get(kConnMap, conn);
    if (!server) {
      Reply pick = s.map_op(kActive, "chc_lb_pick", {}, [](std::map<std::string, std::string>& f) {
        auto best = f.begin();  // least loaded, ties to the lowest name (as chc_lb_pick)
        for (auto it = f.begin(); it != f.end(); ++it)
          if (std::stoll(it->second) < std::stoll(best->second)) best = it;
        best->second = std::to_string(std::stoll(best->second) + 1);
        Reply r;
        r.type = Reply::Type::Array;
        Reply name, n;
        name.type = Reply::Type::String;
        name.str = best->first;
        n.type = Reply::Type::Integer;
        n.integer = std::stoll(best->second);
        r.elements = {name, n};
        return r;
      });
      server = pick.elements.at(0).str;
      s.flow_put(kConnMap, conn, *server);
    }
    s.counter_add(kBytes, static_cast<long long>(pkt.frame.len), *server);
    if (pkt.frame.tcp_flags & (kTcpFin | kTcpRst)) {  // the connection ends: one fewer on its server
      s.field_op(kActive, *server, "chc_hincr", {"-1"}, [](const std::string& old) {
        Reply r;
        r.type = Reply::Type::Integer;
        r.integer = std::stoll(old.empty() ? "0" : old) - 1;
        return std::make_pair(std::to_string(r.integer), r);
      });
      s.flow_del(kConnMap, conn);
    }
    pkt.frame.set_dst(ip_parse(*server), t.dst_port);
  }

  std::string report(State& s) override {
    std::string out;
    auto active = s.hash_read(kActive);
    for (const auto& srv : servers_)
      out += "server:" + srv + " " + active[srv] + "/" + std::to_string(s.counter_read(kBytes, srv)) + "\n";
    return out;
  }

 private:
  std::vector<std::string> servers_;
  std::set<int> ports_;
};

}  // namespace

std::unique_ptr<NetworkFunction> make_lb(const Config& c) { return std::make_unique<LoadBalancer>(c); }

}  // namespace chc
