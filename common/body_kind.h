// The kinds of body a kronop.v1.Envelope carries, and the one table that ties each typed
// kind to its message type and its event name.
//
// A BodyKind's value is the field number of its member of Envelope's `body` oneof (the ring
// format fixes those numbers), so a kind read off the wire or out of the durable log is the
// enum value as it is. The table is not written out by hand: it is read from the oneof's
// descriptor the first time it is used, so a body added to envelope.proto is known
// everywhere at once. Each typed member's event name is its message type's name in
// snake_case: ReelUpdate -> reel_update, Interaction -> interaction, PresenceUpdate ->
// presence_update, UserActivity -> user_activity, SystemNotice -> system_notice.
//
// Thread safety: the table is built once (a function-local static) and read-only after.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <span>
#include <string>

namespace kronop {

enum class BodyKind : uint8_t {
  kNone = 0,
  kJson = 10,
  kReelUpdate = 11,
  kInteraction = 12,
  kPresence = 13,
  kUserActivity = 14,
  kSystemNotice = 15,
};

// One typed member of Envelope's body oneof.
struct TypedBody {
  BodyKind kind;
  std::string event;                               // "reel_update", ...
  const google::protobuf::Message *prototype;      // kronop.v1.ReelUpdate's default instance, ...
  const google::protobuf::FieldDescriptor *field;  // Envelope's oneof member
};

// Every typed kind (JSON excluded), in field-number order.
std::span<const TypedBody> typed_bodies();
// The entry of a typed kind; null for kJson, kNone and values that are no kind.
const TypedBody *typed_body(BodyKind kind);
// The typed kind whose event name is `event`; null when the event has no message type.
const TypedBody *typed_body_of_event(std::string_view event);

}  // namespace kronop
