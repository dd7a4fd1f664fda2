// The durable log's rows beside the messages (log_store.h): what numbering resumes from
// (topics, producers), users' last-known presence, and the cluster outbox's marks — read at
// start, written by the writer thread with its transactions.
#include <sqlite3.h>

#include "log_sql.h"
#include "log_store.h"

namespace kronop::daemon {

using log_sql::as_i64;
using log_sql::exec;

namespace {
// Calls fn(statement) for each row `sql` gives (none when it cannot be prepared).
template <class Fn>
void each_row(sqlite3 *db, const char *sql, Fn &&fn) {
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) fn(st);
  }
  sqlite3_finalize(st);
}

uint64_t column_u64(sqlite3_stmt *st, int i) {
  return static_cast<uint64_t>(sqlite3_column_int64(st, i));
}
const char *column_text(sqlite3_stmt *st, int i) {
  return reinterpret_cast<const char *>(sqlite3_column_text(st, i));
}
}  // namespace

std::unordered_map<std::string, LogStore::TopicState> LogStore::topics() {
  std::unordered_map<std::string, TopicState> out;
  each_row(db_, "SELECT name, last_seq, epoch FROM topics", [&out](sqlite3_stmt *st) {
    out[column_text(st, 0)] = TopicState{column_u64(st, 1), column_u64(st, 2)};
  });
  return out;
}

std::unordered_map<uint64_t, uint64_t> LogStore::producers() {
  std::unordered_map<uint64_t, uint64_t> out;
  each_row(db_, "SELECT producer_id, last_seq FROM producers",
           [&out](sqlite3_stmt *st) { out[column_u64(st, 0)] = column_u64(st, 1); });
  return out;
}

std::vector<UserRow> LogStore::users() {
  std::vector<UserRow> out;
  each_row(
      db_,
      "SELECT user_id, status, current_reel, activity, last_seen_ms FROM presence ORDER BY "
      "last_seen_ms",
      [&out](sqlite3_stmt *st) {
        out.push_back(UserRow{column_text(st, 0), sqlite3_column_int(st, 1),
                              sqlite3_column_int(st, 2), column_text(st, 3), column_u64(st, 4)});
      });
  return out;
}

std::vector<LogStore::OutboxTopic> LogStore::outbox() {
  std::vector<OutboxTopic> out;
  each_row(db_,
           "SELECT t.name, o.taken_seq, t.last_seq FROM cluster_outbox o JOIN topics t ON t.id = "
           "o.topic_id WHERE t.last_seq > o.taken_seq",
           [&out](sqlite3_stmt *st) {
             out.push_back(OutboxTopic{column_text(st, 0), column_u64(st, 1), column_u64(st, 2)});
           });
  return out;
}

void LogStore::submit_taken(const std::string &topic, uint64_t seq) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wake = idle();
    uint64_t &mark = taken_[topic];
    mark = std::max(mark, seq);
  }
  if (wake) wake_.notify_one();
}

bool LogStore::write_taken(const std::unordered_map<std::string, uint64_t> &marks) {
  if (marks.empty()) return true;
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "UPDATE cluster_outbox SET taken_seq = max(taken_seq, ?2) WHERE "
                         "topic_id = (SELECT id FROM topics WHERE name = ?1)",
                         -1, &st, nullptr) != SQLITE_OK)
    return false;
  bool ok = exec(db_, "BEGIN IMMEDIATE");
  for (auto it = marks.begin(); ok && it != marks.end(); ++it) {
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, it->first.data(), static_cast<int>(it->first.size()), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, as_i64(it->second));
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (ok && exec(db_, "COMMIT")) return true;
  exec(db_, "ROLLBACK");
  return false;
}

void LogStore::submit_user(UserRow row) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string key = row.user_id;
    user_rows_[std::move(key)] = std::move(row);
  }
  wake_.notify_one();
}

bool LogStore::write_users(const std::unordered_map<std::string, UserRow> &rows) {
  if (rows.empty()) return true;
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "INSERT INTO presence (user_id, status, current_reel, activity, "
                         "last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id) DO "
                         "UPDATE SET status = ?2, current_reel = ?3, activity = ?4, "
                         "last_seen_ms = ?5",
                         -1, &st, nullptr) != SQLITE_OK)
    return false;
  bool ok = exec(db_, "BEGIN IMMEDIATE");
  for (auto it = rows.begin(); ok && it != rows.end(); ++it) {
    const UserRow &r = it->second;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, r.user_id.data(), static_cast<int>(r.user_id.size()), SQLITE_STATIC);
    sqlite3_bind_int(st, 2, r.status);
    sqlite3_bind_int(st, 3, r.current_reel);
    sqlite3_bind_text(st, 4, r.activity.data(), static_cast<int>(r.activity.size()), SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, as_i64(r.last_seen_ms));
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (ok && exec(db_, "COMMIT")) return true;
  exec(db_, "ROLLBACK");
  return false;
}

}  // namespace kronop::daemon
