#include <stdexcept>

#include "chc/cli.h"
#include "chc/nf.h"

namespace chc {

std::unique_ptr<NetworkFunction> make_nat(const Config& config);
std::unique_ptr<NetworkFunction> make_forward(const Config& config);
std::unique_ptr<NetworkFunction> make_portscan(const Config& config);
std::unique_ptr<NetworkFunction> make_trojan(const Config& config);
std::unique_ptr<NetworkFunction> make_lb(const Config& config);
std::unique_ptr<NetworkFunction> make_scrub(const Config& config);

Config parse_config(const std::string& text) {
  Config c;
  for (const auto& kv : split(text, ',')) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--config entries are k=v, got " + kv);
    c[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return c;
}

std::unique_ptr<NetworkFunction> make_nf(const std::string& type, const Config& config) {
  if (type == "nat") return make_nat(config);
  if (type == "forward") return make_forward(config);
  if (type == "portscan") return make_portscan(config);
  if (type == "trojan") return make_trojan(config);
  if (type == "lb") return make_lb(config);
  if (type == "scrub") return make_scrub(config);
  throw std::invalid_argument("unknown NF type " + type + " (nat, portscan, trojan, lb, forward, scrub)");
}

}  // namespace chc
