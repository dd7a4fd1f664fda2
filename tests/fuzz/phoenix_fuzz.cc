// Fuzz target for the Phoenix V2 serializer (kronopd/phoenix.h): the parser of client
// messages, which reads whatever a WebSocket client sends, and the encoders fed with what it
// accepted.
//
// Every input goes to the text parser, the binary parser and the decoder of server binary
// frames. Besides "no crash, no sanitizer report":
//  - an error is one of the enum's values; a rejected message leaves `out` empty;
//  - an accepted message's views lie inside the input or inside the parser's own buffers;
//    a null ref's JSON form is `null`;
//  - re-encoding an accepted message and parsing the result gives the same fields: the
//    message itself (encode_message), the server's reply to it (encode_reply, which echoes
//    the refs' and topic's JSON forms: this is what proves those forms are valid JSON of
//    the same strings), and its binary forms (encode_binary_reply / encode_binary_push);
//  - a payload object with seq inserted is still an object, with seq readable;
//  - a server binary frame that decodes re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "envelope_validation.h"
#include "fuzz_check.h"
#include "payload_codec.h"
#include "phoenix.h"

namespace px = kronop::daemon::phoenix;

namespace {

struct OwnedRef {
  bool is_null;
  std::string value, json;
  explicit OwnedRef(const px::Ref &r) : is_null(r.is_null), value(r.value), json(r.json) {}
  bool operator==(const px::Ref &r) const {
    return is_null == r.is_null && value == r.value && json == r.json;
  }
};

// A copy of a message, so that it survives the next parse on the same parser.
struct OwnedMessage {
  OwnedRef join_ref, ref;
  std::string topic, topic_json, event, event_json, payload;
  px::PayloadKind payload_kind;
  explicit OwnedMessage(const px::ClientMessage &m)
      : join_ref(m.join_ref),
        ref(m.ref),
        topic(m.topic),
        topic_json(m.topic_json),
        event(m.event),
        event_json(m.event_json),
        payload(m.payload),
        payload_kind(m.payload_kind) {}
};

bool inside(std::string_view view, std::string_view input) {
  if (view.empty()) return true;
  return view.data() >= input.data() && view.size() <= input.size() &&
         view.data() - input.data() <= static_cast<std::ptrdiff_t>(input.size() - view.size());
}

bool empty_message(const px::ClientMessage &m) {
  return m.join_ref.is_null && m.ref.is_null && m.topic.empty() && m.event.empty() &&
         m.payload.empty();
}

void check_views(const px::MessageParser &parser, const px::ClientMessage &m,
                 std::string_view input) {
  for (std::string_view v :
       {m.join_ref.value, m.ref.value, m.topic, m.event, m.payload, m.topic_json, m.event_json}) {
    FUZZ_CHECK(inside(v, input) || parser.owns(v));
  }
  for (const px::Ref *r : {&m.join_ref, &m.ref}) {
    if (r->is_null) {
      FUZZ_CHECK(r->json == "null" && r->value.empty());
    } else {
      FUZZ_CHECK(parser.owns(r->json));
    }
  }
}

// Parses a message this harness built from an accepted one. Minifying can lengthen a
// payload (1E5 becomes 100000.0), so near the size limit a rebuilt message may be too large;
// returns false then, and the caller skips its checks.
bool reparse(px::MessageParser &parser, const std::string &text, px::ClientMessage &out) {
  const px::ParseError e = parser.parse_text(text, out);
  if (e == px::ParseError::kTooLarge && text.size() > px::kDefaultMaxMessage) return false;
  FUZZ_CHECK(e == px::ParseError::kNone);
  return true;
}

// The server's reply to `m`, read back: the echoed refs and topic are the same strings.
void check_reply(px::MessageParser &parser, const OwnedMessage &m) {
  const std::string reply = px::encode_reply(m.join_ref.json, m.ref.json, m.topic_json,
                                             px::ReplyStatus::kError, R"({"reason":"x"})");
  px::ClientMessage back;
  if (!reparse(parser, reply, back)) return;
  FUZZ_CHECK(m.join_ref == back.join_ref);
  FUZZ_CHECK(m.ref == back.ref);
  FUZZ_CHECK(back.topic == m.topic && back.topic_json == m.topic_json);
  FUZZ_CHECK(back.event == "phx_reply");
  FUZZ_CHECK(back.payload == R"({"response":{"reason":"x"},"status":"error"})");
}

void check_text(px::MessageParser &parser, std::string_view input) {
  px::ClientMessage m;
  const px::ParseError e = parser.parse_text(input, m);
  FUZZ_CHECK(e < px::ParseError::kCount);
  FUZZ_CHECK(px::parse_error_name(e) != nullptr && px::parse_error_message(e) != nullptr);
  if (e != px::ParseError::kNone) {
    FUZZ_CHECK(empty_message(m));
    uint64_t v = 0;
    FUZZ_CHECK(parser.payload_uint("last_seq", v) == px::Lookup::kAbsent);
    return;
  }
  check_views(parser, m, input);
  FUZZ_CHECK(m.payload_kind != px::PayloadKind::kBinary);
  uint64_t last_seq = 0;
  const px::Lookup l = parser.payload_uint("last_seq", last_seq);
  FUZZ_CHECK(m.payload_kind == px::PayloadKind::kObject || l == px::Lookup::kAbsent);
  const OwnedMessage owned(m);

  // The message re-encoded parses to the same fields; the minified payload is a fixpoint.
  const std::string again = px::encode_message(owned.join_ref.json, owned.ref.json,
                                               owned.topic_json, owned.event_json, owned.payload);
  px::ClientMessage back;
  if (!reparse(parser, again, back)) return;
  FUZZ_CHECK(owned.join_ref == back.join_ref);
  FUZZ_CHECK(owned.ref == back.ref);
  FUZZ_CHECK(back.topic == owned.topic && back.topic_json == owned.topic_json);
  FUZZ_CHECK(back.event == owned.event && back.event_json == owned.event_json);
  FUZZ_CHECK(back.payload == owned.payload && back.payload_kind == owned.payload_kind);
  uint64_t last_seq_again = 0;
  FUZZ_CHECK(parser.payload_uint("last_seq", last_seq_again) == l);
  FUZZ_CHECK(l != px::Lookup::kFound || last_seq_again == last_seq);

  check_reply(parser, owned);

  // A payload object with seq inserted, as the fan-out does it.
  if (owned.payload_kind == px::PayloadKind::kObject) {
    const uint64_t seq = input.size() * 2654435761u;
    const std::string with_seq = kronop::insert_seq(owned.payload, seq).value_or(std::string());
    FUZZ_CHECK(with_seq.rfind("{\"seq\":", 0) == 0);
    const std::string message = px::encode_message("null", "null", R"("t")", R"("e")", with_seq);
    if (reparse(parser, message, back)) {
      FUZZ_CHECK(back.payload_kind == px::PayloadKind::kObject);
      uint64_t read = 0;
      FUZZ_CHECK(parser.payload_uint("seq", read) == px::Lookup::kFound && read == seq);
    }
  }

  // A broadcast of the payload, where topic and event are ones the fan-out would carry.
  if (kronop::valid_topic(owned.topic) && kronop::valid_event(owned.event)) {
    const std::string frame = px::encode_text_broadcast(owned.topic, owned.event, owned.payload);
    FUZZ_CHECK(frame.size() == px::text_broadcast_size(owned.topic, owned.event, owned.payload));
    if (reparse(parser, frame, back)) {
      FUZZ_CHECK(back.join_ref.is_null && back.ref.is_null);
      FUZZ_CHECK(back.topic == owned.topic && back.event == owned.event);
      FUZZ_CHECK(back.payload == owned.payload);
    }
  }
}

void check_binary(px::MessageParser &parser, std::string_view input) {
  px::ClientMessage m;
  const px::ParseError e = parser.parse_binary(input, m);
  FUZZ_CHECK(e < px::ParseError::kCount);
  if (e != px::ParseError::kNone) {
    FUZZ_CHECK(empty_message(m));
    return;
  }
  check_views(parser, m, input);
  FUZZ_CHECK(m.payload_kind == px::PayloadKind::kBinary);
  // Fields and payload are the frame's own bytes.
  for (std::string_view v : {m.join_ref.value, m.ref.value, m.topic, m.event, m.payload}) {
    FUZZ_CHECK(inside(v, input));
  }
  FUZZ_CHECK(!m.join_ref.is_null && !m.ref.is_null);
  FUZZ_CHECK(px::json_safe(m.join_ref.value) && px::json_safe(m.ref.value) &&
             px::json_safe(m.topic) && px::json_safe(m.event));
  FUZZ_CHECK(5 + m.join_ref.value.size() + m.ref.value.size() + m.topic.size() + m.event.size() +
                 m.payload.size() ==
             input.size());
  const OwnedMessage owned(m);

  // The binary forms of a reply and a push carry the same bytes.
  auto reply = px::encode_binary_reply(owned.join_ref.value, owned.ref.value, owned.topic,
                                       px::ReplyStatus::kOk, owned.payload);
  FUZZ_CHECK(reply.ok());
  px::ServerBinaryFrame d;
  FUZZ_CHECK(px::decode_server_binary(reply.value(), d) == px::ParseError::kNone);
  FUZZ_CHECK(d.kind == px::BinaryKind::kReply && d.join_ref == owned.join_ref.value &&
             d.ref == owned.ref.value && d.topic == owned.topic && d.event == "ok" &&
             d.payload == owned.payload);
  auto push = px::encode_binary_push(owned.join_ref.value, owned.topic, owned.event, owned.payload);
  FUZZ_CHECK(push.ok());
  FUZZ_CHECK(px::decode_server_binary(push.value(), d) == px::ParseError::kNone);
  FUZZ_CHECK(d.kind == px::BinaryKind::kPush && d.join_ref == owned.join_ref.value &&
             d.ref.empty() && d.topic == owned.topic && d.event == owned.event &&
             d.payload == owned.payload);

  // A text reply echoes the JSON forms the parser made for the raw bytes.
  check_reply(parser, owned);
}

void check_server_binary(std::string_view input) {
  px::ServerBinaryFrame d;
  const px::ParseError e = px::decode_server_binary(input, d);
  FUZZ_CHECK(e == px::ParseError::kNone || e == px::ParseError::kTruncated ||
             e == px::ParseError::kBadKind);
  if (e != px::ParseError::kNone) return;
  for (std::string_view v : {d.join_ref, d.ref, d.topic, d.event, d.payload}) {
    FUZZ_CHECK(inside(v, input));
  }
  // Decoding then encoding is the identity.
  kronop::Result<std::string> again = std::string();
  switch (d.kind) {
    case px::BinaryKind::kPush:
      again = px::encode_binary_push(d.join_ref, d.topic, d.event, d.payload);
      break;
    case px::BinaryKind::kReply:
      if (d.event != "ok" && d.event != "error") return;
      again = px::encode_binary_reply(
          d.join_ref, d.ref, d.topic,
          d.event == "ok" ? px::ReplyStatus::kOk : px::ReplyStatus::kError, d.payload);
      break;
    case px::BinaryKind::kBroadcast:
      again = px::encode_binary_broadcast(d.topic, d.event, d.payload);
      break;
  }
  FUZZ_CHECK(again.ok() && again.value() == input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One parser for the whole run, as the server keeps one per event loop: state carried
  // from one message to the next (simdjson's buffers, the reused strings) is tested too.
  static px::MessageParser parser;
  const std::string_view input(reinterpret_cast<const char *>(data), size);
  check_text(parser, input);
  check_binary(parser, input);
  check_server_binary(input);
  return 0;
}
