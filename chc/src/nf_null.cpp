// The null NF: forwards every packet untouched. It measures what the tunnel path itself carries.
#include "chc/nf.h"

namespace chc {
namespace {
class NullNF : public NetworkFunction {
 public:
  std::vector<std::string> scopes() const override { return {"5tuple"}; }
  void setup(State&) override {}
  void process(PacketCtx&, State&) override {}
  std::string report(State&) override { return ""; }
};
}  // namespace

std::unique_ptr<NetworkFunction> make_null(const Config&) { return std::make_unique<NullNF>(); }
}  // namespace chc
