// A scrubber (R4, §3.6.3, Fig 3.2): forwards every packet untouched, and on the instances named in
// `delayed` first spends a random 50-100 µs on it (config delay_us=LO-HI), emulating an upstream NF
// that is slower than its siblings. The time is spent in process(), so the instance stays FIFO and
// later packets queue behind a slow one -- what a slower NF does to the packets behind it.
//   config: delay_us=50-100 (default), delayed=1|3 (instance ids; default none: a plain forwarder)
#include <time.h>

#include <random>
#include <set>
#include <stdexcept>

#include "chc/cli.h"
#include "chc/nf.h"

namespace chc {
namespace {

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class Scrubber : public NetworkFunction {
 public:
  explicit Scrubber(const Config& config) {
    auto get = [&config](const std::string& k, const std::string& d) {
      auto it = config.find(k);
      return it == config.end() ? d : it->second;
    };
    auto range = split(get("delay_us", "50-100"), '-');
    if (range.size() != 2) throw std::invalid_argument("scrub: delay_us must be LO-HI");
    lo_ns_ = std::stoull(range[0]) * 1000;
    hi_ns_ = std::stoull(range[1]) * 1000;
    if (lo_ns_ > hi_ns_) throw std::invalid_argument("scrub: delay_us LO must be <= HI");
    for (const auto& id : split(get("delayed", ""), '|'))
      if (!id.empty()) delayed_.insert(static_cast<uint16_t>(std::stoul(id)));
  }
  std::vector<std::string> scopes() const override { return {"5tuple", "service"}; }
  void setup(State& s) override {
    slow_ = delayed_.count(s.instance()) != 0;
    rng_.seed(s.instance());
  }
  void process(PacketCtx&, State&) override {
    if (!slow_) return;
    std::uniform_int_distribution<uint64_t> d(lo_ns_, hi_ns_);
    const uint64_t until = mono_ns() + d(rng_);
    while (mono_ns() < until) {
    }
    ++delayed_packets_;
  }
  std::string report(State&) override {
    return "delayed_packets " + std::to_string(delayed_packets_) + "\n";
  }

 private:
  uint64_t lo_ns_ = 0, hi_ns_ = 0, delayed_packets_ = 0;
  std::set<uint16_t> delayed_;
  bool slow_ = false;
  std::mt19937_64 rng_;
};

}  // namespace

std::unique_ptr<NetworkFunction> make_scrub(const Config& config) { return std::make_unique<Scrubber>(config); }

}  // namespace chc
