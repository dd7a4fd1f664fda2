// The Phoenix Channels V2 serializer: client messages in, server messages out. Pure: no I/O,
// no state but the parser's reusable scratch. The server (router, fan-out) decides what to
// send; this file only knows the wire formats, so that the official `phoenix` clients work
// unchanged (fuzzed by tests/fuzz/phoenix_fuzz.cc).
//
// Text frames (what the JS client uses by default) are JSON arrays of five elements:
//
//   [join_ref, ref, topic, event, payload]
//
// join_ref and ref are strings or null (the JS client sends counters like "3"; a heartbeat
// has a null join_ref, a broadcast null for both), topic and event are strings, payload any
// JSON value (in practice an object). Replies are
//
//   [join_ref, ref, topic, "phx_reply", {"response":RESPONSE,"status":"ok"|"error"}]
//
// with the two keys in the order Phoenix's encoder (Jason, sorted keys) writes them.
//
// Binary frames (V2, one kind byte, then single-byte sizes, then the fields, then the payload
// bytes to the end of the frame):
//
//   kind 0, push, client -> server:
//     [0][join_ref_size][ref_size][topic_size][event_size][join_ref][ref][topic][event][payload]
//   kind 0, push, server -> client (a channel push; Phoenix writes no ref, phoenix.js reads
//   none, so the layout differs from the client's):
//     [0][join_ref_size][topic_size][event_size][join_ref][topic][event][payload]
//   kind 1, reply, server -> client:
//     [1][join_ref_size][ref_size][topic_size][status_size][join_ref][ref][topic][status][payload]
//   kind 2, broadcast, server -> client:
//     [2][topic_size][event_size][topic][event][payload]
//
// A null join_ref or ref is the empty string in a binary frame (Phoenix's to_string(nil)).
// A field longer than 255 bytes cannot be encoded: the encoders return KRONOP_ETOOBIG.
//
// Escaping. Everything that reaches an outgoing text frame is JSON text that is known to be
// valid, and this file never escapes a string by hand:
//  - join_ref, ref, topic and event of a client text message are carried as the JSON text
//    simdjson re-serializes from its parse (the `json` views of ClientMessage): the server
//    echoes those views, never the decoded strings, so a ref with quotes, backslashes,
//    control characters or non-ASCII goes back exactly as the client meant it.
//  - the same fields of a client binary push are raw bytes, which have no JSON form of their
//    own; the parser accepts them only when they need no escaping at all (json_safe:
//    printable ASCII other than '"' and '\'), so their JSON form is the bytes in quotes. The
//    official client cannot send anything else there anyway (its encoder writes one byte
//    per UTF-16 unit), and every valid Kronop topic and event is json_safe.
//  - server-chosen strings (event names, the topic of a broadcast) are json_safe by
//    construction: valid_topic/valid_event (envelope_validation.h) allow only such
//    characters. The encoders that take them plain assert it in debug builds.
//  - payloads and responses are given as JSON text the caller has validated (a publisher's
//    JSON object checked at ingest, a response built from constants or parsed text).
//
// Lifetimes. A ClientMessage holds views, never copies: into the frame it was parsed from
// (binary fields and payload), and into its MessageParser (decoded strings and JSON forms of
// text messages). They are valid until the next parse on the same MessageParser and while
// the frame's bytes live; the server stores what it keeps (a channel's join_ref and topic)
// in its own strings.
//
// Allocation. Each encoder makes one allocation of the exact size of the frame. The fan-out
// path (one broadcast frame per message, the same bytes for every subscriber) can also write
// the frame into a buffer of its own (text_broadcast_size / write_text_broadcast), e.g. after
// the WebSocket header it reserves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kronop/result.h"

namespace kronop::daemon::phoenix {

// Largest message MessageParser accepts by default: the WebSocket layer's message limit.
inline constexpr std::size_t kDefaultMaxMessage = 64 * 1024;
// Binary frames' field sizes are single bytes.
inline constexpr std::size_t kMaxBinaryField = 255;
// Longest join_ref or ref accepted, in bytes of its JSON text between the quotes (for the
// refs clients send, its characters). A socket keeps each channel's join_ref (and a
// pending join its ref) for as long as the channel lives, so without a bound 100 channels
// of 64 KiB refs cost 6.4 MB per socket. Clients send short decimal counters (phoenix.js:
// "1", "2", ...; at most 16 digits before its counter wraps), so 64 leaves room for any
// ref scheme in use (a UUID is 36) and bounds a channel's kept text to 64 bytes and its
// topic's (valid_topic: a prefix and an id of at most 128 bytes).
inline constexpr std::size_t kMaxRef = 64;

// Kinds of V2 binary frames (the first byte).
enum class BinaryKind : uint8_t { kPush = 0, kReply = 1, kBroadcast = 2 };

// True when `s` can be put between quotes as a JSON string unchanged: every byte is
// printable ASCII (0x20..0x7E) other than '"' and '\'.
bool json_safe(std::string_view s);

// ---------------------------------------------------------------------------------------
// Parsing client messages

enum class ParseError : uint8_t {
  kNone = 0,
  kTooLarge,     // longer than the parser's maximum message size
  kNotJson,      // text frame that is not JSON, or has a number simdjson cannot hold
                 // (an integer beyond 64 bits, a double beyond its range)
  kNotArray,     // JSON, but not an array (e.g. a V1 {"topic":...} object)
  kWrongArity,   // an array of other than five elements
  kBadJoinRef,   // join_ref is neither a string nor null
  kBadRef,       // ref is neither a string nor null
  kBadTopic,     // topic is not a string
  kBadEvent,     // event is not a string
  kTruncated,    // binary frame shorter than its header, or sizes pointing past its end
  kBadKind,      // binary frame of a kind clients do not send (only kind 0, push)
  kUnsafeField,  // binary frame whose join_ref, ref, topic or event is not json_safe
  kRefTooLong,   // join_ref or ref longer than kMaxRef
  kCount
};
// A short stable name ("not_json", ...) for logs and stats.
const char *parse_error_name(ParseError e);
// A sentence for logs and close reasons ("message is not a JSON array"); each fits the
// 123 bytes a WebSocket close reason may have.
const char *parse_error_message(ParseError e);

// join_ref or ref as the client sent it.
struct Ref {
  bool is_null = true;
  std::string_view value;         // decoded string; empty when null
  std::string_view json{"null"};  // JSON text to echo back: null or a quoted, escaped string
};

enum class PayloadKind : uint8_t {
  kObject,     // text frame, payload is a JSON object
  kOtherJson,  // text frame, payload is another JSON value
  kBinary,     // binary frame: the payload bytes as sent
};

struct ClientMessage {
  Ref join_ref;
  Ref ref;
  std::string_view topic;       // decoded
  std::string_view topic_json;  // quoted, escaped
  std::string_view event;       // decoded
  std::string_view event_json;  // quoted, escaped
  PayloadKind payload_kind = PayloadKind::kObject;
  // JSON text (minified by simdjson: numbers re-printed, insignificant whitespace removed)
  // for a text frame; the bytes after the header for a binary frame.
  std::string_view payload;
};

// Result of reading one member of a text message's payload object.
enum class Lookup : uint8_t {
  kFound,
  kAbsent,     // no such member, or the payload is not a JSON object
  kWrongType,  // the member exists but has another type
};

// Parses client messages. Keeps a simdjson parser and buffers, reused from one message to
// the next: one per event loop (thread), not per connection. Not thread-safe.
class MessageParser {
 public:
  explicit MessageParser(std::size_t max_message = kDefaultMaxMessage);
  ~MessageParser();
  MessageParser(const MessageParser &) = delete;
  MessageParser &operator=(const MessageParser &) = delete;

  // A text frame's message. On kNone, `out` holds the message; otherwise `out` is reset.
  ParseError parse_text(std::string_view frame, ClientMessage &out);
  // A binary frame's message (kind 0 only). Same contract.
  ParseError parse_binary(std::string_view frame, ClientMessage &out);

  // Members of the payload object of the last message parse_text accepted (e.g. a join's
  // {"last_seq": N, "epoch": E}): kAbsent after parse_binary or a failed parse. An unsigned
  // integer is a JSON integer in 0..2^64-1 (not 5.0, not -1); a null member is absent.
  // A string's view is valid until the next parse. With duplicate keys the first counts.
  Lookup payload_uint(std::string_view key, uint64_t &value) const;
  Lookup payload_string(std::string_view key, std::string_view &value) const;

  // Whether `view` lies inside one of the buffers this parser keeps a ClientMessage's
  // strings in: lets tests and the fuzzer check where a message's views point.
  bool owns(std::string_view view) const;

 private:
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
};

// ---------------------------------------------------------------------------------------
// Encoding server messages as text frames. Parameters named *_json are JSON text copied
// verbatim (see "Escaping" above); plain topic/event parameters must be json_safe.

enum class ReplyStatus : uint8_t { kOk, kError };
std::string_view reply_status_name(ReplyStatus s);  // "ok", "error"

// [join_ref, ref, topic, event, payload], each given as JSON text.
std::string encode_message(std::string_view join_ref_json, std::string_view ref_json,
                           std::string_view topic_json, std::string_view event_json,
                           std::string_view payload_json);

// [join_ref, ref, topic, "phx_reply", {"response":RESPONSE,"status":"ok"|"error"}]
std::string encode_reply(std::string_view join_ref_json, std::string_view ref_json,
                         std::string_view topic_json, ReplyStatus status,
                         std::string_view response_json);

// A push to one joined channel: [join_ref, null, topic, "EVENT", payload] (Phoenix's
// channel push carries the channel's join_ref and no ref). `event` must be json_safe.
std::string encode_push(std::string_view join_ref_json, std::string_view topic_json,
                        std::string_view event, std::string_view payload_json);

// [join_ref, join_ref, topic, "phx_close", {}]: the channel was closed by the server (after a
// leave, or when a second join of the same topic replaces it).
std::string encode_close(std::string_view join_ref_json, std::string_view topic_json);
// [join_ref, join_ref, topic, "phx_error", {}]: the channel crashed; the client rejoins.
std::string encode_error(std::string_view join_ref_json, std::string_view topic_json);

// The fan-out frame: [null,null,"TOPIC","EVENT",PAYLOAD]. topic and event have passed
// valid_topic/valid_event, so they are json_safe and are written between quotes unchanged
// (asserted in debug builds).
std::size_t text_broadcast_size(std::string_view topic, std::string_view event,
                                std::string_view payload_json);
// Writes exactly text_broadcast_size(...) bytes at `out`; returns the end.
char *write_text_broadcast(char *out, std::string_view topic, std::string_view event,
                           std::string_view payload_json);
std::string encode_text_broadcast(std::string_view topic, std::string_view event,
                                  std::string_view payload_json);

// ---------------------------------------------------------------------------------------
// Binary (V2) frames, server -> client. Fields are plain bytes (a null ref is ""); a field
// longer than 255 bytes is KRONOP_ETOOBIG.

// Kind 2: [2][topic_size][event_size][topic][event][payload]
Result<std::string> encode_binary_broadcast(std::string_view topic, std::string_view event,
                                            std::string_view payload);
// Kind 1: [1][join_ref_size][ref_size][topic_size][status_size][join_ref][ref][topic][status]
// [payload]
Result<std::string> encode_binary_reply(std::string_view join_ref, std::string_view ref,
                                        std::string_view topic, ReplyStatus status,
                                        std::string_view payload);
// Kind 0, server layout: [0][join_ref_size][topic_size][event_size][join_ref][topic][event]
// [payload]
Result<std::string> encode_binary_push(std::string_view join_ref, std::string_view topic,
                                       std::string_view event, std::string_view payload);

// A server -> client binary frame decoded as phoenix.js decodes it (views into `frame`);
// used by the tests and the fuzzer to check the encoders, and usable by a debugging client.
struct ServerBinaryFrame {
  BinaryKind kind = BinaryKind::kPush;
  std::string_view join_ref;  // empty for a broadcast
  std::string_view ref;       // empty for a push or a broadcast
  std::string_view topic;
  std::string_view event;  // the event; for a reply, the status ("ok", "error")
  std::string_view payload;
};
ParseError decode_server_binary(std::string_view frame, ServerBinaryFrame &out);

}  // namespace kronop::daemon::phoenix
