// The forward NF (a null NF): forwards every packet untouched; it measures what the tunnel path carries.
#include "chc/nf.h"

namespace chc {
namespace {
class ForwardNF : public NetworkFunction {
 public:
  std::vector<std::string> scopes() const override { return {"5tuple"}; }
  void setup(State&) override {}
  void process(PacketCtx&, State&) override {}
  std::string report(State&) override { return ""; }
};
}  // namespace

std::unique_ptr<NetworkFunction> make_forward(const Config&) { return std::make_unique<ForwardNF>(); }
}  // namespace chc
