// StoredMessage: one numbered message as the durable log keeps it. The one type for what the
// log writer takes (LogStore::submit, kronopd) and what the log reader gives back
// (LogReader::read: kronopctl replay and tail, REST history, rejoining clients' history).
//
// It owns its bytes: made from a validated record (of()), never from ring memory, and read
// back from the database decompressed.
#pragma once

#include <cstdint>
#include <string>

#include "body_kind.h"
#include "envelope_validation.h"

namespace kronop {

// The log's schema version (SQLite's PRAGMA user_version): the writer creates this version
// and migrates version 1 (log_migration.h); the reader reads both.
inline constexpr int kLogSchemaVersion = 2;

struct StoredMessage {
  std::string topic;
  uint64_t seq = 0;
  uint64_t epoch = 0;
  uint64_t publish_time_ns = 0;
  std::string event;
  uint64_t producer_id = 0;  // 0: made by kronopd itself (not deduplicated)
  uint64_t producer_seq = 0;
  int priority = 0;
  BodyKind body_kind = BodyKind::kNone;
  std::string body;  // JSON text or the typed message's bytes, as published

  // A copy of a validated record numbered `seq` in stream `epoch`.
  static StoredMessage of(const EnvelopeView &view, uint64_t seq, uint64_t epoch);
  // The record again, pointing into this object (valid while it lives and is unchanged).
  EnvelopeView view() const;
  // The payload clients received (payload_codec.h: client_payload); "{}" when the body does
  // not convert (a row that was not written by kronopd).
  std::string payload_json() const;
};

}  // namespace kronop
