#include "chc/cli.h"

#include <algorithm>
#include <sstream>

namespace chc {

Args::Args(int argc, char** argv, const std::vector<std::string>& known) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument: " + a);
    std::string name = a.substr(2);
    if (std::find(known.begin(), known.end(), name) == known.end())
      throw std::invalid_argument("unknown option --" + name);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      values_[name] = argv[++i];
    } else {
      values_[name] = "1";
    }
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::need(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::invalid_argument("missing --" + name);
  return it->second;
}

long long Args::num(const std::string& name, long long fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw std::invalid_argument("--" + name + " needs a number, got " + it->second);
  }
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<StoreNode> parse_store_nodes(const std::string& list) {
  std::vector<StoreNode> nodes;
  for (const auto& hp : split(list, ',')) {
    auto colon = hp.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("store node needs host:port: " + hp);
    nodes.push_back({hp.substr(0, colon), std::stoi(hp.substr(colon + 1))});
  }
  return nodes;
}

std::string format_reply(const Reply& r) {
  switch (r.type) {
    case Reply::Type::Integer: return "i:" + std::to_string(r.integer);
    case Reply::Type::String:
    case Reply::Type::Status: return "s:" + r.str;
    case Reply::Type::Error: return "e:" + r.str;
    case Reply::Type::Nil: return "nil";
    case Reply::Type::Array: {
      std::string s = "[";
      for (std::size_t i = 0; i < r.elements.size(); ++i) s += (i ? "," : "") + format_reply(r.elements[i]);
      return s + "]";
    }
  }
  return "?";
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string unhex(const std::string& text) {
  if (text.size() % 2) throw std::invalid_argument("odd-length hex: " + text);
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 2) out.push_back(static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace chc
