#include "chc/packet.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <stdexcept>

namespace chc {

namespace {
uint16_t rd16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return ntohs(v); }
uint32_t rd32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return ntohl(v); }
void wr16(uint8_t* p, uint16_t v) { v = htons(v); std::memcpy(p, &v, 2); }
void wr32(uint8_t* p, uint32_t v) { v = htonl(v); std::memcpy(p, &v, 4); }
constexpr std::size_t kEth = 14;
}  // namespace

std::string ip_text(uint32_t ip) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{htonl(ip)};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

uint32_t ip_parse(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) throw std::invalid_argument("not an IPv4 address: " + text);
  return ntohl(a.s_addr);
}

std::string FiveTuple::key() const {
  return ip_text(src_ip) + ":" + std::to_string(src_port) + ">" + ip_text(dst_ip) + ":" + std::to_string(dst_port) +
         "/" + std::to_string(proto);
}

std::size_t FiveTupleHash::operator()(const FiveTuple& t) const {
  uint64_t a = (uint64_t{t.src_ip} << 32) | t.dst_ip;
  uint64_t b = (uint64_t{t.src_port} << 24) | (uint64_t{t.dst_port} << 8) | t.proto;
  return std::hash<uint64_t>{}(a) ^ (std::hash<uint64_t>{}(b) * 0x9e3779b97f4a7c15ULL);
}

std::optional<Frame> Frame::parse(uint8_t* data, std::size_t len) {
  if (len < kEth + 20 || rd16(data + 12) != 0x0800) return std::nullopt;
  const uint8_t* ip = data + kEth;
  std::size_t ihl = (ip[0] & 0x0f) * 4u;
  if ((ip[0] >> 4) != 4 || ihl < 20 || len < kEth + ihl) return std::nullopt;
  if ((rd16(ip + 6) & 0x3fff) != 0) return std::nullopt;  // fragments carry no complete L4 header
  Frame f;
  f.data = data;
  f.len = std::min<std::size_t>(len, kEth + rd16(ip + 2));
  f.l3 = kEth;
  f.l4 = kEth + ihl;
  f.tuple.proto = ip[9];
  f.tuple.src_ip = rd32(ip + 12);
  f.tuple.dst_ip = rd32(ip + 16);
  if (f.tuple.proto == kProtoTcp) {
    if (f.len < f.l4 + 20) return std::nullopt;
    std::size_t doff = (data[f.l4 + 12] >> 4) * 4u;
    if (doff < 20 || f.len < f.l4 + doff) return std::nullopt;
    f.payload = f.l4 + doff;
    f.tcp_flags = data[f.l4 + 13];
  } else if (f.tuple.proto == kProtoUdp) {
    if (f.len < f.l4 + 8) return std::nullopt;
    f.payload = f.l4 + 8;
  } else {
    return std::nullopt;
  }
  f.tuple.src_port = rd16(data + f.l4);
  f.tuple.dst_port = rd16(data + f.l4 + 2);
  return f;
}

uint16_t csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word) {
  // HC' = ~(~HC + ~m + m'), in one's complement arithmetic
  uint32_t sum = static_cast<uint16_t>(~csum) + static_cast<uint16_t>(~old_word) + uint32_t{new_word};
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t csum_update32(uint16_t csum, uint32_t old_value, uint32_t new_value) {
  csum = csum_update16(csum, static_cast<uint16_t>(old_value >> 16), static_cast<uint16_t>(new_value >> 16));
  return csum_update16(csum, static_cast<uint16_t>(old_value), static_cast<uint16_t>(new_value));
}

namespace {
// The L4 checksum offset, or 0 when the packet has none to maintain (UDP checksum 0 = unused).
std::size_t l4_csum_offset(const Frame& f) {
  if (f.tuple.proto == kProtoTcp) return f.l4 + 16;
  if (rd16(f.data + f.l4 + 6) == 0) return 0;
  return f.l4 + 6;
}

void rewrite(Frame& f, std::size_t ip_off, std::size_t port_off, uint32_t old_ip, uint32_t ip, uint16_t old_port,
             uint16_t port) {
  uint8_t* iph = f.data + f.l3;
  wr16(iph + 10, csum_update32(rd16(iph + 10), old_ip, ip));
  if (std::size_t c = l4_csum_offset(f)) {
    uint16_t sum = csum_update32(rd16(f.data + c), old_ip, ip);  // the pseudo-header holds the addresses
    sum = csum_update16(sum, old_port, port);
    if (f.tuple.proto == kProtoUdp && sum == 0) sum = 0xffff;  // RFC 768: computed 0 is sent as all ones
    wr16(f.data + c, sum);
  }
  wr32(iph + ip_off, ip);
  wr16(f.data + f.l4 + port_off, port);
}
}  // namespace

void Frame::set_src(uint32_t ip, uint16_t port) {
  rewrite(*this, 12, 0, tuple.src_ip, ip, tuple.src_port, port);
  tuple.src_ip = ip;
  tuple.src_port = port;
}

void Frame::set_dst(uint32_t ip, uint16_t port) {
  rewrite(*this, 16, 2, tuple.dst_ip, ip, tuple.dst_port, port);
  tuple.dst_ip = ip;
  tuple.dst_port = port;
}

}  // namespace chc
