// Tiny helpers shared by the tools: --flag value parsing and store endpoint lists.
#pragma once
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "chc/store.h"

namespace chc {

// "--name value" pairs (and bare "--name" switches, value "1"); unknown names are the caller's to reject.
class Args {
 public:
  Args(int argc, char** argv, const std::vector<std::string>& known);
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string need(const std::string& name) const;
  long long num(const std::string& name, long long fallback) const;
  bool has(const std::string& name) const { return values_.count(name) != 0; }

 private:
  std::map<std::string, std::string> values_;
};

std::vector<std::string> split(const std::string& text, char sep);
std::vector<StoreNode> parse_store_nodes(const std::string& list);  // "h:p,h:p"
std::string format_reply(const Reply& r);  // i:5 s:text nil e:msg [a,b]
std::string hex(const std::string& bytes);    // lower-case, two digits per byte
std::string unhex(const std::string& text);   // throws std::invalid_argument

}  // namespace chc
