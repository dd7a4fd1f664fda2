// The durable log's retention (log_store.h, LogOptions): by age, whole blocks whose time is
// past --retention-hours (a range of ids); by count, each topic's blocks wholly beyond its
// newest --retention-count messages, then the block across the line written again without
// its older messages. The writer runs a round between its transactions about once a second;
// each round stops after trim_budget_ms, each chunk of blocks is a short transaction of its
// own, so trimming keeps pace with logging without holding it up.
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "log_block.h"
#include "log_sql.h"
#include "log_store.h"

namespace kronop::daemon {

using log_sql::as_i64;
using log_sql::exec;

uint64_t LogStore::delete_blocks(const char *select, int64_t a, int64_t b) {
  // The chunk's ids and counts first, then each row by its id: a DELETE ... RETURNING would
  // read every deleted row whole (its data too: a block's overflow pages, copied into a
  // buffer malloc maps afresh) only to return its count.
  sqlite3_stmt *st = nullptr, *del = nullptr;
  if (sqlite3_prepare_v2(db_, select, -1, &st, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, "DELETE FROM blocks WHERE id = ?1", -1, &del, nullptr) != SQLITE_OK) {
    sqlite3_finalize(st);
    return 0;
  }
  sqlite3_bind_int64(st, 1, a);
  sqlite3_bind_int64(st, 2, b);
  const std::size_t most = std::max<std::size_t>(options_.trim_chunk, 1);
  trim_blocks_ = std::clamp<std::size_t>(trim_blocks_, 1, most);
  sqlite3_bind_int64(st, 3, static_cast<int64_t>(trim_blocks_));
  uint64_t records = 0;
  std::vector<int64_t> ids;
  const auto started = std::chrono::steady_clock::now();
  bool ok = exec(db_, "BEGIN IMMEDIATE");
  int rc = SQLITE_DONE;
  while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    ids.push_back(sqlite3_column_int64(st, 0));
    records += static_cast<uint64_t>(sqlite3_column_int64(st, 1));
  }
  ok = ok && rc == SQLITE_DONE;
  for (std::size_t i = 0; ok && i < ids.size(); ++i) {
    sqlite3_reset(del);
    sqlite3_bind_int64(del, 1, ids[i]);
    ok = sqlite3_step(del) == SQLITE_DONE;
  }
  sqlite3_finalize(st);
  sqlite3_finalize(del);
  if (ok && exec(db_, "COMMIT")) {
    // The next chunk: as many blocks as this one's cost per block fits in trim_chunk_ms, at
    // most twice as many as this one.
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count();
    if (!ids.empty()) {
      const double fit = double(std::max<uint64_t>(options_.trim_chunk_ms, 1)) *
                         double(ids.size()) / std::max(ms, 0.001);
      trim_blocks_ = std::clamp<std::size_t>(static_cast<std::size_t>(fit), 1,
                                             std::min(most, 2 * trim_blocks_));
    }
    return records;
  }
  exec(db_, "ROLLBACK");
  return 0;
}

uint64_t LogStore::cut_block(int64_t topic_id, int64_t upto) {
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT id, count, format, data FROM blocks WHERE topic_id = ?1 AND "
                         "last_seq > ?2 AND first_seq <= ?2",
                         -1, &st, nullptr) != SQLITE_OK) {
    return 0;
  }
  sqlite3_bind_int64(st, 1, topic_id);
  sqlite3_bind_int64(st, 2, upto);
  std::vector<StoredMessage> kept;
  int64_t id = 0, count = 0;
  bool ok = false;
  if (exec(db_, "BEGIN IMMEDIATE") && sqlite3_step(st) == SQLITE_ROW) {
    id = sqlite3_column_int64(st, 0);
    count = sqlite3_column_int64(st, 1);
    StoredMessage m;
    ok = codec_
             ->decode(sqlite3_column_int(st, 2), sqlite3_column_blob(st, 3),
                      static_cast<std::size_t>(sqlite3_column_bytes(st, 3)), m,
                      [&](const StoredMessage &r) {
                        if (r.seq > static_cast<uint64_t>(upto)) kept.push_back(r);
                        return true;
                      })
             .ok() &&
         !kept.empty();
  }
  sqlite3_finalize(st);
  if (ok) {
    std::vector<const StoredMessage *> refs;
    for (const auto &r : kept) refs.push_back(&r);
    const auto encoded = codec_->encode(refs);
    const BlockSpan times = log_sql::span_of(refs);
    ok = sqlite3_prepare_v2(db_,
                            "UPDATE blocks SET first_seq = ?2, count = ?3, min_time_ns = ?4, "
                            "max_time_ns = ?5, format = ?6, data = ?7 WHERE id = ?1",
                            -1, &st, nullptr) == SQLITE_OK;
    if (ok) {
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_int64(st, 2, as_i64(kept.front().seq));
      sqlite3_bind_int64(st, 3, static_cast<int64_t>(kept.size()));
      sqlite3_bind_int64(st, 4, as_i64(times.min_time_ns));
      sqlite3_bind_int64(st, 5, as_i64(times.max_time_ns));
      sqlite3_bind_int(st, 6, static_cast<int>(encoded.format));
      sqlite3_bind_blob(st, 7, encoded.data.data(), static_cast<int>(encoded.data.size()),
                        SQLITE_STATIC);
      ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
  }
  if (ok && exec(db_, "COMMIT")) return static_cast<uint64_t>(count) - kept.size();
  exec(db_, "ROLLBACK");
  return 0;
}

uint64_t LogStore::trim(uint64_t now_ns) {
  uint64_t deleted = 0;
  const auto give_up = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(std::max<uint64_t>(options_.trim_budget_ms, 1));
  // A round stops at its budget, but not before it has deleted something: a busy machine
  // that makes the queries below slower than the budget must not stall retention.
  auto in_time = [&] { return deleted == 0 || std::chrono::steady_clock::now() < give_up; };
  if (options_.retention_age_ms > 0 && now_ns / 1'000'000 > options_.retention_age_ms) {
    // Blocks whose time is before the cutoff: the oldest ids (the schema's comment).
    const auto cutoff_id =
        static_cast<int64_t>((now_ns / 1'000'000 - options_.retention_age_ms) << kBlockIdTimeShift);
    for (uint64_t n = 1; n > 0 && in_time();) {
      n = delete_blocks("SELECT id, count FROM blocks WHERE id < ?1 ORDER BY id LIMIT ?3",
                        cutoff_id, 0);
      deleted += n;
    }
  }
  if (options_.retention_count > 0) {
    // Topics that hold more than the count: their blocks wholly beyond it, then the one
    // across the line.
    std::vector<std::pair<int64_t, int64_t>> over;  // topic id, highest seq to delete
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT t.id, t.last_seq - ?1 FROM topics t WHERE t.last_seq > ?1 "
                           "AND EXISTS (SELECT 1 FROM blocks b WHERE b.topic_id = t.id AND "
                           "b.last_seq > 0 AND b.first_seq <= t.last_seq - ?1)",
                           -1, &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(options_.retention_count));
      while (sqlite3_step(st) == SQLITE_ROW) {
        over.emplace_back(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
      }
    }
    sqlite3_finalize(st);
    for (const auto &[topic, upto] : over) {
      for (uint64_t n = 1; n > 0 && in_time();) {
        n = delete_blocks(
            "SELECT id, count FROM blocks WHERE topic_id = ?1 AND last_seq <= ?2 LIMIT ?3", topic,
            upto);
        deleted += n;
      }
      if (!in_time()) break;
      deleted += cut_block(topic, upto);
    }
  }
  counters_.trimmed.fetch_add(deleted, std::memory_order_relaxed);
  return deleted;
}

uint64_t LogStore::trim_all(uint64_t now_ns) {
  uint64_t total = 0;
  for (uint64_t n; (n = trim(now_ns)) > 0;) total += n;
  return total;
}

}  // namespace kronop::daemon
