// Trojan detector (Table 3.12, after [40]): per host, the steps of the Trojan sequence seen so far
// (cross-flow, read/write often): an SSH connection, then FTP downloads of an HTML, a ZIP and an
// EXE file, then IRC activity. Steps count only in that order (the Functions library's
// chc_trojan_step); a host that completes the sequence raises an alert. Runs off-path on a copy.
#include <set>

#include "chc/nf.h"

namespace chc {
namespace {

enum Obj : uint16_t { kSteps = 1 };
enum Event { kSsh = 0, kHtml = 1, kZip = 2, kExe = 3, kIrc = 4, kNone = -1 };

int event_of(const Frame& f) {
  const FiveTuple& t = f.tuple;
  if (t.proto != kProtoTcp) return kNone;
  bool syn = (f.tcp_flags & kTcpSyn) && !(f.tcp_flags & kTcpAck);
  if (syn && t.dst_port == 22) return kSsh;
  if (syn && t.dst_port == 6667) return kIrc;
  if (t.dst_port == 21 && f.payload_len() > 5) {
    std::string cmd(reinterpret_cast<const char*>(f.data + f.payload), f.payload_len());
    if (cmd.rfind("RETR ", 0) != 0) return kNone;
    auto dot = cmd.find_last_of('.');
    std::string ext = dot == std::string::npos ? "" : cmd.substr(dot + 1, 3);
    for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (ext == "htm") return kHtml;
    if (ext == "zip") return kZip;
    if (ext == "exe") return kExe;
  }
  return kNone;
}

long long advance(long long mask, int ev) {  // chc_trojan_step, locally
  if (ev == kSsh) return mask | 1;
  if (ev >= kHtml && ev <= kExe && (mask & 1)) return mask | (1LL << ev);
  if (ev == kIrc && (mask & 15) == 15) return mask | 16;
  return mask;
}

class Trojan : public NetworkFunction {
 public:
  std::vector<std::string> scopes() const override { return {"srcip"}; }
  void setup(State& s) override {
    s.declare({kSteps, "trojan:steps", Scope::CrossFlow, Access::ReadWriteOften});
    s.hash_init(kSteps, {});
  }

  void process(PacketCtx& pkt, State& s) override {
    int ev = event_of(pkt.frame);
    if (ev == kNone) return;
    std::string host = ip_text(pkt.frame.tuple.src_ip);
    auto local = [ev](const std::string& old) {
      long long before = old.empty() ? 0 : std::stoll(old);
      long long after = advance(before, ev);
      Reply r;
      r.type = Reply::Type::Integer;
      r.integer = after;
      return std::make_pair(after == before ? std::string() : std::to_string(after), r);
    };
    Reply r = s.field_op(kSteps, host, "chc_trojan_step", {std::to_string(ev)}, local);
    if (r.integer & 16) alerts_.insert(host);
  }

  std::string report(State&) override {
    std::string a;
    for (const auto& h : alerts_) a += (a.empty() ? "" : ",") + h;
    return "alerts " + (a.empty() ? "-" : a) + "\n";
  }

 private:
  std::set<std::string> alerts_;
};

}  // namespace

std::unique_ptr<NetworkFunction> make_trojan(const Config&) { return std::make_unique<Trojan>(); }

}  // namespace chc
