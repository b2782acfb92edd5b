// The OpenNF-style controller of the strongly consistent shared-state baseline (§3.6.3 R3,
// chc/include/chc/replica.h has the protocol): instances register, then send each packet's shared
// updates; the controller takes one update at a time in arrival order (the global order), forwards it
// to every registered instance, and releases the sender once all of them acknowledged it.
//   chc-opennf-ctl --listen IP:PORT --instances N [--retransmit-ms MS]
// SIGTERM/SIGINT end it; it prints a JSON summary: updates, forwards, retransmissions and the time
// from an update's arrival to its release (median, p95, mean; µs).
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "chc/monotonic.h"
#include "chc/cli.h"
#include "chc/tunnel.h"

using chc::now_ns;

namespace {
volatile sig_atomic_t stop_requested = 0;
void on_stop(int) { stop_requested = 1; }

struct Update {
  unsigned origin;
  uint32_t seq;
  std::string ops;
  uint64_t arrived_ns;
};

class Controller {
 public:
  Controller(const chc::Endpoint& listen, std::size_t instances, int retransmit_ms)
      : want_(instances), retransmit_ns_(static_cast<uint64_t>(retransmit_ms) * 1000000ull) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    int buf = 4 << 20;
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    sockaddr_in a = listen.sockaddr();
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::system_error(errno, std::generic_category(), "bind " + listen.text());
  }
  ~Controller() { ::close(fd_); }

  void run() {
    while (!stop_requested) {
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, current_ ? 1 : 100);
      if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
      if (r > 0) receive();
      if (current_ && now_ns() >= resend_at_) {  // a lost forward or ACK: send again to the missing
        for (const auto& [inst, addr] : instances_)
          if (!acked_.count(inst)) {
            forward(addr);
            ++retransmissions_;
          }
        resend_at_ = now_ns() + retransmit_ns_;
      }
    }
  }

  void summary() const {
    std::vector<uint64_t> h = holds_;
    std::sort(h.begin(), h.end());
    auto q = [&](double f) { return h.empty() ? 0.0 : h[std::min(h.size() - 1, std::size_t(f * (h.size() - 1) + 0.5))] / 1e3; };
    double mean = 0;
    for (auto v : h) mean += static_cast<double>(v);
    mean = h.empty() ? 0 : mean / static_cast<double>(h.size()) / 1e3;
    std::printf("{\"instances\":%zu,\"updates\":%llu,\"forwards\":%llu,\"retransmissions\":%llu,"
                "\"hold_median_us\":%.3f,\"hold_p95_us\":%.3f,\"hold_mean_us\":%.3f}\n",
                instances_.size(), (unsigned long long)gseq_, (unsigned long long)forwards_,
                (unsigned long long)retransmissions_, q(0.5), q(0.95), mean);
  }

 private:
  void send_to(const sockaddr_in& to, const std::string& msg) {
    ::sendto(fd_, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  }
  void forward(const sockaddr_in& to) {
    send_to(to, "A " + std::to_string(gseq_) + " " + std::to_string(current_->origin) + " " +
                    std::to_string(current_->seq) + " " + current_->ops);
    ++forwards_;
  }

  void receive() {
    char buf[chc::kMaxDatagram + 1];
    sockaddr_in from{};
    socklen_t flen = sizeof from;
    ssize_t n = ::recvfrom(fd_, buf, chc::kMaxDatagram, 0, reinterpret_cast<sockaddr*>(&from), &flen);
    if (n <= 0) return;
    std::istringstream in(std::string(buf, static_cast<std::size_t>(n)));
    std::string kind;
    in >> kind;
    if (kind == "H") {
      unsigned inst;
      in >> inst;
      instances_[inst] = from;
      send_to(from, "h");
      start_next();
    } else if (kind == "U") {
      Update u{0, 0, "", now_ns()};
      in >> u.origin >> u.seq >> u.ops;
      uint32_t& last = last_seq_[u.origin];
      if (u.seq <= last) {  // a retransmission: released already, or queued / in progress
        if (released_seq_[u.origin] >= u.seq) send_to(from, "R " + std::to_string(u.seq));
        return;
      }
      last = u.seq;
      queue_.push_back(u);
      start_next();
    } else if (kind == "K") {
      uint64_t gseq;
      unsigned inst;
      in >> gseq >> inst;
      if (!current_ || gseq != gseq_) return;
      acked_.insert(inst);
      if (acked_.size() == instances_.size()) release();
    }
  }

  void start_next() {
    // Updates wait until every instance has registered: each must apply the whole global order.
    if (current_ || queue_.empty() || instances_.size() < want_) return;
    current_ = queue_.front();
    queue_.pop_front();
    ++gseq_;
    acked_.clear();
    for (const auto& [inst, addr] : instances_) forward(addr);
    resend_at_ = now_ns() + retransmit_ns_;
  }

  void release() {
    auto it = instances_.find(current_->origin);
    if (it != instances_.end()) send_to(it->second, "R " + std::to_string(current_->seq));
    released_seq_[current_->origin] = current_->seq;
    holds_.push_back(now_ns() - current_->arrived_ns);
    current_.reset();
    start_next();
  }

  int fd_ = -1;
  std::size_t want_;
  uint64_t retransmit_ns_;
  std::map<unsigned, sockaddr_in> instances_;
  std::map<unsigned, uint32_t> last_seq_, released_seq_;
  std::deque<Update> queue_;
  std::optional<Update> current_;
  std::set<unsigned> acked_;
  uint64_t gseq_ = 0, forwards_ = 0, retransmissions_ = 0, resend_at_ = 0;
  std::vector<uint64_t> holds_;
};
}  // namespace

int main(int argc, char** argv) try {
  chc::Args args(argc, argv, {"listen", "instances", "retransmit-ms"});
  const long long instances = args.num("instances", 0);
  if (instances < 1) throw std::invalid_argument("--instances N (N >= 1) is required");
  struct sigaction sa {};
  sa.sa_handler = on_stop;  // no SA_RESTART: poll returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  Controller c(chc::Endpoint::parse(args.need("listen")), static_cast<std::size_t>(instances),
               static_cast<int>(args.num("retransmit-ms", 20)));
  std::printf("{\"listening\":true}\n");
  std::fflush(stdout);
  c.run();
  c.summary();
  return 0;
} catch (const std::exception& e) {
  std::cerr << "chc-opennf-ctl: " << e.what() << "\n";
  return 2;
}
