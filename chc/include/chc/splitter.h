// The splitter after every instance (and the root): scope-aware partitioning of output traffic over
// the downstream instances (§3.3.1). The framework manager picks the scope and sets the rule over
// the control socket ("split SCOPE HOST:PORT..."); the splitter hashes the scope's fields.
#pragma once
#include <netinet/in.h>

#include <string>
#include <vector>

#include "chc/move.h"
#include "chc/packet.h"
#include "chc/tunnel.h"

namespace chc {

class Splitter {
 public:
  // scope: "5tuple" (direction-independent, so both directions of a connection meet), "srcip", "dstip"
  void set_rule(const std::string& scope, const std::vector<Endpoint>& downstream);
  bool empty() const { return downstream_.empty(); }
  // Index of the downstream instance for this frame; every instance's share is counted for stats.
  std::size_t pick(const FiveTuple& t);
  // R2 scale-up: a new instance the base rule sends nothing to; returns its index.
  std::size_t add_downstream(const Endpoint& e);
  // Moves the flows m covers from m.from_index to m.to_index (both must exist; from in the base rule).
  void add_move(const Move& m);
  std::size_t base_count() const { return base_n_; }
  std::size_t size() const { return downstream_.size(); }
  const sockaddr_in& address(std::size_t i) const { return downstream_[i]; }
  const std::vector<uint64_t>& counts() const { return counts_; }
  const std::string& scope() const { return scope_; }

 private:
  std::string scope_ = "5tuple";
  std::vector<sockaddr_in> downstream_;
  std::vector<uint64_t> counts_;
  std::size_t base_n_ = 0;   // the hash rule's instances (the first base_n_ of downstream_)
  std::vector<Move> moves_;  // in order; a flow moves at most once (moves start at base instances)
};

uint64_t scope_hash(const std::string& scope, const FiveTuple& t);  // throws on an unknown scope

}  // namespace chc
