#include "chc/tunnel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <system_error>

namespace chc {

Endpoint Endpoint::parse(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("endpoint needs host:port: " + host_port);
  Endpoint e{host_port.substr(0, colon), 0};
  int port = std::stoi(host_port.substr(colon + 1));
  if (port < 0 || port > 65535) throw std::invalid_argument("bad port in " + host_port);
  e.port = static_cast<uint16_t>(port);
  e.sockaddr();  // validates the address
  return e;
}

sockaddr_in Endpoint::sockaddr() const {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) throw std::invalid_argument("not an IPv4 address: " + host);
  return a;
}

Header Datagram::header() const { return *decode(bytes, len); }

void Datagram::set(const Header& h, const uint8_t* frame, std::size_t n) {
  if (kHeaderSize + n > kMaxDatagram) throw std::length_error("frame too large for a tunnel datagram");
  Header hh = h;
  hh.frame_len = static_cast<uint16_t>(n);
  encode(hh, bytes);
  if (frame != bytes + kHeaderSize) std::memmove(bytes + kHeaderSize, frame, n);
  len = kHeaderSize + n;
}

Tunnel::Tunnel(const Endpoint& bind_to, int rcvbuf_bytes) : msgs_(kBatch), iovs_(kBatch) {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes);
  sockaddr_in a = bind_to.sockaddr();
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd_);
    throw std::system_error(e, std::generic_category(), "bind " + bind_to.text());
  }
}

Tunnel::~Tunnel() {
  if (fd_ >= 0) ::close(fd_);
}

uint16_t Tunnel::local_port() const {
  sockaddr_in a{};
  socklen_t n = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
  return ntohs(a.sin_port);
}

std::size_t Tunnel::recv_batch(std::vector<Datagram>& out) {
  std::size_t n = std::min(out.size(), msgs_.size());
  for (std::size_t i = 0; i < n; ++i) {
    iovs_[i] = {out[i].bytes, kMaxDatagram};
    msgs_[i] = {};
    msgs_[i].msg_hdr.msg_iov = &iovs_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_hdr.msg_name = &out[i].peer;
    msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
  }
  int got = ::recvmmsg(fd_, msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "recvmmsg");
  }
  for (int i = 0; i < got; ++i) out[i].len = msgs_[i].msg_len;
  return static_cast<std::size_t>(got);
}

std::size_t Tunnel::send_batch(std::vector<Datagram>& dgrams, std::size_t n) {
  std::size_t sent = 0;
  while (sent < n) {
    std::size_t chunk = std::min(n - sent, msgs_.size());
    for (std::size_t i = 0; i < chunk; ++i) {
      Datagram& d = dgrams[sent + i];
      iovs_[i] = {d.bytes, d.len};
      msgs_[i] = {};
      msgs_[i].msg_hdr.msg_iov = &iovs_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &d.peer;
      msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    }
    int got = ::sendmmsg(fd_, msgs_.data(), static_cast<unsigned>(chunk), 0);
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {  // socket full: wait for room
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 10);
        continue;
      }
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "sendmmsg");
    }
    sent += static_cast<std::size_t>(got);
  }
  return sent;
}

}  // namespace chc
