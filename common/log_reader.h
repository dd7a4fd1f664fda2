// Reading the durable log (log_store.h) without writing it: kronopctl replay (which works
// with kronopd stopped), REST history, and the history of rejoining clients. Opens the database
// read-only; SQLite's WAL lets it read while kronopd writes. Reads both schema versions:
// blocks and the journal (2), and a row per message (1: a log kronopd has not migrated yet).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "envelope_validation.h"
#include "kronop/result.h"
#include "stored_message.h"

struct sqlite3;
struct ZSTD_DCtx_s;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;

namespace kronop {

class LogBlockCodec;

struct LogQuery {
  std::string topic;
  uint64_t after_seq = 0;  // messages with seq > after_seq
  uint64_t until_seq = std::numeric_limits<uint64_t>::max();
  uint64_t since_ns = 0;                                     // publish time >= since_ns
  uint64_t until_ns = std::numeric_limits<uint64_t>::max();  // publish time < until_ns
  uint64_t limit = std::numeric_limits<uint64_t>::max();
  std::string event;          // only this event (empty: all)
  bool newest_first = false;  // the last `limit` messages (still given oldest first)
};

class LogReader {
 public:
  // Errors: no log at `path`, not a database, a schema this binary does not know.
  static Result<std::unique_ptr<LogReader>> open(const std::string &path);
  ~LogReader();
  LogReader(const LogReader &) = delete;
  LogReader &operator=(const LogReader &) = delete;

  struct Topic {
    uint64_t last_seq = 0;
    uint64_t epoch = 0;
  };
  std::optional<Topic> topic(const std::string &name);
  // Calls fn for each matching message in seq order until it returns false; returns how many
  // it was given.
  Result<uint64_t> read(const LogQuery &q, const std::function<bool(const StoredMessage &)> &fn);

 private:
  LogReader(sqlite3 *db, std::string path, int version);
  Result<uint64_t> read_rows(const LogQuery &q,
                             const std::function<bool(const StoredMessage &)> &fn);
  Result<uint64_t> read_blocks(const LogQuery &q,
                               const std::function<bool(const StoredMessage &)> &fn);
  Result<uint64_t> read_blocks_in_transaction(const LogQuery &q,
                                              const std::function<bool(const StoredMessage &)> &fn);
  // The messages of `topic_id` in the journal (common/log_journal.h) after `blocked_seq`, in
  // seq order, as `m` with their fields set.
  Result<bool> read_journal(int64_t topic_id, uint64_t blocked_seq, StoredMessage &m,
                            std::vector<StoredMessage> &out);
  sqlite3 *db_;
  ZSTD_DCtx *zstd_;  // reused: a context per payload would cost an allocation each
  std::unique_ptr<LogBlockCodec> codec_;
  std::string path_;
  int version_;
};

}  // namespace kronop
