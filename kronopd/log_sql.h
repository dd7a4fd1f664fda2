// Small SQLite helpers shared by the durable log's files (log_store.cc, log_rows.cc,
// log_retention.cc, log_migration.cc).
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <span>

#include "log_block.h"
#include "stored_message.h"

namespace kronop::daemon::log_sql {

inline bool exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

// As signed 64-bit for SQLite; the bits are the producer's id.
inline int64_t as_i64(uint64_t v) { return static_cast<int64_t>(v); }

// Adds a row to `blocks`: prepare this, and run it with insert_block().
inline constexpr const char *kInsertBlock =
    "INSERT INTO blocks (id, topic_id, first_seq, last_seq, count, min_time_ns, max_time_ns, "
    "format, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

// A block's span (its seqs, count and publish times).
inline BlockSpan span_of(std::span<const StoredMessage *const> messages) {
  BlockSpan span;
  for (const StoredMessage *m : messages) span.add(*m);
  return span;
}

// Runs `insert` (kInsertBlock) for messages of one topic (not none) spanning `span`, encoded
// as `encoded`; true when the row is in.
inline bool insert_block(sqlite3_stmt *insert, int64_t id, int64_t topic_id, const BlockSpan &span,
                         const LogBlockCodec::Encoded &encoded) {
  sqlite3_reset(insert);
  sqlite3_bind_int64(insert, 1, id);
  sqlite3_bind_int64(insert, 2, topic_id);
  sqlite3_bind_int64(insert, 3, as_i64(span.first_seq));
  sqlite3_bind_int64(insert, 4, as_i64(span.last_seq));
  sqlite3_bind_int64(insert, 5, static_cast<int64_t>(span.count));
  sqlite3_bind_int64(insert, 6, as_i64(span.min_time_ns));
  sqlite3_bind_int64(insert, 7, as_i64(span.max_time_ns));
  sqlite3_bind_int(insert, 8, static_cast<int>(encoded.format));
  sqlite3_bind_blob(insert, 9, encoded.data.data(), static_cast<int>(encoded.data.size()),
                    SQLITE_STATIC);
  return sqlite3_step(insert) == SQLITE_DONE;
}

}  // namespace kronop::daemon::log_sql
