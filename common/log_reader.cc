// Reading the durable log; see log_reader.h.
#include "log_reader.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <zstd.h>

#include <deque>
#include <limits>
#include <optional>
#include <vector>

#include "kronop_ipc.h"
#include "log_block.h"
#include "log_journal.h"

namespace kronop {

Result<std::unique_ptr<LogReader>> LogReader::open(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error{KRONOP_ESYS, path + ": no durable log here (is --data-dir kronopd's?)"};
  }
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    Error e{KRONOP_ESYS, path + ": cannot open the log: " + sqlite3_errmsg(db)};
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *s = nullptr;
  int version = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    version = sqlite3_column_int(s, 0);
  }
  sqlite3_finalize(s);
  if (version < 0) {
    Error e{KRONOP_ESYS, path + ": not a readable SQLite database: " + sqlite3_errmsg(db)};
    sqlite3_close(db);
    return e;
  }
  if (version != kLogSchemaVersion && version != 1) {
    sqlite3_close(db);
    return Error{KRONOP_ELAYOUT, path + ": log schema version " + std::to_string(version) +
                                     ", this kronopctl reads versions 1 and " +
                                     std::to_string(kLogSchemaVersion)};
  }
  return std::unique_ptr<LogReader>(new LogReader(db, path, version));
}

LogReader::LogReader(sqlite3 *db, std::string path, int version)
    : db_(db),
      zstd_(ZSTD_createDCtx()),
      codec_(std::make_unique<LogBlockCodec>()),
      path_(std::move(path)),
      version_(version) {}

LogReader::~LogReader() {
  ZSTD_freeDCtx(zstd_);
  sqlite3_close(db_);
}

std::optional<LogReader::Topic> LogReader::topic(const std::string &name) {
  sqlite3_stmt *s = nullptr;
  std::optional<Topic> out;
  if (sqlite3_prepare_v2(db_, "SELECT last_seq, epoch FROM topics WHERE name = ?1", -1, &s,
                         nullptr) == SQLITE_OK) {
    sqlite3_bind_text(s, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
      out = Topic{static_cast<uint64_t>(sqlite3_column_int64(s, 0)),
                  static_cast<uint64_t>(sqlite3_column_int64(s, 1))};
    }
  }
  sqlite3_finalize(s);
  return out;
}

namespace {

// The WHERE clause both queries of read() share, and its parameters ?1..?7 (?6: the limit).
constexpr const char *kMatch =
    "FROM messages m JOIN topics t ON t.id = m.topic_id "
    "WHERE t.name = ?1 AND m.seq > ?2 AND m.seq <= ?3 "
    "AND m.publish_time_ns >= ?4 AND m.publish_time_ns < ?5 AND (?7 = '' OR m.event = ?7) ";

void bind_query(sqlite3_stmt *s, const LogQuery &q) {
  auto i64 = [](uint64_t v) {
    return static_cast<int64_t>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max()));
  };
  sqlite3_bind_text(s, 1, q.topic.data(), static_cast<int>(q.topic.size()), SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, i64(q.after_seq));
  sqlite3_bind_int64(s, 3, i64(q.until_seq));
  sqlite3_bind_int64(s, 4, i64(q.since_ns));
  sqlite3_bind_int64(s, 5, i64(q.until_ns));
  sqlite3_bind_int64(s, 6, i64(q.limit));
  sqlite3_bind_text(s, 7, q.event.data(), static_cast<int>(q.event.size()), SQLITE_STATIC);
}

}  // namespace

Result<uint64_t> LogReader::read(const LogQuery &q,
                                 const std::function<bool(const StoredMessage &)> &fn) {
  return version_ == 1 ? read_rows(q, fn) : read_blocks(q, fn);
}

Result<uint64_t> LogReader::read_blocks(const LogQuery &q,
                                        const std::function<bool(const StoredMessage &)> &fn) {
  // One read transaction: what the writer moves from the journal into blocks meanwhile is
  // seen in one place or the other, never both or neither.
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Error{KRONOP_ESYS, path_ + ": cannot read the log: " + sqlite3_errmsg(db_)};
  }
  auto r = read_blocks_in_transaction(q, fn);
  sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  return r;
}

Result<bool> LogReader::read_journal(int64_t topic_id, uint64_t blocked_seq, StoredMessage &m,
                                     std::vector<StoredMessage> &out) {
  sqlite3_stmt *s = nullptr;
  sqlite3_blob *blob = nullptr;
  auto failed = [&](const std::string &what) {
    Error e{KRONOP_ESYS, path_ + ": " + what};
    sqlite3_finalize(s);
    sqlite3_blob_close(blob);
    return e;
  };
  if (sqlite3_prepare_v2(db_, "SELECT id, frames, length(data) FROM journal ORDER BY id", -1, &s,
                         nullptr) != SQLITE_OK) {
    return failed(std::string("cannot query the log's journal: ") + sqlite3_errmsg(db_));
  }
  std::string frame;
  uint64_t last = blocked_seq;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    const int64_t id = sqlite3_column_int64(s, 0);
    const std::string_view index(static_cast<const char *>(sqlite3_column_blob(s, 1)),
                                 static_cast<std::size_t>(sqlite3_column_bytes(s, 1)));
    const auto size = static_cast<std::size_t>(sqlite3_column_int64(s, 2));
    auto found = JournalIndex::find(index, size, topic_id);
    if (!found.ok())
      return failed("journal row " + std::to_string(id) + ": " + found.error().message);
    if (!found.value() || found.value()->last_seq <= blocked_seq) continue;
    const JournalFrame &f = *found.value();
    // Only the frame's bytes of the row's data.
    frame.resize(f.size);
    const int opened = blob == nullptr
                           ? sqlite3_blob_open(db_, "main", "journal", "data", id, 0, &blob)
                           : sqlite3_blob_reopen(blob, id);
    if (opened != SQLITE_OK || sqlite3_blob_read(blob, frame.data(), static_cast<int>(f.size),
                                                 static_cast<int>(f.offset)) != SQLITE_OK) {
      return failed(std::string("cannot read the log's journal: ") + sqlite3_errmsg(db_));
    }
    bool in_order = true;
    auto decoded =
        codec_->decode(f.format, frame.data(), frame.size(), m, [&](const StoredMessage &r) {
          if (r.seq <= last) {
            in_order = false;
            return false;
          }
          last = r.seq;
          out.push_back(r);
          return true;
        });
    if (!decoded.ok()) {
      return failed("journal row " + std::to_string(id) + ": " + decoded.error().message);
    }
    if (!in_order) {
      return failed("journal row " + std::to_string(id) +
                    ": a frame's messages do not follow the topic's");
    }
  }
  if (rc != SQLITE_DONE) {
    return failed(std::string("reading the log's journal failed: ") + sqlite3_errmsg(db_));
  }
  sqlite3_finalize(s);
  sqlite3_blob_close(blob);
  return true;
}

Result<uint64_t> LogReader::read_blocks_in_transaction(
    const LogQuery &q, const std::function<bool(const StoredMessage &)> &fn) {
  struct TopicRow {
    int64_t id = 0;
    uint64_t epoch = 0;
    uint64_t blocked_seq = 0;
    uint64_t last_seq = 0;
  };
  const auto topic_row = [&]() -> std::optional<TopicRow> {
    sqlite3_stmt *s = nullptr;
    std::optional<TopicRow> out;
    if (sqlite3_prepare_v2(db_,
                           "SELECT id, epoch, blocked_seq, last_seq FROM topics WHERE name = ?1",
                           -1, &s, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(s, 1, q.topic.data(), static_cast<int>(q.topic.size()), SQLITE_STATIC);
      if (sqlite3_step(s) == SQLITE_ROW) {
        out =
            TopicRow{sqlite3_column_int64(s, 0), static_cast<uint64_t>(sqlite3_column_int64(s, 1)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 2)),
                     static_cast<uint64_t>(sqlite3_column_int64(s, 3))};
      }
    }
    sqlite3_finalize(s);
    return out;
  }();
  if (!topic_row || q.limit == 0) return uint64_t{0};
  auto i64 = [](uint64_t v) {
    return static_cast<int64_t>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max()));
  };
  auto matches = [&](const StoredMessage &m) {
    return m.seq > q.after_seq && m.seq <= q.until_seq && m.publish_time_ns >= q.since_ns &&
           m.publish_time_ns < q.until_ns && (q.event.empty() || m.event == q.event);
  };
  StoredMessage m;
  m.topic = q.topic;
  m.epoch = topic_row->epoch;
  // The topic's newest messages, in the journal (after blocked_seq, after every block's);
  // none when its last seq is in blocks.
  std::vector<StoredMessage> journal;
  if (q.until_seq > topic_row->blocked_seq && topic_row->last_seq > topic_row->blocked_seq) {
    auto read = read_journal(topic_row->id, topic_row->blocked_seq, m, journal);
    if (!read.ok()) return read.error();
  }
  uint64_t given = 0;
  bool more = true;
  // newest_first: the newest `limit` matches, gathered going back (the journal's, then block
  // by block), then given oldest first.
  std::deque<StoredMessage> newest;
  if (q.newest_first) {
    for (auto it = journal.rbegin(); it != journal.rend() && newest.size() < q.limit; ++it) {
      if (matches(*it)) newest.push_front(std::move(*it));
    }
    more = newest.size() < q.limit;
  }
  // The blocks that may hold a match, oldest first (newest first for newest_first).
  const std::string sql = std::string(
                              "SELECT format, data FROM blocks WHERE topic_id = ?1 AND "
                              "last_seq > ?2 AND first_seq <= ?3 AND max_time_ns >= ?4 AND "
                              "min_time_ns < ?5 ORDER BY last_seq ") +
                          (q.newest_first ? "DESC" : "ASC");
  sqlite3_stmt *s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    Error e{KRONOP_ESYS, path_ + ": cannot query the log: " + sqlite3_errmsg(db_)};
    sqlite3_finalize(s);
    return e;
  }
  sqlite3_bind_int64(s, 1, topic_row->id);
  sqlite3_bind_int64(s, 2, i64(q.after_seq));
  sqlite3_bind_int64(s, 3, i64(q.until_seq));
  sqlite3_bind_int64(s, 4, i64(q.since_ns));
  sqlite3_bind_int64(s, 5, i64(q.until_ns));
  std::vector<StoredMessage> in_block;
  int rc = SQLITE_DONE;
  while (more && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    const auto *data = sqlite3_column_blob(s, 1);
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(s, 1));
    Result<uint64_t> decoded = uint64_t{0};
    if (q.newest_first) {
      in_block.clear();
      decoded =
          codec_->decode(sqlite3_column_int(s, 0), data, size, m, [&](const StoredMessage &r) {
            if (matches(r)) in_block.push_back(r);
            return true;
          });
      for (auto it = in_block.rbegin(); it != in_block.rend() && newest.size() < q.limit; ++it) {
        newest.push_front(std::move(*it));
      }
      more = newest.size() < q.limit;
    } else {
      decoded =
          codec_->decode(sqlite3_column_int(s, 0), data, size, m, [&](const StoredMessage &r) {
            if (!matches(r)) return true;
            ++given;
            more = fn(r) && given < q.limit;
            return more;
          });
    }
    if (!decoded.ok()) {
      sqlite3_finalize(s);
      return Error{KRONOP_ESYS, path_ + ": " + decoded.error().message};
    }
  }
  if (more && rc != SQLITE_DONE) {
    Error e{KRONOP_ESYS, path_ + ": reading the log failed: " + sqlite3_errmsg(db_)};
    sqlite3_finalize(s);
    return e;
  }
  sqlite3_finalize(s);
  if (q.newest_first) {
    for (const StoredMessage &r : newest) {
      ++given;
      if (!fn(r)) break;
    }
    return given;
  }
  for (const StoredMessage &r : journal) {
    if (!more) break;
    if (!matches(r)) continue;
    ++given;
    more = fn(r) && given < q.limit;
  }
  return given;
}

Result<uint64_t> LogReader::read_rows(const LogQuery &q,
                                      const std::function<bool(const StoredMessage &)> &fn) {
  sqlite3_stmt *s = nullptr;
  if (q.newest_first) {
    // The newest `limit`: where they start, then read forward from there.
    LogQuery forward = q;
    forward.newest_first = false;
    sqlite3_stmt *c = nullptr;
    const std::string sql =
        std::string("SELECT m.seq ") + kMatch + "ORDER BY m.seq DESC LIMIT 1 OFFSET ?6";
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &c, nullptr) == SQLITE_OK) {
      bind_query(c, q);
      // The seq just before the newest `limit`; none: fewer than that many, read them all.
      if (sqlite3_step(c) == SQLITE_ROW) {
        forward.after_seq = static_cast<uint64_t>(sqlite3_column_int64(c, 0));
      }
    }
    sqlite3_finalize(c);
    return read_rows(forward, fn);
  }
  const std::string sql = std::string(
                              "SELECT m.seq, t.epoch, m.publish_time_ns, m.event, m.producer_id, "
                              "m.producer_seq, m.priority, m.body_kind, m.compressed, m.payload ") +
                          kMatch + "ORDER BY m.seq LIMIT ?6";
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    Error e{KRONOP_ESYS, path_ + ": cannot query the log: " + sqlite3_errmsg(db_)};
    sqlite3_finalize(s);
    return e;
  }
  bind_query(s, q);
  uint64_t n = 0;
  StoredMessage m;
  m.topic = q.topic;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    m.seq = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    m.epoch = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
    m.publish_time_ns = static_cast<uint64_t>(sqlite3_column_int64(s, 2));
    m.event.assign(reinterpret_cast<const char *>(sqlite3_column_text(s, 3)));
    m.producer_id = static_cast<uint64_t>(sqlite3_column_int64(s, 4));
    m.producer_seq = static_cast<uint64_t>(sqlite3_column_int64(s, 5));
    m.priority = sqlite3_column_int(s, 6);
    m.body_kind = static_cast<BodyKind>(sqlite3_column_int(s, 7));
    const bool compressed = sqlite3_column_int(s, 8) != 0;
    const auto *data = static_cast<const char *>(sqlite3_column_blob(s, 9));
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(s, 9));
    if (compressed) {
      const unsigned long long raw = ZSTD_getFrameContentSize(data, size);
      if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN || raw > (64u << 20)) {
        sqlite3_finalize(s);
        return Error{KRONOP_ESYS, path_ + ": a compressed payload is damaged (seq " +
                                      std::to_string(m.seq) + ")"};
      }
      m.body.resize(raw);
      const std::size_t got = ZSTD_decompressDCtx(zstd_, m.body.data(), m.body.size(), data, size);
      if (ZSTD_isError(got) || got != raw) {
        sqlite3_finalize(s);
        return Error{KRONOP_ESYS, path_ + ": a compressed payload is damaged (seq " +
                                      std::to_string(m.seq) + ")"};
      }
    } else {
      m.body.assign(data, size);
    }
    ++n;
    if (!fn(m)) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    Error e{KRONOP_ESYS, path_ + ": reading the log failed: " + sqlite3_errmsg(db_)};
    sqlite3_finalize(s);
    return e;
  }
  sqlite3_finalize(s);
  return n;
}

}  // namespace kronop
