// NAT (Table 3.12): available-port list (cross-flow, read/write often), per-connection port mapping
// (per-flow, write rarely), TCP and total packet counters (cross-flow, write mostly).
// Outbound packets from the internal prefix get the external address and a port from the list;
// inbound packets to the external address are mapped back. Checksums are updated incrementally.
#include <stdexcept>

#include "chc/nf.h"

namespace chc {
namespace {

enum Obj : uint16_t { kPorts = 1, kTcpPackets = 2, kTotalPackets = 3, kMapping = 4 };

struct Prefix {
  uint32_t net = 0, mask = 0;
  static Prefix parse(const std::string& text) {
    auto slash = text.find('/');
    int len = slash == std::string::npos ? 32 : std::stoi(text.substr(slash + 1));
    if (len < 0 || len > 32) throw std::invalid_argument("bad prefix length in " + text);
    Prefix p;
    p.mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    p.net = ip_parse(text.substr(0, slash)) & p.mask;
    return p;
  }
  bool contains(uint32_t ip) const { return (ip & mask) == net; }
};

std::string get(const Config& c, const std::string& k, const std::string& fallback) {
  auto it = c.find(k);
  return it == c.end() ? fallback : it->second;
}

class Nat : public NetworkFunction {
 public:
  explicit Nat(const Config& c)
      : external_(ip_parse(get(c, "external", "198.18.40.100"))),
        internal_(Prefix::parse(get(c, "internal", "198.18.32.0/21"))) {
    std::string range = get(c, "ports", "10000-10999");
    auto dash = range.find('-');
    if (dash == std::string::npos) throw std::invalid_argument("nat ports must be LOW-HIGH, got " + range);
    first_port_ = std::stoi(range.substr(0, dash));
    last_port_ = std::stoi(range.substr(dash + 1));
    if (first_port_ < 1 || last_port_ > 65535 || first_port_ > last_port_)
      throw std::invalid_argument("bad nat port range " + range);
  }

  std::vector<std::string> scopes() const override { return {"5tuple"}; }

  void setup(State& s) override {
    s.declare({kPorts, "nat:ports", Scope::CrossFlow, Access::ReadWriteOften});
    s.declare({kTcpPackets, "nat:tcp_packets", Scope::CrossFlow, Access::WriteMostly});
    s.declare({kTotalPackets, "nat:total_packets", Scope::CrossFlow, Access::WriteMostly});
    s.declare({kMapping, "nat:map", Scope::PerFlow, Access::WriteRarely});
    std::vector<std::string> ports;
    for (int p = first_port_; p <= last_port_; ++p) ports.push_back(std::to_string(p));
    s.list_init(kPorts, ports);
  }

  void process(PacketCtx& pkt, State& s) override {
    FiveTuple& t = pkt.frame.tuple;
    s.counter_add(kTotalPackets, 1);
    if (t.proto == kProtoTcp) s.counter_add(kTcpPackets, 1);
    if (internal_.contains(t.src_ip)) {
      std::string out_key = "o:" + t.key();
      auto port = s.flow_get(kMapping, out_key);
      if (!port) {
        port = s.list_pop(kPorts);
        if (!port) {  // no port left: the connection cannot be translated
          pkt.drop = true;
          return;
        }
        s.flow_put(kMapping, out_key, *port);
        s.flow_put(kMapping, "i:" + std::to_string(t.proto) + ":" + *port,
                   ip_text(t.src_ip) + ":" + std::to_string(t.src_port));
      }
      pkt.frame.set_src(external_, static_cast<uint16_t>(std::stoi(*port)));
    } else if (t.dst_ip == external_) {
      auto back = s.flow_get(kMapping, "i:" + std::to_string(t.proto) + ":" + std::to_string(t.dst_port));
      if (!back) {  // no connection owns this port: unsolicited inbound traffic is dropped
        pkt.drop = true;
        return;
      }
      auto colon = back->rfind(':');
      pkt.frame.set_dst(ip_parse(back->substr(0, colon)), static_cast<uint16_t>(std::stoi(back->substr(colon + 1))));
    }
  }

  std::string report(State& s) override {
    return "total_packets " + std::to_string(s.counter_read(kTotalPackets)) + "\ntcp_packets " +
           std::to_string(s.counter_read(kTcpPackets)) + "\n";
  }

 private:
  uint32_t external_;
  Prefix internal_;
  int first_port_ = 0, last_port_ = 0;
};

}  // namespace

std::unique_ptr<NetworkFunction> make_nat(const Config& c) { return std::make_unique<Nat>(c); }

}  // namespace chc
