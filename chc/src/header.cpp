#include "chc/header.h"

#include <arpa/inet.h>
#include <endian.h>

#include <cstring>

namespace chc {

namespace {
void put16(uint8_t* p, uint16_t v) { v = htons(v); std::memcpy(p, &v, 2); }
void put32(uint8_t* p, uint32_t v) { v = htonl(v); std::memcpy(p, &v, 4); }
void put64(uint8_t* p, uint64_t v) { v = htobe64(v); std::memcpy(p, &v, 8); }
uint16_t get16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return ntohs(v); }
uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return ntohl(v); }
uint64_t get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return be64toh(v); }
}  // namespace

void encode(const Header& h, uint8_t* out) {
  out[0] = h.version;
  out[1] = h.flags;
  put16(out + 2, h.clone_id);
  put16(out + 4, h.origin_instance);
  put16(out + 6, h.frame_len);
  put64(out + 8, h.clock);
  put32(out + 16, h.xor_vec);
  put32(out + 20, h.reserved);
}

std::optional<Header> decode(const uint8_t* in, std::size_t len) {
  if (len < kHeaderSize || in[0] != kHeaderVersion) return std::nullopt;
  Header h;
  h.version = in[0];
  h.flags = in[1];
  h.clone_id = get16(in + 2);
  h.origin_instance = get16(in + 4);
  h.frame_len = get16(in + 6);
  h.clock = get64(in + 8);
  h.xor_vec = get32(in + 16);
  h.reserved = get32(in + 20);
  if (kHeaderSize + h.frame_len > len) return std::nullopt;
  return h;
}

}  // namespace chc
