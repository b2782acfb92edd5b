// The OpenNF-style baseline for strongly consistent shared state (§3.6.3 R3). Every instance keeps
// its own copy of the shared objects; each packet's updates of them go to a controller, which
// forwards them to every instance in one global order and releases the sender only after all
// instances acknowledged. (CHC's alternative: the store serializes the instances' offloaded ops, with
// no copies and no round trip on the packet's path.) Text datagrams, docs/chc.md "OpenNF baseline":
//   H <instance>                      instance -> controller: register (answered "h")
//   U <instance> <seq> <ops>          instance -> controller: one packet's shared updates
//   A <gseq> <instance> <seq> <ops>   controller -> every instance: apply, in global order gseq
//   K <gseq> <instance>               instance -> controller: applied
//   R <seq>                           controller -> sender: released (every instance applied it)
// <ops> is "obj:op:arg[,obj:op:arg...]", op add (arg: delta), pop (arg empty) or push (arg: value).
#pragma once
#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "chc/tunnel.h"

namespace chc {

struct ReplicaOp {
  uint16_t obj = 0;
  std::string op;   // add | pop | push
  std::string arg;  // no ',' or ' ' (the wire format's separators)
};

std::string encode_ops(const std::vector<ReplicaOp>& ops);
std::vector<ReplicaOp> decode_ops(const std::string& text);  // throws std::invalid_argument

class ReplicaClient {
 public:
  // apply: runs one op on this instance's copy, returns its result (pop: the value, or nullopt).
  using Apply = std::function<std::optional<std::string>(const ReplicaOp&)>;
  ReplicaClient(const Endpoint& controller, uint16_t instance, Apply apply, int retransmit_ms = 20);
  ~ReplicaClient();
  ReplicaClient(const ReplicaClient&) = delete;
  ReplicaClient& operator=(const ReplicaClient&) = delete;

  int fd() const { return fd_; }
  void register_with_controller(int timeout_ms);  // throws std::runtime_error on timeout
  // Sends one packet's ops and blocks until the controller releases them; meanwhile applies (and
  // acknowledges) everything the controller forwards. Returns the results of these ops, applied
  // locally at their place in the global order.
  std::vector<std::optional<std::string>> execute(const std::vector<ReplicaOp>& ops);
  void poll();  // handles waiting datagrams without blocking (the NF's idle loop)

  struct Stats {
    uint64_t executed = 0, applied = 0, retransmissions = 0, wait_ns = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  void send(const std::string& msg);
  void handle(const std::string& msg);
  bool receive_one(int timeout_ms);  // false on timeout

  int fd_ = -1;
  sockaddr_in controller_{};
  uint16_t instance_;
  Apply apply_;
  int retransmit_ms_;
  bool registered_ = false;
  uint32_t seq_ = 0;           // this instance's update sequence
  uint64_t applied_gseq_ = 0;  // the global order applied so far
  bool released_ = false;
  std::vector<std::optional<std::string>> results_;
  Stats stats_;
};

}  // namespace chc
