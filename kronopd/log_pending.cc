// The durable log's journal as the writer holds it (log_store.h, LogOptions::journal_*): the
// messages of each topic that are in journal rows and not yet in blocks, read back at open
// from the rows a stopped (or killed) kronopd left, so that they go into blocks as if it had
// never stopped. A frame at or below its topic's blocked_seq was moved into blocks already
// (its row still held other topics' frames).
#include <sqlite3.h>

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kronop_ipc.h"
#include "log_block.h"
#include "log_journal.h"
#include "log_sql.h"
#include "log_store.h"

namespace kronop::daemon {

Result<bool> LogStore::load_journal() {
  std::unordered_map<int64_t, Topics::value_type *> by_id;
  for (auto &topic : topics_) by_id[topic.second.row.id] = &topic;
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id, frames, data FROM journal ORDER BY id", -1, &st,
                         nullptr) != SQLITE_OK) {
    return Error{KRONOP_ESYS, path_ + ": cannot read the log's journal: " + sqlite3_errmsg(db_)};
  }
  auto damaged = [&](int64_t id, const std::string &what) {
    sqlite3_finalize(st);
    return Error{KRONOP_ESYS, path_ + ": journal row " + std::to_string(id) + ": " + what +
                                  " (the file is not usable as it is: restore it from a backup, "
                                  "or move it aside to start a new log)"};
  };
  const auto now = std::chrono::steady_clock::now();
  std::vector<int64_t> spent;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const int64_t id = sqlite3_column_int64(st, 0);
    const std::string_view index(static_cast<const char *>(sqlite3_column_blob(st, 1)),
                                 static_cast<std::size_t>(sqlite3_column_bytes(st, 1)));
    const auto *data = static_cast<const char *>(sqlite3_column_blob(st, 2));
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(st, 2));
    auto frames = JournalIndex::parse(index, size);
    if (!frames.ok()) return damaged(id, frames.error().message);
    uint32_t live = 0;
    for (const JournalFrame &f : frames.value()) {
      auto found = by_id.find(f.topic_id);
      if (found == by_id.end()) return damaged(id, "a frame names a topic the log does not have");
      Topics::value_type &topic = *found->second;
      const TopicRow &row = topic.second.row;
      if (f.last_seq <= row.blocked_seq) continue;  // in blocks already
      if (!topic.second.pending) {
        topic.second.pending = std::make_unique<Pending>();
        topic.second.pending->since = now;
        topic.second.pending->generation = ++pending_generation_;
        pending_order_.push_back(PendingEntry{now, topic.second.pending->generation, &topic});
        ++pending_topics_;
      }
      Pending &pending = *topic.second.pending;
      StoredMessage m;
      m.topic = topic.first;
      m.epoch = row.epoch;
      uint64_t last = pending.span.count == 0 ? row.blocked_seq : pending.span.last_seq;
      bool in_order = true;
      auto decoded =
          codec_->decode(f.format, data + f.offset, f.size, m, [&](const StoredMessage &r) {
            if (r.seq <= last || r.seq > row.last_seq) {
              in_order = false;
              return false;
            }
            last = r.seq;
            LogBlockCodec::append(r, pending.raw);
            pending.span.add(r);
            pending.bytes += journal_weight(r);
            pending_bytes_ += journal_weight(r);
            return true;
          });
      if (!decoded.ok()) return damaged(id, decoded.error().message);
      if (!in_order) return damaged(id, "a frame's messages do not follow the topic's");
      pending.rows.push_back(id);
      ++live;
    }
    if (live > 0) {
      journal_live_[id] = live;
    } else {
      spent.push_back(id);
    }
    last_journal_id_ = id;
  }
  if (rc != SQLITE_DONE) {
    Error e{KRONOP_ESYS, path_ + ": cannot read the log's journal: " + sqlite3_errmsg(db_)};
    sqlite3_finalize(st);
    return e;
  }
  sqlite3_finalize(st);
  // A row whose frames are all in blocks goes in the transaction that moves the last of
  // them; one found here (a file changed by hand) goes now.
  for (int64_t id : spent) {
    if (!log_sql::exec(db_, ("DELETE FROM journal WHERE id = " + std::to_string(id)).c_str())) {
      return Error{KRONOP_ESYS,
                   path_ + ": cannot delete a spent journal row: " + sqlite3_errmsg(db_)};
    }
  }
  return true;
}

bool LogStore::regroup_due(std::chrono::steady_clock::time_point now) const {
  if (pending_order_.empty()) return false;
  if (pending_bytes_ > options_.journal_max_bytes) return true;
  return now - pending_order_.front().since >= std::chrono::milliseconds(options_.journal_ms);
}

}  // namespace kronop::daemon
