// What an NF implements on the CHC runtime: declare its state objects and scopes, process packets.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "chc/header.h"
#include "chc/packet.h"
#include "chc/state.h"

namespace chc {

using Config = std::map<std::string, std::string>;  // "k=v,k=v" from --config
Config parse_config(const std::string& text);

struct PacketCtx {
  Header& header;
  Frame& frame;
  bool drop = false;
};

class NetworkFunction {
 public:
  virtual ~NetworkFunction() = default;
  // State scopes, fine -> coarse (§3.3.1), e.g. {"5tuple", "srcip"}; the framework partitions on them.
  virtual std::vector<std::string> scopes() const = 0;
  // Declares the NF's objects on `state` and initialises them (before traffic).
  virtual void setup(State& state) = 0;
  virtual void process(PacketCtx& pkt, State& state) = 0;
  // Final decisions/state, "key value" lines, for the harness and the tests.
  virtual std::string report(State& state) = 0;
};

std::unique_ptr<NetworkFunction> make_nf(const std::string& type, const Config& config);  // throws

}  // namespace chc
