// Validation of the records producers write into the rings: the daemon's parser of
// untrusted shared-memory input (fuzzed by tests/fuzz/envelope_fuzz.cc).
//
// A record must be a well-formed kronop.v1.Envelope with a valid topic and event name and
// exactly one body: a JSON object, or a typed message that parses. The parse is a single
// zero-copy pass with protobuf's CodedInputStream: the result points into the record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "body_kind.h"

namespace kronop {

// The body kinds (Envelope's oneof field numbers) live in the common library.

enum class Reject : uint8_t {
  kNone = 0,
  kMalformed,      // not a protobuf Envelope
  kBadTopic,       // missing, or not reel:<id>, user:<id> or system
  kBadEvent,       // missing, or not [a-z0-9_.-]{1,64}, or a reserved phx_ name
  kBadPriority,    // not a known Priority
  kNoBody,         // no body at all
  kBadJson,        // JSON body that does not parse
  kNotJsonObject,  // JSON body that parses but is not an object
  kReservedKey,    // JSON object with a top-level "seq": the daemon adds that key itself
  kBadTypedBody,   // typed body that does not parse as its message
  kCount
};
const char *reject_name(Reject r);

struct EnvelopeView {
  std::string_view topic;
  std::string_view event;
  uint64_t producer_id = 0;
  uint64_t producer_seq = 0;
  uint64_t publish_time_ns = 0;
  int priority = 0;
  BodyKind body_kind = BodyKind::kNone;
  std::string_view body;  // JSON text, or the typed message's serialized bytes
};

// Topic and event rules, shared with kronopctl so it refuses up front what the daemon
// would reject.
bool valid_topic(std::string_view topic);
bool valid_event(std::string_view event);

// Reusable scratch (JSON parser, typed messages): one per thread.
class EnvelopeValidator {
 public:
  EnvelopeValidator();
  ~EnvelopeValidator();
  EnvelopeValidator(const EnvelopeValidator &) = delete;
  EnvelopeValidator &operator=(const EnvelopeValidator &) = delete;

  // Parses and checks `record`; on kNone, `out` points into `record`. `readable_after`: how
  // many bytes after the record may be read (their values do not matter); with enough of
  // them (the ring reader's copies have kRecordSlack), a JSON body is parsed in place.
  Reject validate(std::string_view record, EnvelopeView &out, std::size_t readable_after = 0);
  // Checks that `text` is one JSON object (shared with kronopctl publish); `readable_after`
  // as above.
  Reject check_json_object(std::string_view text, std::size_t readable_after = 0);

 private:
  struct Scratch;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace kronop
