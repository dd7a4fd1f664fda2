// Encodes kronop.v1.Envelope records straight into ring memory with protobuf's wire-format
// primitives, so a publish costs one pass over the payload and no intermediate message.
// The field numbers are those of proto/kronop/v1/envelope.proto; a unit test parses the
// ring bytes with the generated class to keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kronop::ipc::envelope_writer {

inline constexpr int kTopic = 1;
inline constexpr int kEvent = 2;
inline constexpr int kProducerId = 3;
inline constexpr int kProducerSeq = 4;
inline constexpr int kPublishTime = 5;
inline constexpr int kPriority = 6;
inline constexpr int kJson = 10;

struct Identity {
  uint64_t producer_id;
  uint64_t producer_seq;
  uint64_t publish_time_ns;
};

// Size and encoder for the identity trailer (fields 3, 4, 5). Appended after a caller's
// serialized Envelope it overrides any values given there (protobuf: last one wins).
std::size_t identity_size(const Identity &id);
uint8_t *write_identity(const Identity &id, uint8_t *out);

// A whole Envelope with a JSON body.
std::size_t json_envelope_size(std::string_view topic, std::string_view event,
                               std::string_view json, int priority, const Identity &id);
uint8_t *write_json_envelope(std::string_view topic, std::string_view event, std::string_view json,
                             int priority, const Identity &id, uint8_t *out);

}  // namespace kronop::ipc::envelope_writer
