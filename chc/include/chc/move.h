// R2 (§3.4.1, Fig 3.7): moving flows between instances of one vertex. A move takes the flows that
// the splitter's base rule sends to downstream `from_index` and whose scope hash falls in buckets
// [0, hi) of kMoveBuckets, and sends them to `to_index` instead. The splitter marks the move's start
// with a "last" marker to the old instance and a "first" marker to the new one (header flags, no
// frame: the move's text below as payload), so both instances can tell a moved packet by its hash.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "chc/packet.h"

namespace chc {

constexpr uint64_t kMoveBuckets = 4096;

struct Move {
  uint32_t id = 0;
  std::string scope = "5tuple";
  uint32_t base_n = 1;      // instances of the splitter's base rule
  uint32_t from_index = 0;  // downstream index (at the splitter) of the old instance
  uint32_t to_index = 0;    // downstream index of the new instance
  uint16_t from_instance = 0;  // the old instance's id: its per-flow keys hold the moved state
  uint32_t hi = 0;          // buckets [0, hi) move

  bool covers_hash(uint64_t h) const { return h % base_n == from_index && h % kMoveBuckets < hi; }
  bool covers(const FiveTuple& t) const;
  // "move ID SCOPE BASE_N FROM TO FROM_INSTANCE HI": the markers' payload and the control command's tail.
  std::string encode() const;
  static Move parse(const std::string& text);  // throws std::invalid_argument
  // The store key the old instance writes when it released the moved state (the handover signal).
  std::string handover_key(uint16_t vertex) const;
};

// A marker datagram's move, if the payload is one (flags kFlagLast or kFlagFirst, not kFlagReplayed).
std::optional<Move> marker_move(const uint8_t* payload, std::size_t len);

}  // namespace chc
