#include "chc/state.h"

#include <stdexcept>

namespace chc {

Model parse_model(const std::string& t) {
  if (t == "T") return Model::Traditional;
  if (t == "EO") return Model::EO;
  if (t == "EO+C") return Model::EOC;
  if (t == "EO+C+NA") return Model::EOCNA;
  throw std::invalid_argument("model must be T, EO, EO+C or EO+C+NA, got " + t);
}

std::string model_name(Model m) {
  switch (m) {
    case Model::Traditional: return "T";
    case Model::EO: return "EO";
    case Model::EOC: return "EO+C";
    case Model::EOCNA: return "EO+C+NA";
  }
  return "?";
}

State::State(Model model, StoreClient* store, uint16_t instance, int vertex_instances, bool recovering)
    : model_(model), store_(store), instance_(instance), vertex_instances_(vertex_instances), recovering_(recovering) {
  if (model_ != Model::Traditional && store_ == nullptr) throw std::invalid_argument("externalized state needs a store");
}

void State::declare(const ObjectDecl& d) {
  decls_[d.id] = d;
  // A vertex with one instance starts with its cross-flow objects exclusive (cached); the control
  // socket's "cache OBJ off" revokes that when the split shares their scope with another instance.
  exclusive_[d.id] =
      d.scope == Scope::CrossFlow && d.access == Access::ReadWriteOften && vertex_instances_ == 1 && !recovering_;
}

const ObjectDecl& State::decl(uint16_t obj) const {
  auto it = decls_.find(obj);
  if (it == decls_.end()) throw std::invalid_argument("undeclared state object " + std::to_string(obj));
  return it->second;
}

std::string State::key(uint16_t obj, const std::string& subkey) const {
  const ObjectDecl& d = decl(obj);
  std::string name = subkey.empty() ? d.name : d.name + ":" + subkey;
  if (!store_) return name;
  return d.scope == Scope::PerFlow ? store_->flow_key(name, flow_owner_) : store_->shared_key(name);
}

std::string State::fold(uint16_t obj) {
  ++updates_;
  if (!pkt_ || model_ == Model::Traditional) return "";
  pkt_->fold_update(instance_, obj);
  return std::to_string(instance_) + ":" + std::to_string(obj) + ":" + std::to_string(seq_[obj]++);
}

void State::update(const std::string& fn, const std::string& k, const std::vector<std::string>& args,
                   const std::string& op) {
  if (model_ == Model::EOCNA) {
    store_->call_noack(fn, k, clock(), args, op);
  } else {
    Reply r = store_->call_sync(fn, k, clock(), args, op);
    if (r.is_error()) throw std::runtime_error("store op " + fn + " on " + k + ": " + r.str);
  }
}

void State::counter_add(uint16_t obj, long long delta, const std::string& subkey) {
  if (replicated(obj)) {
    if (!subkey.empty()) refuse_replicated(obj);
    replica_pending_.push_back({obj, "add", std::to_string(delta)});  // sent with the packet's event
    return;
  }
  if (model_ == Model::Traditional) {
    if (subkey.empty()) counters_local_[obj] += delta;
    else subcounters_local_[key(obj, subkey)] += delta;
    return;
  }
  update("chc_incr", key(obj, subkey), {std::to_string(delta)}, fold(obj));
}

long long State::counter_read(uint16_t obj, const std::string& subkey) {
  if (model_ == Model::Traditional)
    return subkey.empty() ? counters_local_[obj] : subcounters_local_[key(obj, subkey)];
  std::string k = key(obj, subkey);
  Reply r = store_->command_sync(k, {"GET", k});
  return r.is_nil() ? 0 : std::stoll(r.str);
}

void State::flow_del(uint16_t obj, const std::string& subkey) {
  std::string k = key(obj, subkey);
  flow_local_.erase(k);
  if (model_ == Model::Traditional) return;
  update("chc_del", k, {}, fold(obj));  // through the library: clock-logged and commit-signalled
}

Reply State::field_op(uint16_t obj, const std::string& field, const std::string& fn,
                      const std::vector<std::string>& args, const FieldOp& local) {
  if (replicated(obj)) refuse_replicated(obj);
  std::vector<std::string> full{field};
  full.insert(full.end(), args.begin(), args.end());
  if (cached(obj)) {
    auto& fields = hashes_local_[obj];
    auto it = fields.find(field);
    auto [value, result] = local(it == fields.end() ? "" : it->second);
    if (!value.empty()) fields[field] = value;
    if (model_ != Model::Traditional) update(fn, key(obj), full, fold(obj));
    return result;
  }
  std::string op = fold(obj);
  Reply r = store_->call_sync(fn, key(obj), clock(), full, op);
  if (r.is_error()) throw std::runtime_error("store op " + fn + " on " + key(obj) + ": " + r.str);
  return r;
}

Reply State::map_op(uint16_t obj, const std::string& fn, const std::vector<std::string>& args, const MapOp& local) {
  if (replicated(obj)) refuse_replicated(obj);
  if (cached(obj)) {
    Reply result = local(hashes_local_[obj]);
    if (model_ != Model::Traditional) update(fn, key(obj), args, fold(obj));
    return result;
  }
  std::string op = fold(obj);
  Reply r = store_->call_sync(fn, key(obj), clock(), args, op);
  if (r.is_error()) throw std::runtime_error("store op " + fn + " on " + key(obj) + ": " + r.str);
  return r;
}

void State::hash_init(uint16_t obj, const std::map<std::string, std::string>& fields) {
  hashes_local_[obj] = fields;
  if (model_ == Model::Traditional || !seeds()) return;
  std::string k = key(obj);
  store_->command_sync(k, {"DEL", k});
  if (fields.empty()) return;
  std::vector<std::string> argv{"HSET", k};
  for (const auto& [f, v] : fields) {
    argv.push_back(f);
    argv.push_back(v);
  }
  Reply r = store_->command_sync(k, argv);
  if (r.is_error()) throw std::runtime_error("store init of " + k + ": " + r.str);
}

std::map<std::string, std::string> State::hash_read(uint16_t obj) {
  if (model_ == Model::Traditional) return hashes_local_[obj];
  std::string k = key(obj);
  Reply r = store_->command_sync(k, {"HGETALL", k});
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) out[r.elements[i].str] = r.elements[i + 1].str;
  return out;
}

std::optional<std::string> State::flow_get(uint16_t obj, const std::string& subkey) {
  std::string k = key(obj, subkey);
  if (model_ == Model::Traditional || caching()) {
    auto it = flow_local_.find(k);
    if (it != flow_local_.end()) return it->second;
    // The failed instance's flows (R6), or the old instance's of a moved flow (R2), are in the store.
    if ((recovering_ || flow_owner_) && model_ != Model::Traditional) {
      Reply r = store_->command_sync(k, {"GET", k});
      if (r.is_error()) throw std::runtime_error("store GET " + k + ": " + r.str);
      if (r.is_nil()) return std::nullopt;
      return flow_local_[k] = r.str;
    }
    // A miss at the owner means the flow is new here: its key carries this instance's id, so no
    // other instance can have written it (flows moved in have flow_owner_ set).
    return std::nullopt;
  }
  Reply r = store_->command_sync(k, {"GET", k});
  if (r.is_error()) throw std::runtime_error("store GET " + k + ": " + r.str);
  if (r.is_nil()) return std::nullopt;
  return r.str;
}

void State::flow_put(uint16_t obj, const std::string& subkey, const std::string& value) {
  std::string k = key(obj, subkey);
  if (model_ == Model::Traditional || caching()) flow_local_[k] = value;
  if (track_flows_) flow_hash_.emplace(k, flow_hash_now_);
  if (model_ == Model::Traditional) return;
  update("chc_set", k, {value}, fold(obj));  // the flush of the cached object (waits for the ACK unless NA)
}

bool State::cached(uint16_t obj) const {
  auto it = exclusive_.find(obj);
  return model_ == Model::Traditional || (caching() && it != exclusive_.end() && it->second);
}

void State::list_init(uint16_t obj, const std::vector<std::string>& values) {
  lists_local_[obj].assign(values.begin(), values.end());
  if (model_ == Model::Traditional || !seeds()) return;
  std::string k = key(obj);
  store_->command_sync(k, {"DEL", k});
  std::vector<std::string> args{"R"};
  for (std::size_t i = 0; i < values.size(); ++i) {
    args.push_back(values[i]);
    if (args.size() == 1001 || i + 1 == values.size()) {
      Reply r = store_->call_sync("chc_push", k, 0, args);
      if (r.is_error()) throw std::runtime_error("store init of " + k + ": " + r.str);
      args.resize(1);
    }
  }
}

std::optional<std::string> State::list_pop(uint16_t obj) {
  if (replicated(obj)) {  // the NF needs the value now: the packet's event goes out here
    replica_pending_.push_back({obj, "pop", ""});
    auto results = replica_->execute(replica_pending_);
    replica_pending_.clear();
    return results.empty() ? std::nullopt : results.back();
  }
  if (cached(obj)) {
    auto& l = lists_local_[obj];
    if (l.empty()) return std::nullopt;
    std::string v = l.front();
    l.pop_front();
    if (model_ != Model::Traditional) update("chc_pop", key(obj), {"L"}, fold(obj));  // mirror: the store stays authoritative
    return v;
  }
  std::string op = fold(obj);
  Reply r = store_->call_sync("chc_pop", key(obj), clock(), {"L"}, op);
  if (r.is_error()) throw std::runtime_error("store pop " + key(obj) + ": " + r.str);
  if (r.is_nil()) return std::nullopt;
  return r.str;
}

void State::list_push(uint16_t obj, const std::string& value) {
  if (replicated(obj)) {
    replica_pending_.push_back({obj, "push", value});
    return;
  }
  if (cached(obj)) {
    lists_local_[obj].push_back(value);
    if (model_ == Model::Traditional) return;
    update("chc_push", key(obj), {"R", value}, fold(obj));
    return;
  }
  update("chc_push", key(obj), {"R", value}, fold(obj));
}

void State::set_exclusive(uint16_t obj, bool exclusive) {
  decl(obj);
  if (model_ == Model::Traditional || exclusive_[obj] == exclusive) return;
  if (!exclusive) {
    store_->drain();  // flush: every mirrored op is in the store before others touch the object
  } else {
    // (Re)load the cached copy from the store, now that no other instance accesses it.
    std::string k = key(obj);
    if (lists_local_.count(obj)) {
      Reply r = store_->command_sync(k, {"LRANGE", k, "0", "-1"});
      auto& l = lists_local_[obj];
      l.clear();
      for (const Reply& e : r.elements) l.push_back(e.str);
    } else {
      hashes_local_[obj] = hash_read(obj);
    }
  }
  exclusive_[obj] = exclusive;
}

void State::set_replica(ReplicaClient* replica) {
  if (replica && model_ != Model::Traditional)
    throw std::invalid_argument("the OpenNF baseline keeps state in the instances: model T only");
  replica_ = replica;
}

void State::refuse_replicated(uint16_t obj) const {
  throw std::logic_error("the OpenNF baseline replicates counters and lists only, not " + decl(obj).name);
}

void State::end_packet() {
  pkt_ = nullptr;
  if (replica_ && !replica_pending_.empty()) {
    replica_->execute(replica_pending_);
    replica_pending_.clear();
  }
}

std::optional<std::string> State::apply_replicated(const ReplicaOp& op) {
  if (op.op == "add") {
    counters_local_[op.obj] += std::stoll(op.arg);
    return std::nullopt;
  }
  auto& l = lists_local_[op.obj];
  if (op.op == "push") {
    l.push_back(op.arg);
    return std::nullopt;
  }
  if (op.op == "pop") {
    if (l.empty()) return std::nullopt;
    std::string v = l.front();
    l.pop_front();
    return v;
  }
  throw std::invalid_argument("unknown replica op " + op.op);
}

std::vector<State::FlowEntry> State::export_flows(const std::function<bool(uint64_t)>& covered) const {
  std::vector<FlowEntry> out;
  for (const auto& [k, h] : flow_hash_) {
    if (!covered(h)) continue;
    auto it = flow_local_.find(k);
    if (it != flow_local_.end()) out.push_back({k, it->second, h});
  }
  return out;
}

void State::import_flows(const std::vector<FlowEntry>& entries) {
  for (const auto& e : entries) {
    flow_local_[e.key] = e.value;
    if (track_flows_) flow_hash_[e.key] = e.hash;
  }
}

void State::drain() {
  if (store_) store_->drain();
}

}  // namespace chc
