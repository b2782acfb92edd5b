// Unit tests of the header codec, checksum updates, slots and the UDP tunnel (run by tests/chc).
#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <vector>

#include "chc/header.h"
#include "chc/move.h"
#include "chc/splitter.h"
#include "chc/packet.h"
#include "chc/replica.h"
#include "chc/state.h"
#include "chc/store.h"
#include "chc/tunnel.h"

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

// Full one's complement sum over a buffer (reference for the incremental updates).
static uint16_t csum(const uint8_t* p, std::size_t n, uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

static std::vector<uint8_t> tcp_frame() {
  std::vector<uint8_t> f(14 + 20 + 20 + 5, 0);
  f[12] = 0x08;
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  ip[2] = 0; ip[3] = 20 + 20 + 5;
  ip[8] = 64; ip[9] = 6;
  uint32_t s = htonl(chc::ip_parse("198.18.32.10")), d = htonl(chc::ip_parse("198.18.40.1"));
  std::memcpy(ip + 12, &s, 4);
  std::memcpy(ip + 16, &d, 4);
  uint8_t* tcp = ip + 20;
  tcp[0] = 0x30; tcp[1] = 0x39;  // 12345
  tcp[2] = 0x00; tcp[3] = 0x50;  // 80
  tcp[12] = 0x50; tcp[13] = chc::kTcpSyn;
  std::memcpy(tcp + 20, "hello", 5);
  uint16_t ipc = csum(ip, 20);
  ip[10] = ipc >> 8; ip[11] = ipc & 0xff;
  return f;
}

static uint16_t tcp_csum_reference(const uint8_t* ip) {
  std::size_t l4len = ((ip[2] << 8) | ip[3]) - 20;
  std::vector<uint8_t> buf(12 + l4len);
  std::memcpy(buf.data(), ip + 12, 8);
  buf[9] = 6; buf[10] = l4len >> 8; buf[11] = l4len & 0xff;
  std::memcpy(buf.data() + 12, ip + 20, l4len);
  buf[12 + 16] = buf[12 + 17] = 0;
  return csum(buf.data(), buf.size());
}

int main() {
  // header round trip, network byte order, clock layout
  chc::Header h;
  h.flags = chc::kFlagLast | chc::kFlagReplayed;
  h.clone_id = 2;
  h.origin_instance = 513;
  h.frame_len = 60;
  h.clock = chc::Header::make_clock(3, 123456789);
  h.fold_update(7, 1);
  h.fold_update(9, 2);
  h.fold_update(7, 1);  // the same (instance, object) twice cancels out
  uint8_t buf[chc::kHeaderSize + 60] = {};
  chc::encode(h, buf);
  CHECK(buf[0] == chc::kHeaderVersion && buf[8] == 3);  // root id in the clock's top byte
  auto d = chc::decode(buf, sizeof buf);
  CHECK(d && d->clock == h.clock && d->root_id() == 3 && d->counter() == 123456789);
  CHECK(d && d->flags == h.flags && d->clone_id == 2 && d->origin_instance == 513 && d->frame_len == 60);
  CHECK(d && d->xor_vec == ((9u << 16) | 2));
  CHECK(!chc::decode(buf, chc::kHeaderSize + 10));  // frame_len beyond the datagram

  // 5-tuple and incremental checksums against full recomputation
  auto f = tcp_frame();
  uint8_t* ip = f.data() + 14;
  ip[20 + 16] = tcp_csum_reference(ip) >> 8;
  ip[20 + 17] = tcp_csum_reference(ip) & 0xff;
  auto fr = chc::Frame::parse(f.data(), f.size());
  CHECK(fr && fr->tuple.src_port == 12345 && fr->tuple.dst_port == 80 && fr->tuple.proto == 6);
  CHECK(fr && fr->tcp_flags == chc::kTcpSyn && fr->payload_len() == 5);
  fr->set_src(chc::ip_parse("198.18.47.254"), 40001);
  CHECK(csum(ip, 20) == 0);  // a valid header sums to 0xffff
  uint16_t got = static_cast<uint16_t>((ip[36] << 8) | ip[37]);
  CHECK(got == tcp_csum_reference(ip));
  CHECK(chc::Frame::parse(f.data(), f.size())->tuple.src_port == 40001);

  // slots agree with Redis Cluster (CLUSTER KEYSLOT values)
  CHECK(chc::key_slot("foo") == 12182);
  CHECK(chc::key_slot("{user1000}.following") == chc::key_slot("{user1000}.followers"));
  CHECK(chc::key_slot("123456789") == (0x31C3 & 16383));

  // tunnel: a batch through loopback keeps bytes and order
  chc::Tunnel a(chc::Endpoint::parse("127.0.0.1:0")), b(chc::Endpoint::parse("127.0.0.1:0"));
  std::vector<chc::Datagram> out(40), in(chc::kBatch);
  sockaddr_in to = chc::Endpoint{"127.0.0.1", b.local_port()}.sockaddr();
  for (int i = 0; i < 40; ++i) {
    chc::Header hh;
    hh.clock = chc::Header::make_clock(1, i);
    out[i].set(hh, f.data(), f.size());
    out[i].peer = to;
  }
  CHECK(a.send_batch(out, 40) == 40);
  std::size_t total = 0;
  uint64_t expect = 0;
  for (int spin = 0; spin < 1000 && total < 40; ++spin) {
    std::size_t n = b.recv_batch(in);
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(in[i].valid() && in[i].header().counter() == expect++);
      CHECK(in[i].frame_len() == f.size() && std::memcmp(in[i].frame(), f.data(), f.size()) == 0);
    }
    total += n;
  }
  CHECK(total == 40);

  // OpenNF baseline: one packet's shared ops survive the wire format; the replicated copy applies them
  std::vector<chc::ReplicaOp> ops{{3, "add", "1"}, {2, "add", "-4"}, {1, "pop", ""}, {1, "push", "10007"}};
  auto back = chc::decode_ops(chc::encode_ops(ops));
  CHECK(back.size() == 4 && back[1].obj == 2 && back[1].arg == "-4" && back[2].op == "pop" && back[2].arg.empty());
  CHECK(back[3].op == "push" && back[3].arg == "10007");
  bool refused = false;
  try {
    chc::encode_ops({{1, "push", "a,b"}});
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused);
  chc::State st(chc::Model::Traditional, nullptr, 1, 2);
  st.declare({1, "ports", chc::Scope::CrossFlow, chc::Access::ReadWriteOften});
  st.declare({3, "total", chc::Scope::CrossFlow, chc::Access::WriteMostly});
  st.list_init(1, {"10000", "10001"});
  CHECK(st.apply_replicated({1, "pop", ""}) == std::optional<std::string>("10000"));
  st.apply_replicated({3, "add", "5"});
  st.apply_replicated({3, "add", "2"});
  CHECK(st.counter_read(3) == 7);
  CHECK(st.apply_replicated({1, "pop", ""}) == std::optional<std::string>("10001"));
  CHECK(!st.apply_replicated({1, "pop", ""}));  // empty list: no port

  // R2 moves: the flow hash (nfvlab.chc.flowhash computes the same value), the text form, the splitter
  chc::FiveTuple ft{chc::ip_parse("198.18.32.10"), chc::ip_parse("198.18.40.1"), 12345, 80, chc::kProtoTcp};
  chc::FiveTuple rev{ft.dst_ip, ft.src_ip, ft.dst_port, ft.src_port, chc::kProtoTcp};
  CHECK(chc::scope_hash("5tuple", ft) == 0xc7fe2d2b16636046ULL && chc::scope_hash("5tuple", rev) == 0xc7fe2d2b16636046ULL);
  chc::Move mv = chc::Move::parse("move 7 5tuple 1 0 1 3 2048");
  CHECK(mv.id == 7 && mv.from_instance == 3 && mv.hi == 2048 && chc::Move::parse(mv.encode()).encode() == mv.encode());
  CHECK(mv.handover_key(2) == "chc:{v2:move:7}");
  for (const char* bad : {"move 1 5tuple 1 0 0 1 10", "move 1 5tuple 1 0 1 0 10", "move 1 5tuple 1 0 1 1 5000",
                          "move 1 bogus 1 0 1 1 10", "move 1 5tuple", "moved 1 5tuple 1 0 1 1 10"}) {
    bool threw = false;
    try {
      chc::Move::parse(bad);
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK(threw);
  }
  CHECK(!chc::marker_move(reinterpret_cast<const uint8_t*>("hello"), 5));
  chc::Splitter sp;
  sp.set_rule("5tuple", {chc::Endpoint::parse("198.18.0.1:1")});
  CHECK(sp.add_downstream(chc::Endpoint::parse("198.18.0.2:1")) == 1 && sp.base_count() == 1 && sp.size() == 2);
  std::size_t moved = 0, kept = 0, wrong = 0;
  for (uint16_t port = 1000; port < 3000; ++port) {
    chc::FiveTuple t = ft;
    t.src_port = port;
    CHECK(sp.pick(t) == 0);  // before the move: everything at the base instance
  }
  chc::Move half = chc::Move::parse("move 1 5tuple 1 0 1 1 2048");
  sp.add_move(half);
  for (uint16_t port = 1000; port < 3000; ++port) {
    chc::FiveTuple t = ft;
    t.src_port = port;
    std::size_t i = sp.pick(t);
    (i == 1 ? moved : kept)++;
    if ((i == 1) != half.covers(t)) ++wrong;
  }
  CHECK(wrong == 0 && moved > 800 && kept > 800);  // about half the flows move, exactly those it covers
  bool misfit = false;
  try {
    sp.add_move(chc::Move::parse("move 2 5tuple 2 0 1 1 10"));  // this splitter has one base instance
  } catch (const std::invalid_argument&) {
    misfit = true;
  }
  CHECK(misfit);

  if (failures) return 1;
  std::printf("test_dataplane: all checks passed\n");
  return 0;
}
