// The one codec between Kronop's protobuf messages and the JSON that clients, scripts and
// operators read: client payloads of typed bodies, JSON bodies typed for protobuf clients,
// and operator JSON (REST responses, /api/v1/system/*, kronopctl --json).
//
// The JSON rules, stated once (README "JSON payloads" shows every event):
//  - Field names are the proto field names (`like_count`, not `likeCount`).
//  - Integers are JSON numbers: counts, sequence numbers, epochs (53 random bits at most),
//    millisecond timestamps, sizes, latencies in nanoseconds. A 64-bit integer field that is
//    an identifier (its name ends in `_id`: `producer_id`, random 64 bits) is a string, as
//    JavaScript would round it above 2^53.
//  - Timestamps are numbers in Unix milliseconds (`timestamp`, `online_at`, `uptime_ms`) or
//    RFC 3339 strings (`last_seen`, kronopctl's `time`). Nanosecond times
//    (Envelope.publish_time_ns, above 2^53) never appear in JSON as numbers.
//  - Enum values are lower-case words without their type's prefix: Interaction.KIND_LIKE is
//    "like", PresenceUpdate.STATUS_ONLINE "online", PRIORITY_HIGH "high",
//    SystemNotice.LEVEL_WARNING "warning". An enum number with no name is its number.
//  - Client payloads leave out fields at their default (proto3); operator JSON prints every
//    scalar, repeated and map field (an unset sub-message or oneof member is left out).
//  - Doubles print in their shortest exact form; NaN and infinities as "NaN", "Infinity",
//    "-Infinity". Bytes are base64. Maps are objects with their keys sorted.
//  - Strings are escaped per RFC 8259: '"', '\' and control characters; UTF-8 passes as is
//    (an invalid byte, which protobuf's own parse refuses anyway, becomes U+FFFD).
//
// Reading JSON into a message (a JSON body for protobuf clients, a pushed interaction)
// accepts what protobuf's JSON parser accepts (proto or lowerCamel names, integers as
// numbers or strings, enum names or numbers, null for "default") and the words above for
// enums ("like" as well as "KIND_LIKE"); a JSON integer where the message has a string is
// its decimal text (so {"update_data":{"likes":3}} is a ReelUpdate). Unknown members are
// refused. Protobuf clients' bytes of typed bodies are never touched by this file.
//
// Thread safety: every function may be called from any thread (the JSON parser is
// thread-local).
#pragma once

#include <google/protobuf/message.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "body_kind.h"

namespace kronop {

// A client payload: the message as a JSON object, fields at their default left out.
std::string payload_to_json(const google::protobuf::Message &m);
// Operator JSON: the message as a JSON object with every field (see above).
std::string to_json(const google::protobuf::Message &m);

// A typed body's bytes parsed as its kind's message; null when they do not parse or `kind`
// is not a typed kind.
std::unique_ptr<google::protobuf::Message> parse_typed_body(BodyKind kind, std::string_view bytes);

// Reads JSON object text into `m` (cleared first). False, with the reason in `error` when
// given, when the text is not an object that maps onto the message.
bool json_to_message(std::string_view json, google::protobuf::Message *m,
                     std::string *error = nullptr);
// A JSON body as its event's message, for protobuf clients: true with the kind and the
// serialized message when the event has a message type and the body maps onto it exactly.
bool json_to_typed(std::string_view event, std::string_view json, BodyKind *kind,
                   std::string *bytes);

// An enum value's JSON word: "like" for KIND_LIKE (the type's prefix dropped, lower case).
std::string enum_word(const google::protobuf::EnumValueDescriptor &v);
// The value of `type` named `text`: its word ("like") or its proto name ("KIND_LIKE"); null
// for anything else.
const google::protobuf::EnumValueDescriptor *enum_value_of(
    const google::protobuf::EnumDescriptor &type, std::string_view text);

// `object_json` (a JSON object, possibly after whitespace) with "seq":N as its first member:
// {} -> {"seq":N}, {"a":1} -> {"seq":N,"a":1}. Leading whitespace is dropped. The caller
// makes sure the object has no "seq" member of its own (validation refuses one: JSON.parse
// keeps the last of duplicate keys). nullopt for text that does not start with '{'.
std::optional<std::string> insert_seq(std::string_view object_json, uint64_t seq);

// The payload JSON clients receive for a body numbered `seq`: the JSON object (a JSON body
// as published, a typed body as its client JSON) with "seq" first. nullopt when the body is
// neither (a typed body that does not parse). `target_users`, when given, receives a typed
// ReelUpdate's target_users.
std::optional<std::string> client_payload(BodyKind kind, std::string_view body, uint64_t seq,
                                          std::vector<std::string> *target_users = nullptr);

// Builds the schema's descriptors (every kronop.v1 file) and the body-kind table now.
// Protobuf builds descriptors on a type's first reflection, behind its own once-flags and
// statics inside libprotobuf, whose fast paths ThreadSanitizer cannot see (the library is not
// instrumented). A program calls this before it starts threads, so that no two threads are
// the first to reflect on a type.
void load_schema();

// Appends `s` as a JSON string (quoted, escaped).
void append_json_string(std::string &out, std::string_view s);

}  // namespace kronop
