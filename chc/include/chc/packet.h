// Views into an Ethernet/IPv4/TCP|UDP frame: the 5-tuple, and in-place rewrites with incremental
// checksum updates (RFC 1624), so an NF never recomputes a checksum over the payload.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace chc {

struct FiveTuple {
  uint32_t src_ip = 0, dst_ip = 0;  // host byte order
  uint16_t src_port = 0, dst_port = 0;
  uint8_t proto = 0;
  bool operator==(const FiveTuple& o) const {
    return src_ip == o.src_ip && dst_ip == o.dst_ip && src_port == o.src_port && dst_port == o.dst_port &&
           proto == o.proto;
  }
  std::string key() const;  // "src:sport>dst:dport/proto", used in state keys
};

struct FiveTupleHash {
  std::size_t operator()(const FiveTuple& t) const;
};

constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17;
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

// A parsed frame; offsets point into the caller's buffer (which must outlive the view).
struct Frame {
  uint8_t* data = nullptr;
  std::size_t len = 0;
  std::size_t l3 = 0, l4 = 0, payload = 0;  // offsets of IPv4 header, L4 header, L4 payload
  FiveTuple tuple;
  uint8_t tcp_flags = 0;

  // nullopt unless Ethernet + IPv4 (no fragments) + complete TCP/UDP header.
  static std::optional<Frame> parse(uint8_t* data, std::size_t len);
  std::size_t payload_len() const { return len - payload; }

  // Rewrites keep the IPv4 header checksum and the TCP/UDP checksum valid incrementally.
  void set_src(uint32_t ip, uint16_t port);
  void set_dst(uint32_t ip, uint16_t port);
};

// RFC 1624 eqn. 3: the checksum after a 16-bit field changed from old_word to new_word.
uint16_t csum_update16(uint16_t csum, uint16_t old_word, uint16_t new_word);
uint16_t csum_update32(uint16_t csum, uint32_t old_value, uint32_t new_value);

std::string ip_text(uint32_t ip);
uint32_t ip_parse(const std::string& text);  // throws std::invalid_argument

}  // namespace chc
