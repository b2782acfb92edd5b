// The CHC tunnel header (docs/chc.md "Header"): what travels before every original frame.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

namespace chc {

constexpr uint8_t kHeaderVersion = 1;
constexpr std::size_t kHeaderSize = 24;
constexpr int kRootIdBits = 8;  // the root instance's id sits in the clock's high bits (§3.4)
constexpr uint64_t kClockCounterMask = (uint64_t{1} << (64 - kRootIdBits)) - 1;

enum Flags : uint8_t {
  kFlagLast = 1 << 0,      // last packet of a moved flow to the old instance (R2, issue 12)
  kFlagFirst = 1 << 1,     // first packet of a moved flow to the new instance (R2)
  kFlagReplayed = 1 << 2,  // replayed from the root's log to a clone (R5/R6)
  kFlagDelete = 1 << 3,    // a delete request to the root (no frame): clock + XOR vector of a finished packet
};

struct Header {
  uint8_t version = kHeaderVersion;
  uint8_t flags = 0;
  uint16_t clone_id = 0;         // 0: the original instance; n: the clone that (re)processed it
  uint16_t origin_instance = 0;  // the instance that emitted this packet
  uint16_t frame_len = 0;        // bytes of the original frame after the header
  uint64_t clock = 0;            // root id (high 8 bits) | per-root packet counter (low 56)
  uint32_t xor_vec = 0;          // XOR of (instance id << 16 | object id) of every update (§3.4.4)
  uint32_t reserved = 0;

  static uint64_t make_clock(uint8_t root_id, uint64_t counter) {
    return (uint64_t{root_id} << (64 - kRootIdBits)) | (counter & kClockCounterMask);
  }
  uint8_t root_id() const { return static_cast<uint8_t>(clock >> (64 - kRootIdBits)); }
  uint64_t counter() const { return clock & kClockCounterMask; }
  void fold_update(uint16_t instance, uint16_t object) {
    xor_vec ^= (uint32_t{instance} << 16) | object;
  }
};

// Writes the header in network byte order into out[0..kHeaderSize).
void encode(const Header& h, uint8_t* out);
// Parses a datagram's header; nullopt if too short, wrong version or frame_len beyond the datagram.
std::optional<Header> decode(const uint8_t* in, std::size_t len);

}  // namespace chc
