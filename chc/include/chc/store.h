// CHC's client library for the state store (§3.3.3, Tables 3.5/3.6) over hiredis 0.14 async + libevent.
//
// Keys: shared objects "chc:{v<vertex>:<obj>}", per-flow objects "chc:{v<vertex>:i<instance>:<obj>}".
// The braces are the Redis Cluster hash tag: one object = one slot = one store node, both for a
// Redis Cluster (slot owner from CLUSTER SLOTS) and for N standalone servers (slot ranges split in N).
// Every offloaded op is an FCALL of the "chc" Functions library carrying the packet clock and the
// instance id (for the clock log and commit signals of issue 12).
#pragma once
#include <event2/event.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

struct redisAsyncContext;

namespace chc {

// An owned copy of a hiredis reply.
struct Reply {
  enum class Type { Nil, Integer, String, Status, Error, Array } type = Type::Nil;
  long long integer = 0;
  std::string str;
  std::vector<Reply> elements;
  bool is_error() const { return type == Type::Error; }
  bool is_nil() const { return type == Type::Nil; }
};

using ReplyFn = std::function<void(const Reply&)>;

struct StoreNode {
  std::string host;
  int port = 0;
};

struct StoreOptions {
  std::vector<StoreNode> nodes;
  bool cluster = false;           // nodes[0] is asked for CLUSTER SLOTS
  int retransmit_timeout_ms = 50;  // no-wait-for-ACK ops not acknowledged by then are sent again
};

struct StoreStats {
  uint64_t ops_sent = 0, acks = 0, retransmissions = 0, invalidations = 0, errors = 0;
};

uint16_t crc16_xmodem(const char* buf, std::size_t len);
int key_slot(const std::string& key);  // Redis Cluster slot (hash tag aware)

class StoreClient {
 public:
  StoreClient(event_base* base, StoreOptions opts, uint16_t vertex, uint16_t instance);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  std::string shared_key(const std::string& obj) const;
  // owner: the instance whose per-flow keys hold the object (0: this one; a moved flow's: the old one)
  std::string flow_key(const std::string& obj, uint16_t owner = 0) const;
  uint16_t instance() const { return instance_; }
  std::size_t node_of(const std::string& key) const;

  // --- the offloaded ops (Table 3.6): fn is a function of the "chc" library, args after clock+instance.
  // Non-blocking: returns at once, on_reply later (from the event loop). on_reply may be empty.
  // `op` names the update for the store's clock log and commit signal: "<instance>:<object>:<seq>"
  // (State makes it); empty means just the instance id (no object: nothing to match).
  void call(const std::string& fn, const std::string& key, uint64_t clock, const std::vector<std::string>& args,
            ReplyFn on_reply, const std::string& op = "");
  // Blocking: sends, then runs the event loop until the reply is in. Never call from an event callback.
  Reply call_sync(const std::string& fn, const std::string& key, uint64_t clock,
                  const std::vector<std::string>& args, const std::string& op = "");
  // No wait for ACK (model #3): the framework keeps the op until the store acknowledges it and
  // sends it again after retransmit_timeout_ms.
  void call_noack(const std::string& fn, const std::string& key, uint64_t clock, const std::vector<std::string>& args,
                  const std::string& op = "");
  // A plain command (GET, HGET, ...) on key's node, blocking. Reads go on the same connection as the
  // reader's earlier updates, so Redis applies those first (reads see the reader's own updates).
  Reply command_sync(const std::string& key, const std::vector<std::string>& argv);
  void command(const std::string& key, const std::vector<std::string>& argv, ReplyFn on_reply);
  // A command on store node `node` (0..node_count()-1), e.g. the root's XREAD of its commit stream.
  void command_on(std::size_t node, const std::vector<std::string>& argv, ReplyFn on_reply);
  std::size_t node_count() const { return conns_.size(); }

  // Runs the event loop until every op of this client is acknowledged.
  void drain();
  std::size_t in_flight() const { return in_flight_; }
  std::size_t unacked() const { return unacked_.size(); }
  const StoreStats& stats() const { return stats_; }

  // --- read-heavy cross-flow objects (Table 3.5 col. 4): cached everywhere, kept fresh by the
  // store's callbacks: CLIENT TRACKING on REDIRECT to a connection subscribed to __redis__:invalidate.
  void enable_tracking();                               // blocking; once per client
  std::string tracked_get(const std::string& key);      // cached GET ("" if absent)
  bool tracked_cached(const std::string& key) const { return tracked_.count(key) != 0; }
  // Called for every key the store invalidated: a cached one after the cache refreshed it, any other
  // key read on a tracking connection at once (R2's handover notification, chc/move.h).
  std::function<void(const std::string&)> on_invalidate;

  event_base* base() const { return base_; }

 struct Pending;  // one outstanding reply (internal; public for the hiredis C callback)

 private:
  struct Conn;
  struct Unacked {
    std::string fn, key;
    uint64_t clock;
    std::vector<std::string> args;
    std::string op;
    uint64_t deadline_ns;
  };
  Conn& conn_for(const std::string& key);
  void send_argv(Conn& c, const std::vector<std::string>& argv, ReplyFn on_reply);
  std::vector<std::string> fcall_argv(const std::string& fn, const std::string& key, uint64_t clock,
                                      const std::vector<std::string>& args, const std::string& op) const;
  void load_slots();
  void on_timer();
  void handle_invalidation(const Reply& msg);
  Reply command_sync_on(std::size_t node, const std::vector<std::string>& argv);

  event_base* base_;
  StoreOptions opts_;
  uint16_t vertex_, instance_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<std::unique_ptr<Conn>> subs_;  // invalidation subscribers, one per node
  std::vector<uint16_t> slot_owner_;         // slot -> index into conns_
  std::size_t in_flight_ = 0;
  uint64_t next_op_ = 1;
  std::map<uint64_t, Unacked> unacked_;  // op id -> op (ordered: retransmit in issue order)
  event* timer_ = nullptr;
  StoreStats stats_;
  bool tracking_ = false;
  std::unordered_map<std::string, std::string> tracked_;
  std::unordered_set<std::string> cached_keys_;  // keys tracked_get cached (refreshed on invalidation)
};

}  // namespace chc
