#include "chc/monotonic.h"
#include "chc/replica.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sstream>
#include <stdexcept>
#include <system_error>

namespace chc {
std::string encode_ops(const std::vector<ReplicaOp>& ops) {
  std::string out;
  for (const auto& o : ops) {
    if (o.arg.find_first_of(", ") != std::string::npos) throw std::invalid_argument("replica op argument with , or space: " + o.arg);
    if (!out.empty()) out += ',';
    out += std::to_string(o.obj) + ":" + o.op + ":" + o.arg;
  }
  return out;
}

std::vector<ReplicaOp> decode_ops(const std::string& text) {
  std::vector<ReplicaOp> ops;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    auto a = item.find(':'), b = a == std::string::npos ? a : item.find(':', a + 1);
    if (b == std::string::npos) throw std::invalid_argument("bad replica op " + item);
    ops.push_back({static_cast<uint16_t>(std::stoi(item.substr(0, a))), item.substr(a + 1, b - a - 1), item.substr(b + 1)});
  }
  return ops;
}

ReplicaClient::ReplicaClient(const Endpoint& controller, uint16_t instance, Apply apply, int retransmit_ms)
    : controller_(controller.sockaddr()), instance_(instance), apply_(std::move(apply)), retransmit_ms_(retransmit_ms) {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
  // connect: the kernel filters out datagrams from anyone but the controller
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&controller_), sizeof controller_) != 0)
    throw std::system_error(errno, std::generic_category(), "connect to the OpenNF controller " + controller.text());
}

ReplicaClient::~ReplicaClient() {
  if (fd_ >= 0) ::close(fd_);
}

void ReplicaClient::send(const std::string& msg) {
  // ECONNREFUSED (the controller not up yet) is retried by the callers' timers
  if (::send(fd_, msg.data(), msg.size(), 0) < 0 && errno != ECONNREFUSED && errno != EAGAIN)
    throw std::system_error(errno, std::generic_category(), "send to the OpenNF controller");
}

bool ReplicaClient::receive_one(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
  if (r <= 0) return false;
  char buf[kMaxDatagram];
  ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == ECONNREFUSED || errno == EINTR) return true;
    throw std::system_error(errno, std::generic_category(), "recv from the OpenNF controller");
  }
  handle(std::string(buf, static_cast<std::size_t>(n)));
  return true;
}

void ReplicaClient::handle(const std::string& msg) {
  std::istringstream in(msg);
  std::string kind;
  in >> kind;
  if (kind == "h") {
    registered_ = true;
  } else if (kind == "A") {
    uint64_t gseq;
    unsigned origin;
    uint32_t seq;
    std::string ops;
    in >> gseq >> origin >> seq >> ops;
    if (gseq == applied_gseq_ + 1) {
      std::vector<std::optional<std::string>> results;
      for (const auto& op : decode_ops(ops)) results.push_back(apply_(op));
      applied_gseq_ = gseq;
      ++stats_.applied;
      if (origin == instance_ && seq == seq_) results_ = std::move(results);
    } else if (gseq > applied_gseq_ + 1) {  // the controller sends gseq only after all acked gseq - 1
      throw std::runtime_error("OpenNF controller skipped updates: got " + std::to_string(gseq) + " after " +
                               std::to_string(applied_gseq_));
    }
    send("K " + std::to_string(gseq) + " " + std::to_string(instance_));  // also for a retransmission
  } else if (kind == "R") {
    uint32_t seq;
    in >> seq;
    if (seq == seq_) released_ = true;
  } else {
    throw std::runtime_error("unknown OpenNF controller message: " + msg);
  }
}

void ReplicaClient::register_with_controller(int timeout_ms) {
  const uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  while (!registered_) {
    if (now_ns() > deadline) throw std::runtime_error("the OpenNF controller did not answer the registration");
    send("H " + std::to_string(instance_));
    receive_one(retransmit_ms_);
  }
}

std::vector<std::optional<std::string>> ReplicaClient::execute(const std::vector<ReplicaOp>& ops) {
  const uint64_t t0 = now_ns();
  ++seq_;
  released_ = false;
  results_.clear();
  const std::string msg = "U " + std::to_string(instance_) + " " + std::to_string(seq_) + " " + encode_ops(ops);
  send(msg);
  uint64_t resend_at = t0 + static_cast<uint64_t>(retransmit_ms_) * 1000000ull;
  while (!released_) {
    if (!receive_one(retransmit_ms_) || now_ns() >= resend_at) {
      if (now_ns() >= resend_at) {
        send(msg);
        ++stats_.retransmissions;
        resend_at = now_ns() + static_cast<uint64_t>(retransmit_ms_) * 1000000ull;
      }
    }
  }
  ++stats_.executed;
  stats_.wait_ns += now_ns() - t0;
  return results_;
}

void ReplicaClient::poll() {
  while (receive_one(0)) {
  }
}

}  // namespace chc
