// Fuzz target for kronopd's reader of client WebSocket frames (ws::FrameReader), the parser
// every connected client can send anything to.
//
// Input layout: byte 0 picks the message size limit, byte 1 where the stream is split, the
// rest is the byte stream a client sends. The stream is fed three ways, as the server feeds
// it (keep the unconsumed tail, append the next read): whole, in two reads split at the
// chosen point, and one byte per read. Besides "no crash, no sanitizer report":
//  - consume() returns at most the size of its input and leaves the unconsumed bytes as
//    they were; once finished, it consumes everything;
//  - the tail the caller keeps is shorter than one frame at the limit;
//  - no event follows a close or a protocol error;
//  - a message is within the limit, a text message and a close reason are valid UTF-8, a
//    control payload is at most 125 bytes, a close code is one a peer may send;
//  - a protocol error carries 1002, 1007 or 1009 and a reason;
//  - the assembly string exists exactly while a fragmented message is in flight;
//  - all three ways give the same events.
#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "websocket.h"

namespace ws = kronop::daemon::ws;

namespace {

// Small limits make 1009 and the size checks reachable with short inputs.
constexpr uint32_t kLimits[] = {0, 16, 200, ws::FrameReader::kDefaultMaxMessage};

enum class Kind { kText, kBinary, kPing, kPong, kClose, kError };

struct Event {
  Kind kind;
  uint16_t code;
  std::string data;
  bool operator==(const Event &) const = default;
};

bool utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

class CheckingSink : public ws::FrameSink {
 public:
  explicit CheckingSink(uint32_t limit) : limit_(limit) {}

  void on_text(std::string_view m) override {
    FUZZ_CHECK(m.size() <= limit_);
    FUZZ_CHECK(utf8(m));
    add(Kind::kText, 0, m);
  }
  void on_binary(std::string_view m) override {
    FUZZ_CHECK(m.size() <= limit_);
    add(Kind::kBinary, 0, m);
  }
  void on_ping(std::string_view p) override {
    FUZZ_CHECK(p.size() <= ws::kMaxControlPayload);
    add(Kind::kPing, 0, p);
  }
  void on_pong(std::string_view p) override {
    FUZZ_CHECK(p.size() <= ws::kMaxControlPayload);
    add(Kind::kPong, 0, p);
  }
  void on_close(uint16_t code, std::string_view reason) override {
    FUZZ_CHECK(ws::valid_close_code(code) || (code == ws::kCloseNoStatus && reason.empty()));
    FUZZ_CHECK(reason.size() <= ws::kMaxControlPayload - 2);
    FUZZ_CHECK(utf8(reason));
    add(Kind::kClose, code, reason);
  }
  void on_protocol_error(uint16_t code, std::string_view reason) override {
    FUZZ_CHECK(code == ws::kCloseProtocolError || code == ws::kCloseInvalidPayload ||
               code == ws::kCloseMessageTooBig);
    FUZZ_CHECK(!reason.empty() && reason.size() <= ws::kMaxControlPayload - 2);
    add(Kind::kError, code, reason);
  }

  // Every frame is reported before the event it makes (the server's rate limit counts
  // them), and nothing after the end.
  void on_frame(ws::Opcode) override {
    FUZZ_CHECK(!ended_);
    ++unreported_frames_;
  }

  std::vector<Event> events;

 private:
  void add(Kind kind, uint16_t code, std::string_view data) {
    FUZZ_CHECK(!ended_);
    if (kind != Kind::kError) {
      FUZZ_CHECK(unreported_frames_ > 0);
      unreported_frames_ = 0;
    }
    ended_ = kind == Kind::kClose || kind == Kind::kError;
    events.push_back({kind, code, std::string(data)});
  }
  uint32_t limit_;
  bool ended_ = false;
  uint64_t unreported_frames_ = 0;
};

// Feeds `stream` in reads of the given sizes (the last read takes what is left).
std::vector<Event> feed(std::string_view stream, uint32_t limit,
                        const std::vector<std::size_t> &reads) {
  ws::FrameReader reader(limit);
  std::unique_ptr<std::string> assembly;
  CheckingSink sink(limit);
  std::string pending;
  std::size_t pos = 0;
  for (std::size_t i = 0; i <= reads.size() && pos <= stream.size(); ++i) {
    const std::size_t n = i < reads.size() ? reads[i] : stream.size() - pos;
    pending.append(stream.substr(pos, n));
    pos += n;
    const std::string before = pending;
    const std::size_t used =
        reader.consume(std::span<char>(pending.data(), pending.size()), assembly, sink);
    FUZZ_CHECK(used <= pending.size());
    FUZZ_CHECK(std::string_view(pending).substr(used) == std::string_view(before).substr(used));
    pending.erase(0, used);
    if (reader.finished()) FUZZ_CHECK(pending.empty());
    FUZZ_CHECK(pending.size() <
               ws::kMaxClientFrameHeader + std::max<std::size_t>(limit, ws::kMaxControlPayload));
    FUZZ_CHECK((assembly != nullptr) == reader.message_in_flight());
    if (assembly) FUZZ_CHECK(assembly->size() <= limit);
  }
  return sink.events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint32_t limit = kLimits[data[0] % 4];
  const std::string_view stream(reinterpret_cast<const char *>(data + 2), size - 2);
  const std::size_t split = stream.size() * data[1] / 255;

  const std::vector<Event> whole = feed(stream, limit, {});
  FUZZ_CHECK(feed(stream, limit, {split}) == whole);
  FUZZ_CHECK(feed(stream, limit, std::vector<std::size_t>(stream.size(), 1)) == whole);
  return 0;
}
