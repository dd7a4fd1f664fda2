// Fuzz target for the bodies REST callers and clients send about reels and users
// (rest_api.h, client_pushes.h): POST /api/v1/reels/:id/updates, POST /api/v1/users/:id/presence
// (JSON and protobuf), and like / comment / share pushes.
//
// The first byte picks the parser (and content type); the rest is the body. Besides "no
// crash, no sanitizer report":
//  - an accepted reel update becomes an Envelope that the daemon's own record validation
//    accepts (a JSON object body without "seq", or a typed ReelUpdate), on the path's topic;
//  - every refusal has a 4xx status and a message;
//  - an accepted status change has a known status, a reel >= 0 and a short activity;
//  - an accepted comment's text is 1 to max bytes, likes and shares carry none.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "client_pushes.h"
#include "envelope_validation.h"
#include "fuzz_check.h"
#include "rest_api.h"

using namespace kronop;
using namespace kronop::daemon;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  static EnvelopeValidator validator;
  const uint8_t selector = data[0];
  const std::string_view body(reinterpret_cast<const char *>(data) + 1, size - 1);
  const bool protobuf = (selector & 1) != 0;
  const std::string_view type = protobuf ? "application/x-protobuf" : "application/json";
  auto check_refusal = [](const BodyError &e) {
    FUZZ_CHECK(e.status >= 400 && e.status < 500);
    FUZZ_CHECK(!e.message.empty());
  };

  switch ((selector >> 1) % 3) {
    case 0: {
      kronop::v1::Envelope envelope;
      const std::string_view topic = (selector & 8) ? "reel:abc" : "reel:42";
      BodyError e = parse_reel_update(topic, type, body, 1'700'000'000'000'000'000ULL, &envelope);
      if (!e.ok()) {
        check_refusal(e);
        break;
      }
      FUZZ_CHECK(envelope.topic() == topic && envelope.event() == "reel_update");
      FUZZ_CHECK(protobuf ? envelope.has_reel_update() : envelope.has_json());
      const std::string record = envelope.SerializeAsString();
      EnvelopeView view;
      FUZZ_CHECK(validator.validate(record, view) == Reject::kNone);
      break;
    }
    case 1: {
      StatusChange change;
      BodyError e = parse_status_change(type, body, &change);
      if (!e.ok()) {
        check_refusal(e);
        break;
      }
      FUZZ_CHECK(change.current_reel >= 0);
      FUZZ_CHECK(change.activity.size() <= 128);
      FUZZ_CHECK(PresenceHub::status_name(change.status) != nullptr);
      break;
    }
    default: {
      static constexpr std::string_view kEvents[] = {"like", "comment", "share", "comment"};
      const std::string_view event = kEvents[(selector >> 4) & 3];
      constexpr std::size_t kMax = 64;
      kronop::v1::Interaction in;
      PushError e = read_interaction(event, body, kMax, &in);
      if (!e.ok()) {
        FUZZ_CHECK(e.fault == PushFault::kInvalid || e.fault == PushFault::kTooLong);
        FUZZ_CHECK(!e.reason.empty());
        break;
      }
      if (event == "comment") {
        FUZZ_CHECK(!in.text().empty() && in.text().size() <= kMax);
        FUZZ_CHECK(in.kind() == kronop::v1::Interaction::KIND_COMMENT);
      } else {
        FUZZ_CHECK(in.text().empty());
      }
      break;
    }
  }
  return 0;
}
