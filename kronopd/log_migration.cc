// Migrating a version-1 log to blocks; see log_migration.h.
#include "log_migration.h"

#include <sqlite3.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "log.h"
#include "log_block.h"
#include "log_sql.h"
#include "log_store.h"

namespace kronop::daemon {

using log_sql::exec;

namespace {

constexpr uint64_t kProgressEvery = 1'000'000;

struct DctxFree {
  void operator()(ZSTD_DCtx *c) const { ZSTD_freeDCtx(c); }
};

}  // namespace

Result<bool> migrate_log_v1(sqlite3 *db, const std::string &path, const char *blocks_schema,
                            LogBlockCodec &codec) {
  const auto started = std::chrono::steady_clock::now();
  auto failed = [&](const std::string &what) {
    Error e{KRONOP_ESYS, path + ": cannot migrate the log to blocks: " + what + ": " +
                             sqlite3_errmsg(db) + " (the file is left as it was)"};
    exec(db, "ROLLBACK");
    return e;
  };
  if (!exec(db, "BEGIN IMMEDIATE")) return failed("cannot start");
  int64_t total = 0;
  {
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &st, nullptr) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
      sqlite3_finalize(st);
      return failed("cannot count the messages");
    }
    total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  KLOG_INFO("event=log_migration_started path=%s from_version=1 to_version=%d messages=%lld",
            log::q(path).c_str(), LogStore::kSchemaVersion, static_cast<long long>(total));
  if (!exec(db, blocks_schema)) return failed("cannot create the blocks table");

  sqlite3_stmt *read = nullptr, *insert = nullptr;
  auto finalize = [&] {
    sqlite3_finalize(read);
    sqlite3_finalize(insert);
  };
  if (sqlite3_prepare_v2(db,
                         "SELECT topic_id, seq, publish_time_ns, event, producer_id, "
                         "producer_seq, priority, body_kind, compressed, payload FROM messages "
                         "ORDER BY topic_id, seq",
                         -1, &read, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db, log_sql::kInsertBlock, -1, &insert, nullptr) != SQLITE_OK) {
    finalize();
    return failed("cannot prepare");
  }
  const std::unique_ptr<ZSTD_DCtx, DctxFree> dctx(ZSTD_createDCtx());
  const uint64_t now_ms = realtime_ns() / 1'000'000;
  const LogOptions defaults;
  std::vector<StoredMessage> block;
  int64_t block_topic = 0;
  uint64_t blocks = 0, moved = 0;
  // A block's id: its time (as the writer gives it) and a count, so that ids stay unique.
  auto flush = [&]() -> bool {
    if (block.empty()) return true;
    std::vector<const StoredMessage *> refs;
    for (const auto &m : block) refs.push_back(&m);
    const BlockSpan span = log_sql::span_of(refs);
    const uint64_t ms = std::min(span.max_time_ns / 1'000'000, now_ms);
    const int64_t id = static_cast<int64_t>((ms << kBlockIdTimeShift) +
                                            (blocks & ((uint64_t{1} << kBlockIdTimeShift) - 1)));
    if (!log_sql::insert_block(insert, id, block_topic, span, codec.encode(refs))) return false;
    ++blocks;
    block.clear();
    return true;
  };
  int rc;
  while ((rc = sqlite3_step(read)) == SQLITE_ROW) {
    const int64_t topic = sqlite3_column_int64(read, 0);
    if ((topic != block_topic || block.size() >= defaults.block_records) && !flush()) {
      finalize();
      return failed("cannot write a block");
    }
    block_topic = topic;
    StoredMessage &m = block.emplace_back();
    m.seq = static_cast<uint64_t>(sqlite3_column_int64(read, 1));
    m.publish_time_ns = static_cast<uint64_t>(sqlite3_column_int64(read, 2));
    if (const auto *event = sqlite3_column_text(read, 3)) {
      m.event.assign(reinterpret_cast<const char *>(event));
    }
    m.producer_id = static_cast<uint64_t>(sqlite3_column_int64(read, 4));
    m.producer_seq = static_cast<uint64_t>(sqlite3_column_int64(read, 5));
    m.priority = sqlite3_column_int(read, 6);
    m.body_kind = static_cast<BodyKind>(sqlite3_column_int(read, 7) & 0xff);
    const auto *data = static_cast<const char *>(sqlite3_column_blob(read, 9));
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(read, 9));
    if (sqlite3_column_int(read, 8) != 0) {
      const unsigned long long raw = ZSTD_getFrameContentSize(data, size);
      const bool sized = raw != ZSTD_CONTENTSIZE_ERROR && raw != ZSTD_CONTENTSIZE_UNKNOWN &&
                         raw <= LogBlockCodec::kMaxDecodedBytes;
      if (sized) m.body.resize(raw);
      if (!sized ||
          ZSTD_decompressDCtx(dctx.get(), m.body.data(), m.body.size(), data, size) != raw) {
        finalize();
        Error e{KRONOP_ESYS, path + ": cannot migrate the log to blocks: the payload of seq " +
                                 std::to_string(m.seq) +
                                 " is damaged (the file is left as it was)"};
        exec(db, "ROLLBACK");
        return e;
      }
    } else if (size > 0) {
      m.body.assign(data, size);
    }
    if (++moved % kProgressEvery == 0) {
      KLOG_INFO("event=log_migrating path=%s messages=%llu of=%lld", log::q(path).c_str(),
                static_cast<unsigned long long>(moved), static_cast<long long>(total));
    }
  }
  if (rc != SQLITE_DONE || !flush()) {
    finalize();
    return failed("cannot read or write the messages");
  }
  finalize();
  // Every message is in blocks now; the journal is empty.
  if (!exec(db, "DROP TABLE messages") || !exec(db, "UPDATE topics SET blocked_seq = last_seq") ||
      !exec(db, ("PRAGMA user_version=" + std::to_string(LogStore::kSchemaVersion)).c_str()) ||
      !exec(db, "COMMIT")) {
    return failed("cannot finish");
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  KLOG_INFO("event=log_migrated path=%s messages=%llu blocks=%llu ms=%lld", log::q(path).c_str(),
            static_cast<unsigned long long>(moved), static_cast<unsigned long long>(blocks),
            static_cast<long long>(ms));
  return true;
}

}  // namespace kronop::daemon
