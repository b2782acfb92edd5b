// Portscan detector (Table 3.12, TRW of Jung et al. [102]): per host, the likelihood of being a
// scanner (cross-flow, read/write often) and the pending connection initiations with their clock
// (per-flow, read/write often). A SYN opens a pending initiation; a SYN-ACK back is a success, a
// RST back a failure; each outcome moves the host's log likelihood ratio by log(theta1/theta0) or
// log((1-theta1)/(1-theta0)). At log(P_D/P_F) the host is a scanner and its packets are dropped;
// at log((1-P_D)/(1-P_F)) it is benign.
#include <cmath>
#include <set>

#include "chc/nf.h"

namespace chc {
namespace {

enum Obj : uint16_t { kLikelihood = 1, kPending = 2 };

double num(const Config& c, const std::string& k, double fallback) {
  auto it = c.find(k);
  return it == c.end() ? fallback : std::stod(it->second);
}

std::string text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

class Portscan : public NetworkFunction {
 public:
  explicit Portscan(const Config& c) {
    double t0 = num(c, "theta0", 0.8), t1 = num(c, "theta1", 0.2), pf = num(c, "pf", 0.01), pd = num(c, "pd", 0.99);
    success_ = std::log(t1 / t0);
    failure_ = std::log((1 - t1) / (1 - t0));
    upper_ = std::log(pd / pf);
    lower_ = std::log((1 - pd) / (1 - pf));
  }

  std::vector<std::string> scopes() const override { return {"5tuple", "srcip"}; }

  void setup(State& s) override {
    s.declare({kLikelihood, "scan:llr", Scope::CrossFlow, Access::ReadWriteOften});
    s.declare({kPending, "scan:pending", Scope::PerFlow, Access::ReadWriteOften});
    s.hash_init(kLikelihood, {});
  }

  void process(PacketCtx& pkt, State& s) override {
    const FiveTuple& t = pkt.frame.tuple;
    if (blocked_.count(t.src_ip)) {
      pkt.drop = true;
      return;
    }
    if (t.proto != kProtoTcp) return;
    uint8_t f = pkt.frame.tcp_flags;
    if ((f & kTcpSyn) && !(f & kTcpAck)) {  // a connection initiation by t.src_ip
      s.flow_put(kPending, t.key(), std::to_string(pkt.header.clock));
      return;
    }
    bool synack = (f & kTcpSyn) && (f & kTcpAck), rst = f & kTcpRst;
    if (!synack && !rst) return;
    FiveTuple init{t.dst_ip, t.src_ip, t.dst_port, t.src_port, t.proto};  // the initiator's direction
    if (!s.flow_get(kPending, init.key())) return;
    s.flow_del(kPending, init.key());
    step(s, init.src_ip, synack ? success_ : failure_);
  }

  std::string report(State& s) override {
    std::string scanners, benign;
    for (const auto& [host, llr] : s.hash_read(kLikelihood)) {
      double v = std::stod(llr);
      if (v >= upper_) scanners += (scanners.empty() ? "" : ",") + host;
      else if (v <= lower_) benign += (benign.empty() ? "" : ",") + host;
    }
    return "scanners " + (scanners.empty() ? "-" : scanners) + "\nbenign " + (benign.empty() ? "-" : benign) +
           "\nblocked " + std::to_string(blocked_.size()) + "\n";
  }

 private:
  void step(State& s, uint32_t host, double delta) {
    std::string h = ip_text(host);
    // The same TRW step as chc_trw_step in the Functions library: decided hosts keep their ratio.
    auto local = [&](const std::string& old) {
      double cur = old.empty() ? 0.0 : std::stod(old);
      Reply r;
      r.type = Reply::Type::Array;
      Reply v, d;
      v.type = Reply::Type::String;
      d.type = Reply::Type::Integer;
      if (cur >= upper_ || cur <= lower_) {
        v.str = text(cur);
        d.integer = cur >= upper_ ? 1 : -1;
        r.elements = {v, d};
        return std::make_pair(std::string(), r);
      }
      double nv = cur + delta;
      v.str = text(nv);
      d.integer = nv >= upper_ ? 1 : (nv <= lower_ ? -1 : 0);
      r.elements = {v, d};
      return std::make_pair(v.str, r);
    };
    Reply r = s.field_op(kLikelihood, h, "chc_trw_step", {text(delta), text(upper_), text(lower_)}, local);
    if (r.elements.size() == 2 && r.elements[1].integer == 1) blocked_.insert(host);
  }

  double success_, failure_, upper_, lower_;
  std::set<uint32_t> blocked_;  // the detector's decisions (its output), not shared state
};

}  // namespace

std::unique_ptr<NetworkFunction> make_portscan(const Config& c) { return std::make_unique<Portscan>(c); }

}  // namespace chc
