#include "chc/move.h"

#include <sstream>
#include <stdexcept>

#include "chc/splitter.h"

namespace chc {

bool Move::covers(const FiveTuple& t) const { return covers_hash(scope_hash(scope, t)); }

std::string Move::encode() const {
  std::ostringstream s;
  s << "move " << id << " " << scope << " " << base_n << " " << from_index << " " << to_index << " " << from_instance
    << " " << hi;
  return s.str();
}

Move Move::parse(const std::string& text) {
  std::istringstream in(text);
  std::string word;
  Move m;
  unsigned from_instance = 0;
  if (!(in >> word) || word != "move" ||
      !(in >> m.id >> m.scope >> m.base_n >> m.from_index >> m.to_index >> from_instance >> m.hi))
    throw std::invalid_argument("a move is 'move ID SCOPE BASE_N FROM TO FROM_INSTANCE HI', got: " + text);
  scope_hash(m.scope, FiveTuple{});  // validates the scope
  if (m.base_n == 0 || m.from_index >= m.base_n || m.to_index == m.from_index || m.hi > kMoveBuckets ||
      from_instance == 0 || from_instance > 0xffff)
    throw std::invalid_argument("bad move (FROM < BASE_N, TO != FROM, HI <= 4096, FROM_INSTANCE 1..65535): " + text);
  m.from_instance = static_cast<uint16_t>(from_instance);
  return m;
}

std::string Move::handover_key(uint16_t vertex) const {
  return "chc:{v" + std::to_string(vertex) + ":move:" + std::to_string(id) + "}";
}

std::optional<Move> marker_move(const uint8_t* payload, std::size_t len) {
  std::string text(reinterpret_cast<const char*>(payload), len);
  if (text.rfind("move ", 0) != 0) return std::nullopt;
  return Move::parse(text);
}

}  // namespace chc
