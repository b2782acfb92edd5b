#include "chc/splitter.h"

#include <stdexcept>

namespace chc {

namespace {
uint64_t mix(uint64_t x) {  // splitmix64 finaliser: spreads nearby addresses over instances
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t scope_hash(const std::string& scope, const FiveTuple& t) {
  if (scope == "srcip") return mix(t.src_ip);
  if (scope == "dstip") return mix(t.dst_ip);
  if (scope == "5tuple") {
    uint64_t a = (uint64_t{t.src_ip} << 16) | t.src_port, b = (uint64_t{t.dst_ip} << 16) | t.dst_port;
    if (a > b) std::swap(a, b);
    return mix(mix(a) ^ (b * 31) ^ t.proto);
  }
  if (scope == "service") {
    // R4's scrubbers (§3.6.3): each instance gets one service, both directions -- SSH -> 0, FTP -> 1,
    // IRC -> 2 (mod the instance count); other traffic by its 5-tuple.
    for (uint16_t port : {t.dst_port, t.src_port}) {
      if (t.proto != kProtoTcp) break;
      if (port == 22) return 0;
      if (port == 21 || port == 20) return 1;
      if (port == 6667) return 2;
    }
    return scope_hash("5tuple", t);
  }
  throw std::invalid_argument("unknown scope " + scope + " (5tuple, srcip, dstip, service)");
}

void Splitter::set_rule(const std::string& scope, const std::vector<Endpoint>& downstream) {
  scope_hash(scope, FiveTuple{});  // validates the scope name
  scope_ = scope;
  downstream_.clear();
  for (const auto& e : downstream) downstream_.push_back(e.sockaddr());
  counts_.assign(downstream_.size(), 0);
  base_n_ = downstream_.size();
  moves_.clear();
}

std::size_t Splitter::add_downstream(const Endpoint& e) {
  downstream_.push_back(e.sockaddr());
  counts_.push_back(0);
  return downstream_.size() - 1;
}

void Splitter::add_move(const Move& m) {
  if (m.scope != scope_ || m.base_n != base_n_ || m.from_index >= base_n_ || m.to_index >= downstream_.size())
    throw std::invalid_argument("move does not fit this splitter (scope " + scope_ + ", " + std::to_string(base_n_) +
                                " base instances, " + std::to_string(downstream_.size()) + " in all): " + m.encode());
  moves_.push_back(m);
}

std::size_t Splitter::pick(const FiveTuple& t) {
  std::size_t i = 0;
  if (base_n_ > 1 || !moves_.empty()) {
    const uint64_t h = scope_hash(scope_, t);
    i = h % base_n_;
    for (const Move& m : moves_)
      if (m.covers_hash(h)) i = m.to_index;
  }
  ++counts_[i];
  return i;
}

}  // namespace chc
