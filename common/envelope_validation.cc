// Envelope validation; see envelope_validation.h.
#include "envelope_validation.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <simdjson.h>

#include <array>
#include <memory>

#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"

namespace kronop {
namespace {

using google::protobuf::io::CodedInputStream;
using WFL = google::protobuf::internal::WireFormatLite;

constexpr std::size_t kMaxTopicId = 128;

// Which characters a topic id and an event name may hold: one table lookup per character
// (every record's topic and event pass here).
constexpr uint8_t kIdChar = 1;     // a-z A-Z 0-9 _ - .
constexpr uint8_t kEventChar = 2;  // a-z 0-9 _ - .
constexpr std::array<uint8_t, 256> kCharClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = kIdChar | kEventChar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = kIdChar;
  for (int c = '0'; c <= '9'; ++c) t[c] = kIdChar | kEventChar;
  for (unsigned char c : {'_', '-', '.'}) t[c] = kIdChar | kEventChar;
  return t;
}();

bool all_of_class(std::string_view s, uint8_t cls) {
  for (char c : s) {
    if ((kCharClass[static_cast<unsigned char>(c)] & cls) == 0) return false;
  }
  return true;
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxTopicId && all_of_class(id, kIdChar);
}

// Reads a length-delimited field's bytes as a view into the array the stream reads from.
bool read_view(CodedInputStream &in, const char *base, std::string_view &out) {
  uint32_t len = 0;
  if (!in.ReadVarint32(&len)) return false;
  const int offset = in.CurrentPosition();
  if (!in.Skip(static_cast<int>(len))) return false;
  out = std::string_view(base + offset, len);
  return true;
}

}  // namespace

const char *reject_name(Reject r) {
  switch (r) {
    case Reject::kNone:
      return "none";
    case Reject::kMalformed:
      return "malformed";
    case Reject::kBadTopic:
      return "bad_topic";
    case Reject::kBadEvent:
      return "bad_event";
    case Reject::kBadPriority:
      return "bad_priority";
    case Reject::kNoBody:
      return "no_body";
    case Reject::kBadJson:
      return "bad_json";
    case Reject::kNotJsonObject:
      return "not_json_object";
    case Reject::kReservedKey:
      return "reserved_key";
    case Reject::kBadTypedBody:
      return "bad_typed_body";
    case Reject::kCount:
      break;
  }
  return "unknown";
}

bool valid_topic(std::string_view topic) {
  if (topic == "system") return true;
  if (topic.starts_with("reel:") || topic.starts_with("user:")) return valid_id(topic.substr(5));
  return false;
}

bool valid_event(std::string_view event) {
  if (event.empty() || event.size() > 64 || event.starts_with("phx_")) return false;
  return all_of_class(event, kEventChar);
}

struct EnvelopeValidator::Scratch {
  simdjson::dom::parser json;
  std::string padded;  // JSON text copied with simdjson's required padding after it
  // Per body kind (its number: the Envelope's oneof field), an instance of its message type
  // (body_kind.h's table), made at first use and reused for every later record of the kind.
  std::array<std::unique_ptr<google::protobuf::Message>, 16> typed;
};

EnvelopeValidator::EnvelopeValidator() : scratch_(std::make_unique<Scratch>()) {}
EnvelopeValidator::~EnvelopeValidator() = default;

Reject EnvelopeValidator::check_json_object(std::string_view text, std::size_t readable_after) {
  auto &s = *scratch_;
  // simdjson reads its input in blocks, up to SIMDJSON_PADDING bytes past the end. Without
  // that many readable bytes after `text`, parse a padded copy. (A copy of a few hundred
  // bytes costs less than a slower parser would.)
  const char *input = text.data();
  if (readable_after < simdjson::SIMDJSON_PADDING) {
    s.padded.resize(text.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(s.padded.data(), text.data(), text.size());
    input = s.padded.data();
  }
  simdjson::dom::element root;
  if (s.json.parse(input, text.size(), false).get(root) != simdjson::SUCCESS) {
    return Reject::kBadJson;
  }
  simdjson::dom::object object;
  if (root.get(object) != simdjson::SUCCESS) return Reject::kNotJsonObject;
  // Clients get the object with "seq" added as its first key; a producer's own "seq" would
  // be a duplicate key, and JSON.parse keeps the last one, so the client would see the
  // producer's number instead of the daemon's.
  for (auto field : object) {
    if (field.key == "seq") return Reject::kReservedKey;
  }
  return Reject::kNone;
}

Reject EnvelopeValidator::validate(std::string_view record, EnvelopeView &out,
                                   std::size_t readable_after) {
  out = EnvelopeView{};
  if (record.size() > static_cast<std::size_t>(INT32_MAX)) return Reject::kMalformed;
  const char *base = record.data();
  CodedInputStream in(reinterpret_cast<const uint8_t *>(base), static_cast<int>(record.size()));
  bool has_priority_error = false;
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) break;  // end of input (or a zero tag, which ConsumedEntireMessage catches)
    const int field = static_cast<int>(WFL::GetTagFieldNumber(tag));
    const auto wire = WFL::GetTagWireType(tag);
    bool ok = true;
    switch (field) {
      case 1:
        ok = wire == WFL::WIRETYPE_LENGTH_DELIMITED && read_view(in, base, out.topic);
        break;
      case 2:
        ok = wire == WFL::WIRETYPE_LENGTH_DELIMITED && read_view(in, base, out.event);
        break;
      case 3:
        ok = wire == WFL::WIRETYPE_FIXED64 && in.ReadLittleEndian64(&out.producer_id);
        break;
      case 4:
        ok = wire == WFL::WIRETYPE_VARINT && in.ReadVarint64(&out.producer_seq);
        break;
      case 5:
        ok = wire == WFL::WIRETYPE_FIXED64 && in.ReadLittleEndian64(&out.publish_time_ns);
        break;
      case 6: {
        uint64_t p = 0;
        ok = wire == WFL::WIRETYPE_VARINT && in.ReadVarint64(&p);
        has_priority_error = ok && p > 3;
        out.priority = static_cast<int>(p & 3);
        break;
      }
      case 10:
      case 11:
      case 12:
      case 13:
      case 14:
      case 15:
        // A oneof: the last body on the wire wins, as in protobuf's own parser.
        ok = wire == WFL::WIRETYPE_LENGTH_DELIMITED && read_view(in, base, out.body);
        out.body_kind = static_cast<BodyKind>(field);
        break;
      default:
        // Unknown fields (seq and epoch too: the daemon assigns those) are skipped.
        ok = field != 0 && WFL::SkipField(&in, tag);
        break;
    }
    if (!ok) return Reject::kMalformed;
  }
  if (!in.ConsumedEntireMessage() || in.CurrentPosition() != static_cast<int>(record.size())) {
    return Reject::kMalformed;
  }
  if (!valid_topic(out.topic)) return Reject::kBadTopic;
  if (!valid_event(out.event)) return Reject::kBadEvent;
  if (has_priority_error) return Reject::kBadPriority;

  auto &s = *scratch_;
  const void *data = out.body.data();
  const int size = static_cast<int>(out.body.size());
  if (out.body_kind == BodyKind::kNone) return Reject::kNoBody;
  if (out.body_kind == BodyKind::kJson) {
    // The body lies inside the record, so everything after it in the record is readable too.
    const std::size_t after_body = static_cast<std::size_t>(record.data() + record.size() -
                                                            (out.body.data() + out.body.size()));
    return check_json_object(out.body, after_body + readable_after);
  }
  const TypedBody *typed = typed_body(out.body_kind);
  const auto slot = static_cast<std::size_t>(out.body_kind);
  if (typed == nullptr || slot >= s.typed.size()) return Reject::kMalformed;
  auto &message = s.typed[slot];
  if (!message) message.reset(typed->prototype->New());
  return message->ParseFromArray(data, size) ? Reject::kNone : Reject::kBadTypedBody;
}

}  // namespace kronop
