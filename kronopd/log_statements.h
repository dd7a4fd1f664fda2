// The durable log writer's prepared statements (log_store.h): made at open (log_store.cc),
// used by the write transaction (log_write.cc). Private to the log's files.
#pragma once

#include <sqlite3.h>

#include "log_store.h"

namespace kronop::daemon {

struct LogStore::Statements {
  // Runs a statement without results (begin, commit, rollback); true when it is done.
  static bool run(sqlite3_stmt *st) {
    const bool done = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    return done;
  }
  sqlite3_stmt *topic_insert = nullptr;
  sqlite3_stmt *topic_update = nullptr;
  sqlite3_stmt *insert = nullptr;
  sqlite3_stmt *producer_upsert = nullptr;
  sqlite3_stmt *outbox_open = nullptr;  // cluster mode: a topic's mark, where none is
  sqlite3_stmt *topic_blocked = nullptr;
  sqlite3_stmt *journal_insert = nullptr;
  sqlite3_stmt *journal_delete = nullptr;
  // The write transaction's own (parsed once, not per transaction).
  sqlite3_stmt *begin = nullptr;
  sqlite3_stmt *commit = nullptr;
  sqlite3_stmt *rollback = nullptr;
  ~Statements() {
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(rollback);
    sqlite3_finalize(topic_blocked);
    sqlite3_finalize(journal_insert);
    sqlite3_finalize(journal_delete);
    sqlite3_finalize(topic_insert);
    sqlite3_finalize(topic_update);
    sqlite3_finalize(insert);
    sqlite3_finalize(producer_upsert);
    sqlite3_finalize(outbox_open);
  }
};

}  // namespace kronop::daemon
