// What clients push on a joined channel besides joins and leaves: likes, comments and shares
// on reel:<id> topics, and update_presence on the user's own user:<id> topic.
//
// The parsers here speak the domain, not a transport: a refusal is a PushError (what is
// wrong, and a sentence saying so). The Phoenix reply maps it to {"reason": ...}
// (phoenix_reason), the REST API to an HTTP status (rest_api.h, http_status). The sentences
// are the daemon's own (no quotes or backslashes, never an echo of the input), so they go
// between JSON quotes as they are.
//
// ClientPushes handles a push on the loop's thread: a like, comment or share is checked,
// counted against the user's rate, and published into the rings through the daemon's own
// producer, so it is numbered (and counted, see ReelState) like any record; the viewers,
// the pushing socket included, get it as an `interaction` broadcast.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kronop/v1/envelope.pb.h"
#include "phoenix.h"
#include "presence.h"

namespace simdjson::dom {
class object;
}

namespace kronop::daemon {

class ClientServer;
struct Connection;

// Why a push (or a REST body of the same kind) is refused.
enum class PushFault : uint8_t {
  kNone,
  kInvalid,          // malformed, a bad field, an unknown event
  kTooLong,          // a comment over --max-comment-bytes
  kUnsupportedType,  // a REST body's Content-Type that is neither JSON nor protobuf
  kUnauthenticated,  // an anonymous socket
  kRateLimited,      // over --max-interactions-per-second
  kBusy,             // the daemon's ring is full
};

struct PushError {
  PushFault fault = PushFault::kNone;
  std::string reason;
  bool ok() const { return fault == PushFault::kNone; }
};

// A body or payload as a JSON object (the parser is per thread; the object lives until the
// thread's next call).
PushError read_json_object(std::string_view body, simdjson::dom::object *out);

// The phx_reply error payload for a refusal: {"reason":"..."}.
std::string phoenix_reason(const PushError &e);

// A status change: from POST /api/v1/users/:id/presence or the user's channel push.
struct StatusChange {
  PresenceHub::Status status = PresenceHub::Status::kOnline;
  int32_t current_reel = 0;
  std::string activity;
};
// JSON {"status": "online"|"away"|"offline", "current_reel": N (or "N"), "activity": "..."}
// (status required, activity at most 128 bytes), or, with `protobuf`, a PresenceUpdate.
PushError read_status_change(bool protobuf, std::string_view body, StatusChange *out);

// A client's like / comment / share push on reel:<id>: `event` is "like", "comment" or
// "share"; `payload` the push's JSON payload: {} for like and share, {"text": "..."} (1 to
// max_comment_bytes bytes of UTF-8) for comment. Fills the Interaction's kind and text.
PushError read_interaction(std::string_view event, std::string_view payload,
                           std::size_t max_comment_bytes, kronop::v1::Interaction *out);

class ClientPushes {
 public:
  explicit ClientPushes(ClientServer &server) : server_(server) {}
  // A client event on a joined channel; anything not handled is answered "unhandled event".
  void handle(Connection *c, const phoenix::ClientMessage &m);

 private:
  // Publishes a like, comment or share; the error, or the accepted interaction's id.
  PushError interact(Connection *c, const phoenix::ClientMessage &m, std::string *id);

  ClientServer &server_;
  uint32_t interaction_ids_ = 0;
};

}  // namespace kronop::daemon
