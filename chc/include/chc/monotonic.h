// CLOCK_MONOTONIC in ns: one clock for every process and namespace of the host, so the harness can
// join timestamps of the root, the instances and the sink.
#pragma once
#include <time.h>

#include <cstdint>

namespace chc {

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace chc
