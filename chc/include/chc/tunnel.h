// UDP tunnel endpoint: CHC header + original frame per datagram, batched with recvmmsg/sendmmsg.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chc/header.h"

namespace chc {

constexpr std::size_t kMaxDatagram = 2048;  // header + a 1514-byte frame, with room to spare
constexpr std::size_t kBatch = 32;

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  static Endpoint parse(const std::string& host_port);  // "1.2.3.4:5678"; throws std::invalid_argument
  sockaddr_in sockaddr() const;
  std::string text() const { return host + ":" + std::to_string(port); }
};

// One received or to-be-sent tunnel datagram; `bytes` holds header + frame.
struct Datagram {
  uint8_t bytes[kMaxDatagram];
  std::size_t len = 0;
  sockaddr_in peer{};  // source on receive, destination on send

  Header header() const;  // decoded header (caller checked with valid())
  bool valid() const { return decode(bytes, len).has_value(); }
  uint8_t* frame() { return bytes + kHeaderSize; }
  std::size_t frame_len() const { return len - kHeaderSize; }
  void set(const Header& h, const uint8_t* frame, std::size_t frame_len);  // copies frame in
  void rewrite_header(const Header& h) { encode(h, bytes); }
};

class Tunnel {
 public:
  explicit Tunnel(const Endpoint& bind_to, int rcvbuf_bytes = 4 << 20);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  int fd() const { return fd_; }
  uint16_t local_port() const;
  // Receives up to out.size() datagrams without blocking; returns how many (0 if none waiting).
  std::size_t recv_batch(std::vector<Datagram>& out);
  // Sends datagrams [0, n) (each to its own peer); returns how many the kernel took.
  std::size_t send_batch(std::vector<Datagram>& dgrams, std::size_t n);

 private:
  int fd_ = -1;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
};

}  // namespace chc
