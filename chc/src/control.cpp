#include "chc/control.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace chc {

namespace {
void on_read(bufferevent* bev, void* self) {
  auto* cs = static_cast<ControlSocket*>(self);
  evbuffer* in = bufferevent_get_input(bev);
  size_t n;
  while (char* line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) {
    cs->pending_.push_back({bev, std::string(line, n)});
    std::free(line);
  }
}

void on_event(bufferevent* bev, short what, void* self) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    auto* cs = static_cast<ControlSocket*>(self);
    for (auto& r : cs->pending_)
      if (r.client == bev) r.client = nullptr;  // reply to nobody
    cs->clients_.erase(bev);
    bufferevent_free(bev);
  }
}

void on_accept(evconnlistener* l, evutil_socket_t fd, sockaddr*, int, void* self) {
  bufferevent* bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(bev, on_read, nullptr, on_event, self);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  static_cast<ControlSocket*>(self)->clients_.insert(bev);
}
}  // namespace

ControlSocket::ControlSocket(event_base* base, const std::string& path) : path_(path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw std::invalid_argument("control socket path too long: " + path);
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  ::unlink(path.c_str());
  listener_ = evconnlistener_new_bind(base, on_accept, this, LEV_OPT_CLOSE_ON_FREE, 8, reinterpret_cast<sockaddr*>(&a),
                                      sizeof a);
  if (!listener_) throw std::runtime_error("cannot listen on control socket " + path);
}

ControlSocket::~ControlSocket() {
  for (bufferevent* b : clients_) bufferevent_free(b);
  if (listener_) evconnlistener_free(listener_);
  ::unlink(path_.c_str());
}

void ControlSocket::run_pending(const std::function<std::string(const std::string&)>& handler) {
  while (!pending_.empty()) {
    Request r = pending_.front();
    pending_.pop_front();
    std::string reply = handler(r.line) + "\n";
    if (r.client) bufferevent_write(r.client, reply.data(), reply.size());
  }
}

}  // namespace chc
