#include "chc/monotonic.h"
#include "chc/store.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

#include <time.h>

#include <stdexcept>

namespace chc {

// --- slots: Redis Cluster's key -> slot rule (CRC16/XMODEM of the hash tag, mod 16384) ------------
uint16_t crc16_xmodem(const char* buf, std::size_t len) {
  uint16_t crc = 0;
  for (std::size_t i = 0; i < len; ++i) {
    crc ^= static_cast<uint16_t>(static_cast<uint8_t>(buf[i]) << 8);
    for (int b = 0; b < 8; ++b) crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
  }
  return crc;
}

int key_slot(const std::string& key) {
  auto open = key.find('{');
  if (open != std::string::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string::npos && close > open + 1)
      return crc16_xmodem(key.data() + open + 1, close - open - 1) & 16383;
  }
  return crc16_xmodem(key.data(), key.size()) & 16383;
}

namespace {
Reply copy_reply(const redisReply* r) {
  Reply out;
  if (r == nullptr) {
    out.type = Reply::Type::Error;
    out.str = "connection lost";
    return out;
  }
  switch (r->type) {
    case REDIS_REPLY_INTEGER: out.type = Reply::Type::Integer; out.integer = r->integer; break;
    case REDIS_REPLY_STRING: out.type = Reply::Type::String; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_STATUS: out.type = Reply::Type::Status; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = Reply::Type::Error; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::Array;
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(copy_reply(r->element[i]));
      break;
    default: out.type = Reply::Type::Nil;
  }
  return out;
}
}  // namespace

struct StoreClient::Conn {
  redisAsyncContext* ctx = nullptr;
  std::string name;
};

struct StoreClient::Pending {
  StoreClient* self;
  ReplyFn fn;
  bool persistent;  // pub/sub: called for every message until the connection goes away
};

namespace {
void reply_cb(redisAsyncContext*, void* r, void* priv) {
  auto* p = static_cast<StoreClient::Pending*>(priv);
  Reply reply = copy_reply(static_cast<redisReply*>(r));
  if (p->fn) p->fn(reply);
  if (!p->persistent || r == nullptr) delete p;
}
}  // namespace

StoreClient::StoreClient(event_base* base, StoreOptions opts, uint16_t vertex, uint16_t instance)
    : base_(base), opts_(std::move(opts)), vertex_(vertex), instance_(instance) {
  if (opts_.nodes.empty()) throw std::invalid_argument("store client needs at least one store node");
  if (opts_.cluster) load_slots();
  for (const auto& n : opts_.nodes) {
    auto c = std::make_unique<Conn>();
    c->name = n.host + ":" + std::to_string(n.port);
    c->ctx = redisAsyncConnect(n.host.c_str(), n.port);
    if (c->ctx == nullptr || c->ctx->err) throw std::runtime_error("cannot connect to store " + c->name);
    redisLibeventAttach(c->ctx, base_);
    conns_.push_back(std::move(c));
  }
  if (!opts_.cluster) {
    slot_owner_.resize(16384);
    for (int s = 0; s < 16384; ++s) slot_owner_[s] = static_cast<uint16_t>(s * conns_.size() / 16384);
  }
  timer_ = event_new(
      base_, -1, EV_PERSIST, [](evutil_socket_t, short, void* self) { static_cast<StoreClient*>(self)->on_timer(); },
      this);
  timeval tv{0, static_cast<suseconds_t>(std::max(1, opts_.retransmit_timeout_ms / 2)) * 1000};
  evtimer_add(timer_, &tv);
}

StoreClient::~StoreClient() {
  if (timer_) event_free(timer_);
  for (auto& c : subs_) redisAsyncFree(c->ctx);  // pending callbacks run with a null reply
  for (auto& c : conns_) redisAsyncFree(c->ctx);
}

void StoreClient::load_slots() {
  const StoreNode& seed = opts_.nodes.front();
  redisContext* c = redisConnect(seed.host.c_str(), seed.port);
  if (c == nullptr || c->err) throw std::runtime_error("cannot reach cluster node " + seed.host);
  auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
    redisFree(c);
    throw std::runtime_error("CLUSTER SLOTS failed at " + seed.host);
  }
  std::vector<StoreNode> masters;
  std::map<std::string, uint16_t> index;
  slot_owner_.assign(16384, 0);
  for (std::size_t i = 0; i < r->elements; ++i) {
    const redisReply* e = r->element[i];
    const redisReply* m = e->element[2];
    StoreNode n{std::string(m->element[0]->str, m->element[0]->len), static_cast<int>(m->element[1]->integer)};
    std::string name = n.host + ":" + std::to_string(n.port);
    if (!index.count(name)) {
      index[name] = static_cast<uint16_t>(masters.size());
      masters.push_back(n);
    }
    for (long long s = e->element[0]->integer; s <= e->element[1]->integer; ++s) slot_owner_[s] = index[name];
  }
  freeReplyObject(r);
  redisFree(c);
  opts_.nodes = masters;
}

std::string StoreClient::shared_key(const std::string& obj) const {
  return "chc:{v" + std::to_string(vertex_) + ":" + obj + "}";
}

std::string StoreClient::flow_key(const std::string& obj, uint16_t owner) const {
  return "chc:{v" + std::to_string(vertex_) + ":i" + std::to_string(owner ? owner : instance_) + ":" + obj + "}";
}

std::size_t StoreClient::node_of(const std::string& key) const { return slot_owner_[key_slot(key)]; }

StoreClient::Conn& StoreClient::conn_for(const std::string& key) { return *conns_[node_of(key)]; }

void StoreClient::send_argv(Conn& c, const std::vector<std::string>& argv, ReplyFn on_reply) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  ++in_flight_;
  ++stats_.ops_sent;
  auto* p = new Pending{this, [this, fn = std::move(on_reply)](const Reply& r) {
                          --in_flight_;
                          if (r.is_error()) ++stats_.errors;
                          if (fn) fn(r);
                        },
                        false};
  if (redisAsyncCommandArgv(c.ctx, reply_cb, p, static_cast<int>(argv.size()), ptrs.data(), lens.data()) !=
      REDIS_OK) {
    Reply err;
    err.type = Reply::Type::Error;
    err.str = "store connection " + c.name + " is down";
    p->fn(err);
    delete p;
  }
}

std::vector<std::string> StoreClient::fcall_argv(const std::string& fn, const std::string& key, uint64_t clock,
                                                 const std::vector<std::string>& args, const std::string& op) const {
  std::vector<std::string> argv{"FCALL", fn, "1", key, std::to_string(clock), op.empty() ? std::to_string(instance_) : op};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

void StoreClient::call(const std::string& fn, const std::string& key, uint64_t clock,
                       const std::vector<std::string>& args, ReplyFn on_reply, const std::string& op) {
  send_argv(conn_for(key), fcall_argv(fn, key, clock, args, op), std::move(on_reply));
}

Reply StoreClient::call_sync(const std::string& fn, const std::string& key, uint64_t clock,
                             const std::vector<std::string>& args, const std::string& op) {
  bool done = false;
  Reply out;
  call(fn, key, clock, args, [&](const Reply& r) { out = r; done = true; }, op);
  while (!done) event_base_loop(base_, EVLOOP_ONCE);
  return out;
}

void StoreClient::call_noack(const std::string& fn, const std::string& key, uint64_t clock,
                             const std::vector<std::string>& args, const std::string& op) {
  uint64_t id = next_op_++;
  unacked_[id] = Unacked{fn, key, clock, args, op, now_ns() + uint64_t(opts_.retransmit_timeout_ms) * 1000000ull};
  call(fn, key, clock, args, [this, id](const Reply& r) {
    if (!r.is_error()) ++stats_.acks;
    unacked_.erase(id);  // a late reply to an op already sent again acknowledges it too
  }, op);
}

void StoreClient::on_timer() {
  uint64_t now = now_ns();
  for (auto& [id, op] : unacked_) {
    if (op.deadline_ns > now) continue;
    // The same clock and instance go again: the store's clock log (issue 12) applies it once.
    op.deadline_ns = now + uint64_t(opts_.retransmit_timeout_ms) * 1000000ull;
    ++stats_.retransmissions;
    uint64_t op_id = id;
    call(op.fn, op.key, op.clock, op.args, [this, op_id](const Reply& r) {
      if (!r.is_error()) ++stats_.acks;
      unacked_.erase(op_id);
    }, op.op);
  }
}

Reply StoreClient::command_sync(const std::string& key, const std::vector<std::string>& argv) {
  bool done = false;
  Reply out;
  command(key, argv, [&](const Reply& r) { out = r; done = true; });
  while (!done) event_base_loop(base_, EVLOOP_ONCE);
  return out;
}

void StoreClient::command(const std::string& key, const std::vector<std::string>& argv, ReplyFn on_reply) {
  send_argv(conn_for(key), argv, std::move(on_reply));
}

void StoreClient::command_on(std::size_t node, const std::vector<std::string>& argv, ReplyFn on_reply) {
  send_argv(*conns_.at(node), argv, std::move(on_reply));
}

void StoreClient::drain() {
  while (in_flight_ > 0) event_base_loop(base_, EVLOOP_ONCE);
}

void StoreClient::enable_tracking() {
  if (tracking_) return;
  for (std::size_t i = 0; i < conns_.size(); ++i) {
    auto sub = std::make_unique<Conn>();
    sub->name = conns_[i]->name + "/invalidate";
    sub->ctx = redisAsyncConnect(opts_.nodes[i].host.c_str(), opts_.nodes[i].port);
    if (sub->ctx == nullptr || sub->ctx->err) throw std::runtime_error("cannot connect to store " + sub->name);
    redisLibeventAttach(sub->ctx, base_);
    Conn& s = *sub;
    subs_.push_back(std::move(sub));
    bool done = false;
    long long id = -1;
    send_argv(s, {"CLIENT", "ID"}, [&](const Reply& r) { id = r.integer; done = true; });
    while (!done) event_base_loop(base_, EVLOOP_ONCE);
    // The subscription's callback stays registered for every invalidation message.
    const char* argv[] = {"SUBSCRIBE", "__redis__:invalidate"};
    auto* p = new Pending{this, [this](const Reply& r) { handle_invalidation(r); }, true};
    redisAsyncCommandArgv(s.ctx, reply_cb, p, 2, argv, nullptr);
    Reply on = command_sync_on(i, {"CLIENT", "TRACKING", "on", "REDIRECT", std::to_string(id)});
    if (on.is_error()) throw std::runtime_error("CLIENT TRACKING failed: " + on.str);
  }
  tracking_ = true;
}

Reply StoreClient::command_sync_on(std::size_t node, const std::vector<std::string>& argv) {
  bool done = false;
  Reply out;
  send_argv(*conns_[node], argv, [&](const Reply& r) { out = r; done = true; });
  while (!done) event_base_loop(base_, EVLOOP_ONCE);
  return out;
}

std::string StoreClient::tracked_get(const std::string& key) {
  auto it = tracked_.find(key);
  if (it != tracked_.end()) return it->second;
  Reply r = command_sync(key, {"GET", key});
  cached_keys_.insert(key);
  return tracked_[key] = r.str;
}

void StoreClient::handle_invalidation(const Reply& msg) {
  // RESP2 pub/sub: ["message", "__redis__:invalidate", [keys...] or nil (flush: drop everything)]
  if (msg.type != Reply::Type::Array || msg.elements.size() != 3 || msg.elements[0].str != "message") return;
  const Reply& keys = msg.elements[2];
  if (keys.is_nil()) {
    tracked_.clear();
    return;
  }
  for (const Reply& k : keys.elements) {
    ++stats_.invalidations;
    tracked_.erase(k.str);
    if (!cached_keys_.count(k.str)) {  // not a cached value: just tell (every GET here is tracked)
      if (on_invalidate) on_invalidate(k.str);
      continue;
    }
    // The callback refreshes the cached value (§3.3.3); the new GET also re-arms tracking for it.
    command(k.str, {"GET", k.str}, [this, key = k.str](const Reply& r) {
      if (!r.is_error()) tracked_[key] = r.str;
      if (on_invalidate) on_invalidate(key);
    });
  }
}

}  // namespace chc
