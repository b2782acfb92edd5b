// The NF-facing state API (§3.3.3): one source per NF, four models behind it.
//   T        traditional: every object local to the instance
//   EO       #1 externalized: every op offloaded to the store, the NF waits for each ACK/reply
//   EO+C     #2 + caching per Table 3.5 (per-flow at the owner; read-heavy cross-flow everywhere with
//            store callbacks; other cross-flow objects while the split gives exclusive access)
//   EO+C+NA  #3 + no waiting for the ACKs of non-blocking ops (the client retransmits on timeout)
// Every update folds (instance id, object id) into the packet's XOR vector (§3.4.4) and carries
// the packet's clock to the store.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "chc/header.h"
#include "chc/replica.h"
#include "chc/store.h"

namespace chc {

enum class Model { Traditional, EO, EOC, EOCNA };
Model parse_model(const std::string& text);  // "T" | "EO" | "EO+C" | "EO+C+NA"; throws
std::string model_name(Model m);

enum class Scope { PerFlow, CrossFlow };
enum class Access { WriteMostly, ReadHeavy, ReadWriteOften, WriteRarely };

struct ObjectDecl {
  uint16_t id;       // object id in the XOR vector
  std::string name;  // obj part of the store key
  Scope scope;
  Access access;
};

class State {
 public:
  // store may be null only for T. vertex_instances > 1: the vertex's cross-flow objects are shared
  // from the start (not cached), and only instance 1 seeds them in the store.
  // recovering: a replacement of a failed instance (R6, issue 12): it seeds nothing, caches no
  // cross-flow object, and reads per-flow values its cache misses from the store (the failed
  // instance's flushes), so replayed packets see the store's clock-logged results.
  State(Model model, StoreClient* store, uint16_t instance, int vertex_instances = 1, bool recovering = false);
  uint16_t instance() const { return instance_; }
  uint64_t updates() const { return updates_; }  // state updates issued so far (R5's duplicate count)
  Model model() const { return model_; }
  void declare(const ObjectDecl& d);
  // flow_owner: the instance whose per-flow keys hold this packet's flow state -- 0 (this instance)
  // except for a flow moved in from another instance (R2, chc/move.h), whose state stays under the
  // old instance's keys and is read from the store on a cache miss.
  void begin_packet(Header* h, uint16_t flow_owner = 0) {
    pkt_ = h;
    flow_owner_ = flow_owner == instance_ ? 0 : flow_owner;
    seq_.clear();
  }
  // The packet is processed: under the OpenNF baseline its remaining shared updates go out as one
  // strongly consistent event (the NF waits for the controller's release).
  void end_packet();

  // The OpenNF-style baseline of §3.6.3 R3 (T only): cross-flow counters and lists stay local
  // copies, and every packet's updates of them are applied at all instances in the controller's global
  // order (chc/replica.h). Hash objects (field_op, map_op) are not replicated: refused.
  void set_replica(ReplicaClient* replica);
  std::optional<std::string> apply_replicated(const ReplicaOp& op);  // the controller's forward, here

  // Counters (write mostly, read rarely): add, non-blocking under EO+C+NA.
  void counter_add(uint16_t obj, long long delta, const std::string& subkey = "");
  long long counter_read(uint16_t obj, const std::string& subkey = "");  // sees this instance's own adds

  // Per-flow values (flow key: vertex + instance + obj + subkey): cached at the owner under C.
  std::optional<std::string> flow_get(uint16_t obj, const std::string& subkey);
  void flow_put(uint16_t obj, const std::string& subkey, const std::string& value);
  void flow_del(uint16_t obj, const std::string& subkey);

  // Cross-flow hash objects (fields such as hosts or servers) updated by custom ops of the Functions
  // library. `local` is the same op on the cached/local value, so every model runs one NF source:
  // applied locally under T, locally and mirrored (non-blocking) to the store while cached, and
  // offloaded (blocking, the NF needs the result) otherwise.
  using FieldOp = std::function<std::pair<std::string, Reply>(const std::string& old_value)>;
  Reply field_op(uint16_t obj, const std::string& field, const std::string& fn, const std::vector<std::string>& args,
                 const FieldOp& local);
  using MapOp = std::function<Reply(std::map<std::string, std::string>& fields)>;
  Reply map_op(uint16_t obj, const std::string& fn, const std::vector<std::string>& args, const MapOp& local);
  void hash_init(uint16_t obj, const std::map<std::string, std::string>& fields);
  std::map<std::string, std::string> hash_read(uint16_t obj);

  // Cross-flow list (e.g. the NAT's available ports): offloaded pop/push; cached while exclusive.
  std::optional<std::string> list_pop(uint16_t obj);
  void list_push(uint16_t obj, const std::string& value);
  void list_init(uint16_t obj, const std::vector<std::string>& values);  // setup, before traffic

  // The OpenNF-style loss-free move (the R2 baseline, model T): per-flow entries remember the flow
  // hash of the packet that wrote them (only while tracking is on: set_flow_hash before each packet),
  // so the entries of the flows a move covers can be exported, and imported at the new instance.
  struct FlowEntry {
    std::string key, value;
    uint64_t hash;
  };
  void track_flows() { track_flows_ = true; }
  void set_flow_hash(uint64_t h) { flow_hash_now_ = h; }
  std::vector<FlowEntry> export_flows(const std::function<bool(uint64_t)>& covered) const;
  void import_flows(const std::vector<FlowEntry>& entries);

  // Exclusive caching of cross-flow objects (Table 3.5 col. 5), switched by the upstream split.
  void set_exclusive(uint16_t obj, bool exclusive);
  bool cached(uint16_t obj) const;

  std::string key(uint16_t obj, const std::string& subkey = "") const;
  void drain();  // wait for every outstanding store op

 private:
  const ObjectDecl& decl(uint16_t obj) const;
  // Folds (instance, obj) into the packet's XOR vector; returns the op's tag for the store's clock
  // log and commit signal ("<instance>:<obj>:<seq>", seq counting this packet's updates of obj).
  std::string fold(uint16_t obj);
  uint64_t clock() const { return pkt_ ? pkt_->clock : 0; }
  // Sends an update: waits for its ACK unless the model says not to.
  void update(const std::string& fn, const std::string& key, const std::vector<std::string>& args,
              const std::string& op);
  bool caching() const { return model_ == Model::EOC || model_ == Model::EOCNA; }
  bool seeds() const { return !recovering_ && (instance_ == 1 || vertex_instances_ == 1); }
  bool replicated(uint16_t obj) const { return replica_ && decl(obj).scope == Scope::CrossFlow; }
  void refuse_replicated(uint16_t obj) const;

  Model model_;
  StoreClient* store_;
  uint16_t instance_;
  int vertex_instances_;
  bool recovering_;
  Header* pkt_ = nullptr;
  uint16_t flow_owner_ = 0;
  ReplicaClient* replica_ = nullptr;
  std::vector<ReplicaOp> replica_pending_;  // this packet's shared updates not sent yet
  std::map<uint16_t, uint16_t> seq_;  // updates per object of the current packet
  uint64_t updates_ = 0;
  std::map<uint16_t, ObjectDecl> decls_;
  std::map<uint16_t, bool> exclusive_;
  std::unordered_map<std::string, std::string> flow_local_;  // T and the per-flow cache
  bool track_flows_ = false;
  uint64_t flow_hash_now_ = 0;
  std::unordered_map<std::string, uint64_t> flow_hash_;  // per-flow key -> its flow's hash (tracking on)
  std::map<uint16_t, long long> counters_local_;
  std::map<uint16_t, std::deque<std::string>> lists_local_;   // T and the exclusive cache
  std::map<uint16_t, std::map<std::string, std::string>> hashes_local_;
  std::map<std::string, long long> subcounters_local_;
};

}  // namespace chc
