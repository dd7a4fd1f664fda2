// Writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/). Not part of
// the normal build; after a schema or format change, regenerate with
//   ninja -C BUILD kronop_fuzz_seeds && BUILD/tests/fuzz/kronop_fuzz_seeds tests/fuzz/corpus
// Envelopes are serialized with the generated protobuf classes, so the seeds are what the
// schema says a record is; ring seeds follow the input layout in ring_record_fuzz.cc.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "kronop/ipc/segment_layout.h"
#include "kronop/v1/control.pb.h"
#include "kronop/v1/envelope.pb.h"

namespace fs = std::filesystem;
namespace ipc = kronop::ipc;
using kronop::v1::Envelope;

namespace {

bool write_file(const fs::path &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

Envelope base(const std::string &topic, const std::string &event, uint64_t seq) {
  Envelope e;
  e.set_topic(topic);
  e.set_event(event);
  e.set_producer_id(0x1122334455667788ULL);
  e.set_producer_seq(seq);
  e.set_publish_time_ns(1700000000000000000ULL);
  return e;
}

std::string json_envelope(const std::string &topic, const std::string &event,
                          const std::string &json, uint64_t seq = 1) {
  Envelope e = base(topic, event, seq);
  e.set_json(json);
  return e.SerializeAsString();
}

// The identity trailer libipc appends to kronop_publish_envelope's input (fields 3, 4, 5
// again: the last occurrence wins).
std::string identity_trailer(uint64_t id, uint64_t seq, uint64_t time_ns) {
  Envelope e;
  e.set_producer_id(id);
  e.set_producer_seq(seq);
  e.set_publish_time_ns(time_ns);
  return e.SerializeAsString();
}

void put_u64(std::string &out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

std::string ring_record(uint32_t kind, const std::string &body) {
  ipc::RecordHeader hdr{static_cast<uint32_t>(body.size()), kind};
  std::string out(reinterpret_cast<const char *>(&hdr), sizeof hdr);
  out += body;
  out.resize(ipc::align_record(out.size()), '\0');
  return out;
}

struct RingMove {
  uint8_t op;
  uint64_t delta;
};

std::string ring_input(uint64_t release_pos, uint64_t write_delta, uint8_t flags,
                       std::initializer_list<RingMove> moves, const std::string &data) {
  std::string out;
  put_u64(out, release_pos);
  put_u64(out, write_delta);
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(moves.size()));
  for (const RingMove &m : moves) {
    out.push_back(static_cast<char>(m.op));
    put_u64(out, m.delta);
  }
  return out + data;
}

bool write_envelope_seeds(const fs::path &dir) {
  bool ok = true;
  auto put = [&](const char *name, const std::string &bytes) {
    ok = write_file(dir / name, bytes) && ok;
  };
  put("json_reel_update", json_envelope("reel:123", "reel_update", R"({"views":1,"likes":2})"));
  put("json_system_critical", [] {
    Envelope e = base("system", "system_notice", 7);
    e.set_priority(kronop::v1::PRIORITY_CRITICAL);
    e.set_json(R"({"message":"drain in 5 min","level":"warning","nested":{"a":[1,2.5,null]}})");
    return e.SerializeAsString();
  }());
  put("typed_reel_update", [] {
    Envelope e = base("reel:abc-1", "reel_update", 2);
    auto *u = e.mutable_reel_update();
    u->set_id("u1");
    u->set_reel_id(123);
    (*u->mutable_update_data())["views"] = "10";
    u->add_target_users("42");
    u->set_timestamp(1700000000000);
    u->set_priority(kronop::v1::PRIORITY_HIGH);
    return e.SerializeAsString();
  }());
  put("typed_interaction", [] {
    Envelope e = base("reel:123", "interaction", 3);
    auto *i = e.mutable_interaction();
    i->set_id("i1");
    i->set_reel_id(123);
    i->set_user_id("42");
    i->set_kind(kronop::v1::Interaction::KIND_COMMENT);
    i->set_text("nice");
    i->set_comment_count(5);
    return e.SerializeAsString();
  }());
  put("typed_presence", [] {
    Envelope e = base("user:42", "presence_diff", 4);
    auto *p = e.mutable_presence();
    p->set_user_id("42");
    p->set_status(kronop::v1::PresenceUpdate::STATUS_ONLINE);
    p->set_current_reel(123);
    p->set_activity("watching");
    return e.SerializeAsString();
  }());
  put("typed_user_activity", [] {
    Envelope e = base("user:42", "user_activity", 5);
    auto *a = e.mutable_user_activity();
    a->set_user_id("42");
    a->set_activity_type("follow");
    (*a->mutable_data())["who"] = "7";
    return e.SerializeAsString();
  }());
  put("typed_system_notice", [] {
    Envelope e = base("system", "system_notice", 6);
    auto *n = e.mutable_system_notice();
    n->set_id("n1");
    n->set_level(kronop::v1::SystemNotice::LEVEL_WARNING);
    n->set_message("maintenance");
    return e.SerializeAsString();
  }());
  put("with_identity_trailer",
      json_envelope("reel:9", "reel_update", R"({"x":true})", 0) +
          identity_trailer(0xdeadbeefcafef00dULL, 99, 1700000000000000123ULL));
  put("with_daemon_fields", [] {
    Envelope e = base("reel:5", "reel_update", 8);
    e.set_seq(100);  // daemon-assigned: skipped by the validator
    e.set_epoch(3);
    e.set_json("{}");
    return e.SerializeAsString();
  }());
  // Rejected records: seeds for the reject paths.
  put("reject_bad_topic", json_envelope("channel:1", "reel_update", "{}"));
  put("reject_phx_event", json_envelope("reel:1", "phx_join", "{}"));
  put("reject_not_object", json_envelope("reel:1", "reel_update", "[1,2,3]"));
  put("reject_bad_json", json_envelope("reel:1", "reel_update", R"({"a":)"));
  put("reject_no_body", base("reel:1", "reel_update", 1).SerializeAsString());
  return ok;
}

bool write_ring_seeds(const fs::path &dir) {
  const uint64_t cap = ipc::SegmentGeometry::kMinCapacity;
  const std::string a =
      ring_record(ipc::kRecordEnvelope, json_envelope("reel:1", "reel_update", R"({"v":1})", 1));
  const std::string b =
      ring_record(ipc::kRecordEnvelope, json_envelope("reel:1", "reel_update", R"({"v":2})", 2));
  const std::string c = ring_record(ipc::kRecordEnvelope,
                                    json_envelope("user:42", "user_activity", R"({"k":"x"})", 3));
  bool ok = true;
  auto put = [&](const char *name, const std::string &bytes) {
    ok = write_file(dir / name, bytes) && ok;
  };
  put("empty", ring_input(0, 0, 0, {}, ""));
  put("one_record", ring_input(0, a.size(), 0, {}, a));
  put("three_records_release_each",
      ring_input(0, a.size() + b.size() + c.size(), 1, {}, a + b + c));
  // Reading starts 48 bytes before the end of the data area: a padding record covers them
  // and the record that did not fit starts again at index 0.
  const uint64_t near_end = 3 * cap + cap - 48;
  const std::string pad = ring_record(ipc::kRecordPadding, std::string(40, '\0'));
  put("wrap_with_padding", ring_input(near_end, pad.size() + a.size(), 0, {}, pad + a));
  // The producer publishes a second record while the daemon restarts without having
  // released the first: both are read (again) by the new reader.
  put("restart_unreleased", ring_input(0, a.size(), 2, {{1, b.size()}}, a + b));
  put("producer_moves_on", ring_input(64, a.size(), 0, {{0, b.size()}, {0, c.size()}}, a + b + c));
  // Corrupt rings: a length past write_pos, an unknown kind, write_pos going backwards,
  // write_pos more than a ring ahead.
  std::string long_len = a;
  const uint32_t huge = 0x7fffffff;
  std::memcpy(long_len.data(), &huge, sizeof huge);
  put("corrupt_length", ring_input(0, a.size(), 0, {}, long_len));
  std::string bad_kind = a;
  bad_kind[4] = 'X';
  put("corrupt_kind", ring_input(0, a.size() + b.size(), 0, {}, bad_kind + b));
  put("write_pos_backwards", ring_input(0, a.size(), 0, {{0, ~uint64_t{0} - 7}}, a));
  put("write_pos_too_far", ring_input(0, 2 * cap, 0, {}, a + b));
  // Misaligned positions put a record header in the last bytes of the data area; reading
  // it whole would run past the ring (past the mapping, for the segment's last ring).
  // Regression seeds for that out-of-bounds read.
  put("misaligned_release_pos", ring_input(cap - 3, 11, 0, {}, ""));
  put("misaligned_write_pos", ring_input(0, cap - 3, 0, {{0, 11}}, ""));
  return ok;
}

}  // namespace

// Control socket seeds (control_fuzz.cc): a byte choosing where the reads are cut, then
// what a peer sends: length-prefixed ControlRequests.
std::string control_frame(const kronop::v1::ControlRequest &req) {
  const std::string body = req.SerializeAsString();
  const uint32_t len = static_cast<uint32_t>(body.size());
  return std::string(reinterpret_cast<const char *>(&len), 4) + body;
}

bool write_control_seeds(const fs::path &dir) {
  using kronop::v1::ControlRequest;
  ControlRequest stats, health, user, reel, connections;
  stats.mutable_stats();
  health.mutable_health();
  user.mutable_user_presence()->set_user_id("u42");
  reel.mutable_reel_presence()->set_reel_id("r7");
  connections.mutable_connections()->set_topic("reel:7");
  const std::string too_large("\x01\x10\x00\x00", 4);  // 4097: one over the limit
  return write_file(dir / "stats", "\x03" + control_frame(stats)) &&
         write_file(dir / "health", "\x00" + control_frame(health)) &&
         write_file(dir / "user_presence", "\x07" + control_frame(user)) &&
         write_file(dir / "pipelined", "\x05" + control_frame(reel) + control_frame(connections) +
                                           control_frame(stats)) &&
         write_file(dir / "malformed_then_stats",
                    std::string("\x02\x03\x00\x00\x00\xff\xff\xff", 8) + control_frame(stats)) &&
         write_file(dir / "too_large", "\x01" + too_large + "abc") &&
         write_file(dir / "partial", "\x02" + control_frame(user).substr(0, 6));
}

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const fs::path root(argv[1]);
  std::error_code ec;
  fs::create_directories(root / "envelope", ec);
  fs::create_directories(root / "ring_record", ec);
  fs::create_directories(root / "control", ec);
  const bool ok = write_envelope_seeds(root / "envelope") &&
                  write_ring_seeds(root / "ring_record") && write_control_seeds(root / "control");
  return ok ? 0 : 1;
}
