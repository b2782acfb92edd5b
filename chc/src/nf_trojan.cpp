// Trojan detector (Table 3.12, after [40]): per host, the steps of the Trojan sequence seen so far
// (cross-flow, read/write often): an SSH connection, then FTP downloads of an HTML, a ZIP and an
// EXE file, then IRC activity. Steps count only in that order; a host that completes the sequence
// raises an alert. Runs off-path on a copy, or on-path (R4).
// config order=arrival (default): the order packets reach this NF (chc_trojan_step: a step before
// its predecessor is lost). order=clock (R4, §3.4.2): the order they entered the chain, from the
// packets' logical clocks -- every event is kept with its clock and the sequence is judged on the
// clocks (chc_trojan_clock), so upstream paths of different speed cannot hide it.
#include <algorithm>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "chc/nf.h"

namespace chc {
namespace {

enum Obj : uint16_t { kSteps = 1, kEvents = 2 };
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

// chc_trojan_clock, locally: events "ev:clock ..." -> whether they form the sequence by clock.
bool trojan_by_clock(const std::string& text) {
  std::vector<std::pair<int, uint64_t>> evs;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    auto colon = tok.find(':');
    evs.emplace_back(std::stoi(tok.substr(0, colon)), std::stoull(tok.substr(colon + 1)));
  }
  std::optional<uint64_t> ssh;
  for (auto& [ev, c] : evs)
    if (ev == kSsh && (!ssh || c < *ssh)) ssh = c;
  if (!ssh) return false;
  uint64_t last = *ssh;
  for (int step = kHtml; step <= kExe; ++step) {
    std::optional<uint64_t> first;
    for (auto& [ev, c] : evs)
      if (ev == step && c > *ssh && (!first || c < *first)) first = c;
    if (!first) return false;
    last = std::max(last, *first);
  }
  return std::any_of(evs.begin(), evs.end(), [last](const auto& e) { return e.first == kIrc && e.second > last; });
}

long long advance(long long mask, int ev) {  // chc_trojan_step, locally
  if (ev == kSsh) return mask | 1;
  if (ev >= kHtml && ev <= kExe && (mask & 1)) return mask | (1LL << ev);
  if (ev == kIrc && (mask & 15) == 15) return mask | 16;
  return mask;
}

class Trojan : public NetworkFunction {
 public:
  explicit Trojan(const Config& config) {
    auto it = config.find("order");
    std::string order = it == config.end() ? "arrival" : it->second;
    if (order != "arrival" && order != "clock") throw std::invalid_argument("trojan: order must be arrival or clock");
    by_clock_ = order == "clock";
  }
  std::vector<std::string> scopes() const override { return {"srcip"}; }
  void setup(State& s) override {
    if (by_clock_) {
      s.declare({kEvents, "trojan:events", Scope::CrossFlow, Access::ReadWriteOften});
      s.hash_init(kEvents, {});
    } else {
      s.declare({kSteps, "trojan:steps", Scope::CrossFlow, Access::ReadWriteOften});
      s.hash_init(kSteps, {});
    }
  }

  void process(PacketCtx& pkt, State& s) override {
    int ev = event_of(pkt.frame);
    if (ev == kNone) return;
    std::string host = ip_text(pkt.frame.tuple.src_ip);
    if (by_clock_) {
      const std::string mine = std::to_string(ev) + ":" + std::to_string(pkt.header.clock);
      auto local = [&mine](const std::string& old) {
        std::string text = old.empty() ? mine : old + " " + mine;
        Reply r;
        r.type = Reply::Type::Integer;
        r.integer = trojan_by_clock(text) ? 1 : 0;
        return std::make_pair(text, r);
      };
      Reply r = s.field_op(kEvents, host, "chc_trojan_clock", {std::to_string(ev)}, local);
      if (r.integer == 1) alerts_.insert(host);
      return;
    }
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
  bool by_clock_ = false;
};

}  // namespace

std::unique_ptr<NetworkFunction> make_trojan(const Config& config) { return std::make_unique<Trojan>(config); }

}  // namespace chc
