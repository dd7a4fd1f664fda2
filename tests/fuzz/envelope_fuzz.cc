// Fuzz target for kronopd's parser of ring records: EnvelopeValidator::validate, which
// reads bytes a producer wrote into shared memory and so must survive anything.
//
// Besides "no crash, no sanitizer report", a record the validator accepts must satisfy
// what the ingest stage relies on:
//  - every view (topic, event, body) lies inside the record (zero-copy: nothing else is
//    valid once the ring space is released);
//  - topic and event pass valid_topic / valid_event, the priority is a known one, and there
//    is exactly one body kind; a JSON body is a JSON object;
//  - where protobuf's own generated parser also accepts the record, both agree on every
//    field: the hand-written single-pass parser means what the schema means.
//    (The converse does not hold and is not checked: protobuf keeps a known field with
//    the wrong wire type as an unknown field and merges repeated sub-messages, where the
//    validator rejects or takes the last occurrence.)
//  - the fan-out encoder takes every accepted record: a typed body converts to JSON with
//    "seq" first, and the Envelope sent to protobuf clients parses, with the record's
//    topic, event and body kind (or JSON, when a JSON body does not map onto its event's
//    schema).
#include <google/protobuf/stubs/logging.h>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "envelope_validation.h"
#include "fanout.h"
#include "fuzz_check.h"
#include "kronop/v1/envelope.pb.h"

using kronop::BodyKind;
using kronop::EnvelopeValidator;
using kronop::EnvelopeView;
using kronop::Reject;

namespace {

bool inside(std::string_view view, std::string_view record) {
  if (view.empty()) return true;
  return view.data() >= record.data() && view.size() <= record.size() &&
         view.data() - record.data() <= static_cast<std::ptrdiff_t>(record.size() - view.size());
}

void check_agrees_with_protobuf(std::string_view record, const EnvelopeView &view) {
  kronop::v1::Envelope pb;
  if (!pb.ParseFromArray(record.data(), static_cast<int>(record.size()))) return;
  FUZZ_CHECK(pb.topic() == view.topic);
  FUZZ_CHECK(pb.event() == view.event);
  FUZZ_CHECK(pb.producer_id() == view.producer_id);
  FUZZ_CHECK(pb.producer_seq() == view.producer_seq);
  FUZZ_CHECK(pb.publish_time_ns() == view.publish_time_ns);
  FUZZ_CHECK(static_cast<int>(pb.priority()) == view.priority);
  // The oneof's field numbers are the BodyKind values.
  FUZZ_CHECK(static_cast<int>(pb.body_case()) == static_cast<int>(view.body_kind));
  if (view.body_kind == BodyKind::kJson) FUZZ_CHECK(pb.json() == view.body);
}

void check_fan_out_encoding(const EnvelopeView &view) {
  static uint64_t seq = 0;
  ++seq;
  auto m = kronop::daemon::Message::make(view, seq);
  if (!m) {
    // Only a typed body may fail to convert (e.g. a string with invalid UTF-8, which the
    // JSON printer refuses); a JSON body is taken as it is.
    FUZZ_CHECK(view.body_kind != BodyKind::kJson);
    return;
  }
  FUZZ_CHECK(m->payload_json().rfind("{\"seq\":" + std::to_string(seq), 0) == 0);
  FUZZ_CHECK(m->phoenix_text() && m->plain_text());
  kronop::v1::Envelope env;
  FUZZ_CHECK(env.ParseFromString(kronop::daemon::client_envelope(*m)));
  FUZZ_CHECK(env.topic() == view.topic && env.event() == view.event && env.seq() == seq);
  if (view.body_kind == BodyKind::kJson) {
    FUZZ_CHECK(env.body_case() != kronop::v1::Envelope::BODY_NOT_SET);
    if (env.body_case() == kronop::v1::Envelope::kJson) FUZZ_CHECK(env.json() == view.body);
  } else {
    FUZZ_CHECK(static_cast<int>(env.body_case()) == static_cast<int>(view.body_kind));
  }
  FUZZ_CHECK(m->phoenix_binary() != nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // Protobuf logs invalid UTF-8 in typed bodies at ERROR level; for fuzz inputs that is
  // noise (kronopd routes the same lines to its debug log).
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // One validator for the whole run, as the ingest thread keeps one: state carried from
  // one record to the next (parser scratch, reused messages) is part of what is tested.
  static EnvelopeValidator validator;
  const std::string_view record(reinterpret_cast<const char *>(data), size);

  EnvelopeView view;
  const Reject r = validator.validate(record, view);
  FUZZ_CHECK(r < Reject::kCount);
  FUZZ_CHECK(kronop::reject_name(r) != nullptr);
  if (r == Reject::kNone) {
    FUZZ_CHECK(inside(view.topic, record));
    FUZZ_CHECK(inside(view.event, record));
    FUZZ_CHECK(inside(view.body, record));
    FUZZ_CHECK(kronop::valid_topic(view.topic));
    FUZZ_CHECK(kronop::valid_event(view.event));
    FUZZ_CHECK(view.priority >= 0 && view.priority <= 3);
    FUZZ_CHECK(view.body_kind >= BodyKind::kJson && view.body_kind <= BodyKind::kSystemNotice);
    if (view.body_kind == BodyKind::kJson) {
      FUZZ_CHECK(validator.check_json_object(view.body) == Reject::kNone);
    }
    check_agrees_with_protobuf(record, view);
    check_fan_out_encoding(view);
  }

  // The same bytes as a JSON payload: check_json_object is also what kronopctl publish
  // runs on operator input.
  const Reject j = validator.check_json_object(record);
  FUZZ_CHECK(j == Reject::kNone || j == Reject::kBadJson || j == Reject::kNotJsonObject ||
             j == Reject::kReservedKey);
  return 0;
}
