// Small SQLite helpers shared by the durable log's files (log_store.cc, log_rows.cc).
#pragma once

#include <sqlite3.h>

#include <cstdint>

namespace kronop::daemon::log_sql {

inline bool exec(sqlite3 *db, const char *sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

// As signed 64-bit for SQLite; the bits are the producer's id.
inline int64_t as_i64(uint64_t v) { return static_cast<int64_t>(v); }

}  // namespace kronop::daemon::log_sql
