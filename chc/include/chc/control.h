// The control socket of a data-plane process: a Unix stream socket, one text command per line,
// one reply line ("ok ..." or "err ..."). Commands are queued and run by the main loop, outside
// libevent callbacks, because some (cache off) wait for the store. Protocol: docs/chc.md.
#pragma once
#include <event2/event.h>

#include <deque>
#include <functional>
#include <set>
#include <string>

struct evconnlistener;
struct bufferevent;

namespace chc {

class ControlSocket {
 public:
  ControlSocket(event_base* base, const std::string& path);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;
  // Runs every queued command through handler (which returns the reply line).
  void run_pending(const std::function<std::string(const std::string&)>& handler);
  bool has_pending() const { return !pending_.empty(); }

  struct Request {
    bufferevent* client;
    std::string line;
  };
  std::deque<Request> pending_;
  std::set<bufferevent*> clients_;

 private:
  std::string path_;
  evconnlistener* listener_ = nullptr;
};

}  // namespace chc
