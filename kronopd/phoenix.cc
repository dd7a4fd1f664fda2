// The Phoenix Channels V2 serializer; see phoenix.h for the formats and the escaping rules.
#include "phoenix.h"

#include <simdjson.h>

#include <cassert>
#include <charconv>
#include <cstring>
#include <initializer_list>

#include "kronop_ipc.h"

namespace kronop::daemon::phoenix {
namespace {

constexpr std::size_t kArity = 5;  // [join_ref, ref, topic, event, payload]

// Concatenates `parts` into one string allocated at its exact size.
std::string concat(std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (std::string_view p : parts) size += p.size();
  std::string out(size, '\0');
  char *w = out.data();
  for (std::string_view p : parts) {
    if (p.empty()) continue;  // an empty view may have a null data()
    std::memcpy(w, p.data(), p.size());
    w += p.size();
  }
  return out;
}

// `"` + s + `"` into a reused buffer; s is json_safe.
std::string_view quote_into(std::string &buf, std::string_view s) {
  buf.assign(1, '"');
  buf.append(s);
  buf.push_back('"');
  return buf;
}

// Splits a binary frame laid out as [kind][size_0]..[size_n-1][field_0]..[field_n-1][payload].
bool split_binary(std::string_view frame, std::size_t n, std::string_view *fields,
                  std::string_view &payload) {
  const std::size_t header = 1 + n;
  if (frame.size() < header) return false;
  std::size_t offset = header;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t size = static_cast<uint8_t>(frame[1 + i]);
    if (frame.size() - offset < size) return false;
    fields[i] = frame.substr(offset, size);
    offset += size;
  }
  payload = frame.substr(offset);
  return true;
}

struct NamedField {
  const char *name;
  std::string_view bytes;
};

// Builds [kind][sizes...][fields...][payload] at its exact size.
Result<std::string> binary_frame(BinaryKind kind, std::initializer_list<NamedField> fields,
                                 std::string_view payload) {
  std::size_t size = 1 + fields.size() + payload.size();
  for (const NamedField &f : fields) {
    if (f.bytes.size() > kMaxBinaryField) {
      return Error{KRONOP_ETOOBIG, std::string(f.name) + " is longer than 255 bytes (" +
                                       std::to_string(f.bytes.size()) + ")"};
    }
    size += f.bytes.size();
  }
  std::string out(size, '\0');
  char *w = out.data();
  *w++ = static_cast<char>(kind);
  for (const NamedField &f : fields) *w++ = static_cast<char>(f.bytes.size());
  for (const NamedField &f : fields) {
    if (f.bytes.empty()) continue;
    std::memcpy(w, f.bytes.data(), f.bytes.size());
    w += f.bytes.size();
  }
  if (!payload.empty()) std::memcpy(w, payload.data(), payload.size());
  return out;
}

}  // namespace

bool json_safe(std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  return true;
}

const char *parse_error_name(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "none";
    case ParseError::kTooLarge:
      return "too_large";
    case ParseError::kNotJson:
      return "not_json";
    case ParseError::kNotArray:
      return "not_array";
    case ParseError::kWrongArity:
      return "wrong_arity";
    case ParseError::kBadJoinRef:
      return "bad_join_ref";
    case ParseError::kBadRef:
      return "bad_ref";
    case ParseError::kBadTopic:
      return "bad_topic";
    case ParseError::kBadEvent:
      return "bad_event";
    case ParseError::kTruncated:
      return "truncated";
    case ParseError::kBadKind:
      return "bad_kind";
    case ParseError::kUnsafeField:
      return "unsafe_field";
    case ParseError::kRefTooLong:
      return "ref_too_long";
    case ParseError::kCount:
      break;
  }
  return "unknown";
}

const char *parse_error_message(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "no error";
    case ParseError::kTooLarge:
      return "message is larger than the maximum message size";
    case ParseError::kNotJson:
      return "message is not valid JSON";
    case ParseError::kNotArray:
      return "message is not a JSON array [join_ref, ref, topic, event, payload]";
    case ParseError::kWrongArity:
      return "message array does not have 5 elements";
    case ParseError::kBadJoinRef:
      return "join_ref is neither a string nor null";
    case ParseError::kBadRef:
      return "ref is neither a string nor null";
    case ParseError::kBadTopic:
      return "topic is not a string";
    case ParseError::kBadEvent:
      return "event is not a string";
    case ParseError::kTruncated:
      return "binary message is shorter than its header says";
    case ParseError::kBadKind:
      return "binary message is not a push (kind 0)";
    case ParseError::kUnsafeField:
      return "binary message has a join_ref, ref, topic or event that is not printable ASCII "
             "without quotes or backslashes";
    case ParseError::kRefTooLong:
      static_assert(kMaxRef == 64, "the message names the limit");
      return "join_ref or ref is longer than 64 bytes";
    case ParseError::kCount:
      break;
  }
  return "unknown error";
}

// ---------------------------------------------------------------------------------------
// MessageParser

struct MessageParser::Scratch {
  explicit Scratch(std::size_t max) : json(max), max_message(max) {}

  simdjson::dom::parser json;
  std::size_t max_message;
  std::string padded;  // the frame copied with simdjson's required padding after it
  // What a ClientMessage's views point to, other than the frame (kept here rather than in
  // the message so that a ClientMessage is a cheap bundle of views).
  std::string join_ref, ref, topic, event;
  std::string join_ref_json, ref_json, topic_json, event_json, payload_json;
  // The last accepted text message's payload, when it is an object (for payload_uint).
  simdjson::dom::object payload_object;
  bool have_payload_object = false;
};

MessageParser::MessageParser(std::size_t max_message)
    : scratch_(std::make_unique<Scratch>(max_message)) {}
MessageParser::~MessageParser() = default;

namespace {

// A join_ref or ref element: null, or a string whose decoded bytes and re-serialized JSON
// text are copied into the parser's buffers.
bool read_ref(simdjson::dom::element e, std::string &value_buf, std::string &json_buf, Ref &out) {
  out = Ref{};
  if (e.is_null()) return true;
  std::string_view value;
  if (e.get_string().get(value) != simdjson::SUCCESS) return false;
  value_buf.assign(value);
  json_buf = simdjson::to_string(e);
  out.is_null = false;
  out.value = value_buf;
  out.json = json_buf;
  return true;
}

// Whether a ref is within kMaxRef: its JSON text (what is kept and echoed) without quotes.
bool short_ref(const Ref &r) { return r.is_null || r.json.size() <= kMaxRef + 2; }

bool read_string(simdjson::dom::element e, std::string &value_buf, std::string &json_buf,
                 std::string_view &value, std::string_view &json) {
  std::string_view v;
  if (e.get_string().get(v) != simdjson::SUCCESS) return false;
  value_buf.assign(v);
  json_buf = simdjson::to_string(e);
  value = value_buf;
  json = json_buf;
  return true;
}

}  // namespace

ParseError MessageParser::parse_text(std::string_view frame, ClientMessage &out) {
  Scratch &s = *scratch_;
  out = ClientMessage{};
  s.have_payload_object = false;
  if (frame.size() > s.max_message) return ParseError::kTooLarge;

  // A WebSocket message buffer carries no padding for simdjson: parse a padded copy.
  const std::size_t padded_size = frame.size() + simdjson::SIMDJSON_PADDING;
  if (s.padded.size() < padded_size) s.padded.resize(padded_size);
  if (!frame.empty()) std::memcpy(s.padded.data(), frame.data(), frame.size());
  simdjson::dom::element root;
  if (s.json.parse(s.padded.data(), frame.size(), false).get(root) != simdjson::SUCCESS) {
    return ParseError::kNotJson;
  }
  simdjson::dom::array array;
  if (root.get_array().get(array) != simdjson::SUCCESS) return ParseError::kNotArray;
  // Phoenix itself ignores elements after the fifth; the official clients never send them,
  // and a strict shape makes a confused client visible.
  if (array.size() != kArity) return ParseError::kWrongArity;
  simdjson::dom::element e[kArity];
  std::size_t n = 0;
  for (simdjson::dom::element element : array) e[n++] = element;

  ClientMessage m;
  if (!read_ref(e[0], s.join_ref, s.join_ref_json, m.join_ref)) return ParseError::kBadJoinRef;
  if (!read_ref(e[1], s.ref, s.ref_json, m.ref)) return ParseError::kBadRef;
  if (!short_ref(m.join_ref) || !short_ref(m.ref)) return ParseError::kRefTooLong;
  if (!read_string(e[2], s.topic, s.topic_json, m.topic, m.topic_json)) {
    return ParseError::kBadTopic;
  }
  if (!read_string(e[3], s.event, s.event_json, m.event, m.event_json)) {
    return ParseError::kBadEvent;
  }
  s.payload_json = simdjson::to_string(e[4]);
  m.payload = s.payload_json;
  if (e[4].get_object().get(s.payload_object) == simdjson::SUCCESS) {
    s.have_payload_object = true;
    m.payload_kind = PayloadKind::kObject;
  } else {
    m.payload_kind = PayloadKind::kOtherJson;
  }
  out = m;
  return ParseError::kNone;
}

ParseError MessageParser::parse_binary(std::string_view frame, ClientMessage &out) {
  Scratch &s = *scratch_;
  out = ClientMessage{};
  s.have_payload_object = false;
  if (frame.size() > s.max_message) return ParseError::kTooLarge;
  if (frame.empty()) return ParseError::kTruncated;
  // Replies and broadcasts only go from server to client.
  if (static_cast<uint8_t>(frame[0]) != static_cast<uint8_t>(BinaryKind::kPush)) {
    return ParseError::kBadKind;
  }
  std::string_view f[4];  // join_ref, ref, topic, event
  std::string_view payload;
  if (!split_binary(frame, 4, f, payload)) return ParseError::kTruncated;
  for (std::string_view field : f) {
    if (!json_safe(field)) return ParseError::kUnsafeField;
  }

  ClientMessage m;
  m.join_ref.is_null = false;
  m.join_ref.value = f[0];
  m.join_ref.json = quote_into(s.join_ref_json, f[0]);
  m.ref.is_null = false;
  m.ref.value = f[1];
  m.ref.json = quote_into(s.ref_json, f[1]);
  if (!short_ref(m.join_ref) || !short_ref(m.ref)) return ParseError::kRefTooLong;
  m.topic = f[2];
  m.topic_json = quote_into(s.topic_json, f[2]);
  m.event = f[3];
  m.event_json = quote_into(s.event_json, f[3]);
  m.payload_kind = PayloadKind::kBinary;
  m.payload = payload;
  out = m;
  return ParseError::kNone;
}

Lookup MessageParser::payload_uint(std::string_view key, uint64_t &value) const {
  const Scratch &s = *scratch_;
  if (!s.have_payload_object) return Lookup::kAbsent;
  simdjson::dom::element member;
  if (s.payload_object.at_key(key).get(member) != simdjson::SUCCESS || member.is_null())
    return Lookup::kAbsent;
  // get_uint64 refuses doubles (5.0) and negative integers.
  uint64_t v = 0;
  if (member.get_uint64().get(v) != simdjson::SUCCESS) return Lookup::kWrongType;
  value = v;
  return Lookup::kFound;
}

Lookup MessageParser::payload_string(std::string_view key, std::string_view &value) const {
  const Scratch &s = *scratch_;
  if (!s.have_payload_object) return Lookup::kAbsent;
  simdjson::dom::element member;
  if (s.payload_object.at_key(key).get(member) != simdjson::SUCCESS) return Lookup::kAbsent;
  std::string_view v;
  if (member.get_string().get(v) != simdjson::SUCCESS) return Lookup::kWrongType;
  value = v;
  return Lookup::kFound;
}

bool MessageParser::owns(std::string_view view) const {
  const Scratch &s = *scratch_;
  const auto inside = [view](const std::string &buf) {
    const char *b = buf.data();
    return view.data() >= b && view.data() <= b + buf.size() &&
           view.size() <= static_cast<std::size_t>(b + buf.size() - view.data());
  };
  for (const std::string *buf : {&s.join_ref, &s.ref, &s.topic, &s.event, &s.join_ref_json,
                                 &s.ref_json, &s.topic_json, &s.event_json, &s.payload_json}) {
    if (inside(*buf)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Text encoders

std::string_view reply_status_name(ReplyStatus s) { return s == ReplyStatus::kOk ? "ok" : "error"; }

std::string encode_message(std::string_view join_ref_json, std::string_view ref_json,
                           std::string_view topic_json, std::string_view event_json,
                           std::string_view payload_json) {
  return concat({"[", join_ref_json, ",", ref_json, ",", topic_json, ",", event_json, ",",
                 payload_json, "]"});
}

std::string encode_reply(std::string_view join_ref_json, std::string_view ref_json,
                         std::string_view topic_json, ReplyStatus status,
                         std::string_view response_json) {
  // Phoenix's encoder sorts map keys: "response" before "status".
  return concat({"[", join_ref_json, ",", ref_json, ",", topic_json, R"(,"phx_reply",{"response":)",
                 response_json, R"(,"status":")", reply_status_name(status), "\"}]"});
}

std::string encode_push(std::string_view join_ref_json, std::string_view topic_json,
                        std::string_view event, std::string_view payload_json) {
  assert(json_safe(event));
  return concat({"[", join_ref_json, ",null,", topic_json, ",\"", event, "\",", payload_json, "]"});
}

std::string encode_close(std::string_view join_ref_json, std::string_view topic_json) {
  return concat({"[", join_ref_json, ",", join_ref_json, ",", topic_json, R"(,"phx_close",{}])"});
}

std::string encode_error(std::string_view join_ref_json, std::string_view topic_json) {
  return concat({"[", join_ref_json, ",", join_ref_json, ",", topic_json, R"(,"phx_error",{}])"});
}

namespace {
constexpr std::string_view kBroadcastHead = R"([null,null,")";
constexpr std::string_view kBroadcastMid = R"(",")";
constexpr std::string_view kBroadcastAfterEvent = R"(",)";
constexpr std::string_view kBroadcastTail = "]";
}  // namespace

std::size_t text_broadcast_size(std::string_view topic, std::string_view event,
                                std::string_view payload_json) {
  return kBroadcastHead.size() + topic.size() + kBroadcastMid.size() + event.size() +
         kBroadcastAfterEvent.size() + payload_json.size() + kBroadcastTail.size();
}

char *write_text_broadcast(char *out, std::string_view topic, std::string_view event,
                           std::string_view payload_json) {
  // No escaping on the fan-out path: valid_topic/valid_event admit only json_safe bytes.
  assert(json_safe(topic) && json_safe(event));
  for (std::string_view p : {kBroadcastHead, topic, kBroadcastMid, event, kBroadcastAfterEvent,
                             payload_json, kBroadcastTail}) {
    if (p.empty()) continue;
    std::memcpy(out, p.data(), p.size());
    out += p.size();
  }
  return out;
}

std::string encode_text_broadcast(std::string_view topic, std::string_view event,
                                  std::string_view payload_json) {
  std::string out(text_broadcast_size(topic, event, payload_json), '\0');
  write_text_broadcast(out.data(), topic, event, payload_json);
  return out;
}

// ---------------------------------------------------------------------------------------
// Binary encoders and the server-frame decoder

Result<std::string> encode_binary_broadcast(std::string_view topic, std::string_view event,
                                            std::string_view payload) {
  return binary_frame(BinaryKind::kBroadcast, {{"topic", topic}, {"event", event}}, payload);
}

Result<std::string> encode_binary_reply(std::string_view join_ref, std::string_view ref,
                                        std::string_view topic, ReplyStatus status,
                                        std::string_view payload) {
  return binary_frame(BinaryKind::kReply,
                      {{"join_ref", join_ref},
                       {"ref", ref},
                       {"topic", topic},
                       {"status", reply_status_name(status)}},
                      payload);
}

Result<std::string> encode_binary_push(std::string_view join_ref, std::string_view topic,
                                       std::string_view event, std::string_view payload) {
  return binary_frame(BinaryKind::kPush,
                      {{"join_ref", join_ref}, {"topic", topic}, {"event", event}}, payload);
}

ParseError decode_server_binary(std::string_view frame, ServerBinaryFrame &out) {
  out = ServerBinaryFrame{};
  if (frame.empty()) return ParseError::kTruncated;
  ServerBinaryFrame m;
  std::string_view f[4];
  switch (static_cast<uint8_t>(frame[0])) {
    case static_cast<uint8_t>(BinaryKind::kPush):
      if (!split_binary(frame, 3, f, m.payload)) return ParseError::kTruncated;
      m.kind = BinaryKind::kPush;
      m.join_ref = f[0];
      m.topic = f[1];
      m.event = f[2];
      break;
    case static_cast<uint8_t>(BinaryKind::kReply):
      if (!split_binary(frame, 4, f, m.payload)) return ParseError::kTruncated;
      m.kind = BinaryKind::kReply;
      m.join_ref = f[0];
      m.ref = f[1];
      m.topic = f[2];
      m.event = f[3];
      break;
    case static_cast<uint8_t>(BinaryKind::kBroadcast):
      if (!split_binary(frame, 2, f, m.payload)) return ParseError::kTruncated;
      m.kind = BinaryKind::kBroadcast;
      m.topic = f[0];
      m.event = f[1];
      break;
    default:
      return ParseError::kBadKind;
  }
  out = m;
  return ParseError::kNone;
}

}  // namespace kronop::daemon::phoenix
