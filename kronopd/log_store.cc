// The durable log; see log_store.h.
#include "log_store.h"

#include <pthread.h>

#include <sys/resource.h>
#include <unistd.h>

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <functional>

#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "log.h"
#include "log_block.h"
#include "log_migration.h"
#include "log_sql.h"
#include "log_statements.h"
#include "owned_counter.h"

namespace kronop::daemon {

using log_sql::as_i64;
using log_sql::exec;

namespace {

constexpr const char *kSchema = R"sql(
CREATE TABLE topics (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  epoch INTEGER NOT NULL,
  last_seq INTEGER NOT NULL
);
CREATE TABLE producers (
  producer_id INTEGER PRIMARY KEY,
  last_seq INTEGER NOT NULL
);
)sql";
// Version 2: messages are kept in blocks (common/log_block.h), one row per topic per
// transaction (at most kBlockRecords messages). id: the block's time in ms (its newest
// publish time, never ahead of kronopd's clock nor behind the block before) << 22, plus a
// count; so ids follow logging order, and retention by age deletes a range of ids.
// min_time_ns / max_time_ns: its messages' publish times (producers' clocks), which readers
// asking for a time range skip blocks by.
// The journal (common/log_journal.h): a row per transaction with the messages of the topics
// that had only a few, each topic's as a frame; `frames` indexes them. topics.blocked_seq:
// the topic's messages up to it are in blocks; its frames in the journal above it are not
// yet (those at or below it were moved into blocks, in rows that still hold other topics').
constexpr const char *kBlocksSchema = R"sql(
CREATE TABLE blocks (
  id INTEGER PRIMARY KEY,
  topic_id INTEGER NOT NULL REFERENCES topics(id),
  first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  min_time_ns INTEGER NOT NULL,
  max_time_ns INTEGER NOT NULL,
  format INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE UNIQUE INDEX blocks_topic ON blocks (topic_id, last_seq);
ALTER TABLE topics ADD COLUMN blocked_seq INTEGER NOT NULL DEFAULT 0;
CREATE TABLE journal (
  id INTEGER PRIMARY KEY,
  frames BLOB NOT NULL,
  data BLOB NOT NULL
);
)sql";
// Added within version 1 (created on open when missing).
constexpr const char *kPresenceSchema = R"sql(
CREATE TABLE IF NOT EXISTS presence (
  user_id TEXT PRIMARY KEY,
  status INTEGER NOT NULL,
  current_reel INTEGER NOT NULL,
  activity TEXT NOT NULL,
  last_seen_ms INTEGER NOT NULL
);
)sql";
// Added within version 1: the cluster outbox's marks (log_store.h).
constexpr const char *kOutboxSchema = R"sql(
CREATE TABLE IF NOT EXISTS cluster_outbox (
  topic_id INTEGER PRIMARY KEY REFERENCES topics(id),
  taken_seq INTEGER NOT NULL
);
)sql";

Error sql_error(const std::string &path, sqlite3 *db, const char *what) {
  const int code = db != nullptr ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  std::string msg = path + ": " + what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "error");
  const int primary = code & 0xff;
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) {
    msg +=
        " (the file is not a usable SQLite database: move it aside to start a new log, or "
        "restore it from a backup)";
  } else if (primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN || primary == SQLITE_PERM) {
    msg += " (kronopd needs to read and write the database and its directory)";
  }
  return Error{KRONOP_ESYS, msg};
}

// The log's threads run below the I/O loops and the ingest thread (nice 10): fan-out never
// waits for the log, and on a busy machine it should wait as little as possible for a CPU
// the log holds. Not SCHED_IDLE: a log starved outright by a saturated machine would stall
// the producers (the rings' space is released only once logged) in bursts.
constexpr int kBackgroundNice = 10;

void run_in_background(int nice) {
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    // E.g. a seccomp filter that denies setpriority(2) (systemd's @resources set).
    KLOG_WARN(
        "event=nice_failed nice=%d error=%s consequence=\"the log's threads compete with "
        "fan-out for the CPUs\"",
        nice, log::q(std::strerror(errno)).c_str());
  }
}

// Run as a single host: an earlier cluster run's marks go (its records stay in the log).
void drop_outbox(sqlite3 *db) {
  sqlite3_stmt *st = nullptr;
  int64_t left = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT coalesce(sum(t.last_seq - o.taken_seq), 0) FROM cluster_outbox "
                         "o JOIN topics t ON t.id = o.topic_id WHERE t.last_seq > o.taken_seq",
                         -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    left = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  exec(db, "DELETE FROM cluster_outbox");
  if (left > 0) {
    KLOG_WARN(
        "event=cluster_outbox_dropped records=%lld consequence=\"records an earlier cluster run "
        "logged but did not hand to Redis stay in this log and are not sent to the cluster\"",
        static_cast<long long>(left));
  }
}

}  // namespace

Result<std::unique_ptr<LogStore>> LogStore::open(const std::string &path, LogOptions options) {
  // SQLite's allocation statistics take a global mutex on every malloc; kronopd does not
  // read them. Must be set before SQLite initialises (the first open does that).
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
  sqlite3 *db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto fail = [&](const char *what) {
    Error e = sql_error(path, db, what);
    sqlite3_close(db);
    return e;
  };
  if (rc != SQLITE_OK) return fail("cannot open the log");
  sqlite3_busy_timeout(db, 5000);
  // Reading the version touches the file header: a file that is not a database fails here.
  sqlite3_stmt *st = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW) {
    sqlite3_finalize(st);
    return fail("cannot read the schema version");
  }
  const int version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (version > kSchemaVersion) {
    sqlite3_close(db);
    return Error{KRONOP_ELAYOUT, path + ": the log's schema version is " + std::to_string(version) +
                                     ", newer than this kronopd's (" +
                                     std::to_string(kSchemaVersion) +
                                     "): run a kronopd at least as new as the one that wrote it"};
  }
  if (sqlite3_db_readonly(db, "main") == 1) {
    sqlite3_close(db);
    return Error{KRONOP_EACCES, path + ": the log is read-only (kronopd needs to write it)"};
  }
  // WAL: readers (kronopctl, replay) never block the writer. NORMAL: a commit is durable
  // against a kronopd crash at once, against a host crash once the WAL is checkpointed.
  // Checkpoints (which fsync) run on a thread of their own (checkpoint_run), not in the
  // writer's commits, where SQLite's automatic ones would hold logging up.
  if (!exec(db, "PRAGMA journal_mode=WAL") ||
      !exec(db, options.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") ||
      !exec(db, "PRAGMA wal_autocheckpoint=0") ||
      // A WAL written from its start again (restart_wal) is cut back to 64 MiB.
      !exec(db, "PRAGMA journal_size_limit=67108864") ||
      // The indexes' pages stay in memory as they grow (64 MiB by default; SQLite's is 2).
      !exec(db, ("PRAGMA cache_size=-" + std::to_string(options.cache_mib * 1024)).c_str()) ||
      // Debian's SQLite zeroes every page a delete frees, writing it to the WAL again: a
      // journal row and a trimmed block would cost their size twice. FAST zeroes what is
      // deleted only within pages written anyway; freed pages keep their bytes until reused
      // (by newer messages, soon: the file grows only when none is free).
      !exec(db, "PRAGMA secure_delete=FAST")) {
    return fail("cannot switch the log to WAL mode");
  }
  if (version == 0) {
    if (!exec(db, "BEGIN IMMEDIATE")) return fail("cannot create the log");
    if (!exec(db, kSchema) || !exec(db, kBlocksSchema) ||
        !exec(db, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str()) ||
        !exec(db, "COMMIT")) {
      return fail("cannot create the log's tables");
    }
  } else if (!exec(db, "SELECT count(*) FROM topics")) {
    return fail("cannot read the log");
  } else if (version == 1) {
    LogBlockCodec codec(options.zstd_level);
    if (auto migrated = migrate_log_v1(db, path, kBlocksSchema, codec); !migrated.ok()) {
      sqlite3_close(db);
      return migrated.error();
    }
  }
  if (!exec(db, kPresenceSchema)) return fail("cannot create the log's presence table");
  if (!exec(db, kOutboxSchema)) return fail("cannot create the log's outbox table");
  if (!options.cluster_outbox) drop_outbox(db);
  auto store = std::unique_ptr<LogStore>(new LogStore(db, path, options));
  auto &s = *store->stmts_;
  if (sqlite3_prepare_v3(
          db, "INSERT INTO topics (name, epoch, last_seq, blocked_seq) VALUES (?1, ?2, ?3, ?4)", -1,
          SQLITE_PREPARE_PERSISTENT, &s.topic_insert, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(
          db, "UPDATE topics SET epoch = ?2, last_seq = ?3, blocked_seq = ?4 WHERE id = ?1", -1,
          SQLITE_PREPARE_PERSISTENT, &s.topic_update, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db, log_sql::kInsertBlock, -1, SQLITE_PREPARE_PERSISTENT, &s.insert,
                         nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db,
                         "INSERT INTO producers (producer_id, last_seq) VALUES (?1, ?2) "
                         "ON CONFLICT (producer_id) DO UPDATE SET last_seq = max(last_seq, ?2)",
                         -1, SQLITE_PREPARE_PERSISTENT, &s.producer_upsert, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db,
                         "INSERT OR IGNORE INTO cluster_outbox (topic_id, taken_seq) "
                         "VALUES (?1, ?2)",
                         -1, SQLITE_PREPARE_PERSISTENT, &s.outbox_open, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db, "UPDATE topics SET blocked_seq = ?2 WHERE id = ?1", -1,
                         SQLITE_PREPARE_PERSISTENT, &s.topic_blocked, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db, "INSERT INTO journal (id, frames, data) VALUES (?1, ?2, ?3)", -1,
                         SQLITE_PREPARE_PERSISTENT, &s.journal_insert, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db, "DELETE FROM journal WHERE id = ?1", -1, SQLITE_PREPARE_PERSISTENT,
                         &s.journal_delete, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v3(db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &s.begin, nullptr) !=
          SQLITE_OK ||
      sqlite3_prepare_v3(db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &s.commit, nullptr) !=
          SQLITE_OK ||
      sqlite3_prepare_v3(db, "ROLLBACK", -1, SQLITE_PREPARE_PERSISTENT, &s.rollback, nullptr) !=
          SQLITE_OK) {
    return sql_error(path, db, "cannot prepare the log's statements");
  }
  if (!store->load_caches()) return sql_error(path, db, "cannot read the log's topics");
  if (auto loaded = store->load_journal(); !loaded.ok()) return loaded.error();
  return store;
}

LogStore::LogStore(sqlite3 *db, std::string path, LogOptions options)
    : db_(db),
      path_(std::move(path)),
      options_(options),
      codec_(std::make_unique<LogBlockCodec>(options.zstd_level)),
      stmts_(std::make_unique<Statements>()) {
  wal_restart_at_ = options_.wal_restart_pages;
  sqlite3_wal_hook(db_, &LogStore::on_wal_commit, this);
}

bool LogStore::load_caches() {
  bool ok = true;
  auto each = [&](const char *sql, auto &&fn) {
    sqlite3_stmt *st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) {
      ok = false;
      return;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(st);
    if (rc != SQLITE_DONE) ok = false;
    sqlite3_finalize(st);
  };
  auto u64 = [](sqlite3_stmt *st, int i) {
    return static_cast<uint64_t>(sqlite3_column_int64(st, i));
  };
  each("SELECT id, name, epoch, last_seq, blocked_seq FROM topics", [&](sqlite3_stmt *st) {
    topics_[reinterpret_cast<const char *>(sqlite3_column_text(st, 1))].row =
        TopicRow{sqlite3_column_int64(st, 0), u64(st, 3), u64(st, 2), u64(st, 4)};
  });
  each("SELECT producer_id, last_seq FROM producers",
       [&](sqlite3_stmt *st) { producer_seqs_[u64(st, 0)] = u64(st, 1); });
  each("SELECT coalesce(max(id), 0) FROM blocks",
       [&](sqlite3_stmt *st) { last_block_id_ = sqlite3_column_int64(st, 0); });
  each("PRAGMA page_size", [&](sqlite3_stmt *st) { page_size_ = sqlite3_column_int(st, 0); });
  return ok;
}

int LogStore::on_wal_commit(void *self, sqlite3 *, const char *, int pages) {
  auto *store = static_cast<LogStore *>(self);
  // The WAL's frames after this commit: fewer than before when it was written from its start
  // (and then no frame of it has been checkpointed yet).
  int added = pages - store->wal_pages_;
  if (pages < store->wal_pages_) {
    added = pages;
    store->backfilled_.store(0, std::memory_order_relaxed);
  }
  store->counters_.disk_bytes.fetch_add(uint64_t(added) * (uint64_t(store->page_size_) + 24),
                                        std::memory_order_relaxed);
  store->wal_pages_ = pages;
  return SQLITE_OK;
}

void LogStore::count_checkpointed(int copied) {
  int last = backfilled_.load(std::memory_order_relaxed);
  while (copied > last && !backfilled_.compare_exchange_weak(last, copied)) {
  }
  if (copied > last) {
    counters_.disk_bytes.fetch_add(uint64_t(copied - last) * uint64_t(page_size_),
                                   std::memory_order_relaxed);
  }
}

// The checkpointer copies the WAL into the database in the background, but its checkpoints
// never finish while the writer goes on appending, and SQLite writes a WAL from its start
// again only after one that finished: without this the WAL grew without end (1 GB in 40 s
// at 6,000 records a second, next to a 44 MB database: bench/soak), on disk, and every
// start of kronopd read all of it. Between two transactions, a RESTART checkpoint copies
// what the checkpointer has not yet (waiting at most 200 ms for readers to finish), and the
// next transaction writes the WAL from its start; journal_size_limit then cuts the file
// back. Busy: tried again a quarter of the limit later.
void LogStore::restart_wal() {
  if (wal_pages_ < wal_restart_at_) return;
  int pages = 0, copied = 0;
  sqlite3_busy_timeout(db_, 200);
  const int rc =
      sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, &pages, &copied);
  sqlite3_busy_timeout(db_, 5000);
  if (rc == SQLITE_OK) {
    counters_.checkpoints.fetch_add(1, std::memory_order_relaxed);
    count_checkpointed(copied);
    wal_restart_at_ = options_.wal_restart_pages;
  } else {
    wal_restart_at_ = wal_pages_ + std::max(options_.wal_restart_pages / 4, 1);
    if (rc != SQLITE_BUSY) {
      KLOG_WARN("event=log_checkpoint_failed path=%s error=%s", log::q(path_).c_str(),
                log::q(sqlite3_errmsg(db_)).c_str());
    }
  }
}

LogStore::~LogStore() {
  stop();
  stmts_.reset();
  sqlite3_close(db_);
}

void LogStore::start() {
  if (thread_.joinable()) return;
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  base_nice_ = errno == 0 ? nice : 0;
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "kronop-log");
    // Every 1,000 virtual machine instructions (a few µs): a long statement (a retention
    // chunk, a big block) takes short turns too.
    sqlite3_progress_handler(db_, 1000, &LogStore::on_progress, this);
    run();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writer_done_ = true;
    }
    writer_done_cv_.notify_all();
  });
  checkpointer_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "kronop-checkpt");
    checkpoint_run();
  });
}

bool LogStore::stop(std::optional<std::chrono::milliseconds> budget) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
    if (budget && thread_.joinable() &&
        !writer_done_cv_.wait_for(lock, *budget, [this] { return writer_done_; })) {
      // Out of time: the writer rolls back at its next row; a statement under way is
      // interrupted (safe from another thread while the connection is open).
      cut_.store(true, std::memory_order_relaxed);
      sqlite3_interrupt(db_);
    }
  }
  if (thread_.joinable()) thread_.join();
  // The writer has committed its last batch: the checkpointer's last round comes after it.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    checkpointer_stopping_ = true;
  }
  checkpoint_wake_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  // Nothing will be committed any more: whoever still waits is told now (and checks
  // committed() to learn that its batch did not make it).
  notify_waiters(true);
  return committed() == submitted();
}

void LogStore::when_committed(uint64_t batch, std::function<void()> fn) {
  bool waits = false, wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Checked under the lock the writer takes after storing committed_ (notify_waiters): a
    // waiter either sees the new value here or is in waiters_ when the writer looks.
    if (!waiters_closed_ && committed_.load(std::memory_order_acquire) < batch) {
      const bool was_ready = batch_ready();
      waiters_.emplace(batch, std::move(fn));
      waits = true;
      // A join waits for a queued batch: the transaction filling starts now rather than at
      // its deadline (one not queued yet starts it when submitted).
      wake = !was_ready && batch_ready();
    }
  }
  if (wake) wake_.notify_one();
  if (!waits) fn();
}

void LogStore::on_commit(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(on_commit_mutex_);
  on_commit_ = std::move(fn);
}

void LogStore::notify_waiters(bool all) {
  std::vector<std::function<void()>> due;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (all) waiters_closed_ = true;
    const uint64_t done = committed_.load(std::memory_order_acquire);
    auto end = all ? waiters_.end() : waiters_.upper_bound(done);
    for (auto it = waiters_.begin(); it != end; ++it) due.push_back(std::move(it->second));
    waiters_.erase(waiters_.begin(), end);
  }
  for (auto &fn : due) fn();
}

void LogStore::checkpoint_run() {
  run_in_background(19);
  // A connection of its own: a PASSIVE checkpoint copies what it can without waiting for
  // (or blocking) the writer, which goes on appending to the WAL meanwhile.
  sqlite3 *db = nullptr;
  if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    KLOG_WARN(
        "event=log_checkpoint_failed path=%s error=%s consequence=\"the WAL grows until restart\"",
        log::q(path_).c_str(), log::q(sqlite3_errmsg(db)).c_str());
    sqlite3_close(db);
    return;
  }
  exec(db, options_.sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
  const auto interval = std::chrono::milliseconds(std::max<uint64_t>(options_.checkpoint_ms, 1));
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      checkpoint_wake_.wait_for(lock, interval, [this] { return checkpointer_stopping_; });
      stopping = checkpointer_stopping_;  // then one last round: the next start reads a short WAL
    }
    // Cut short, the stop has no time for a last round either.
    if (stopping && cut_.load(std::memory_order_relaxed)) break;
    int wal_frames = 0, copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
    if (rc == SQLITE_OK) {
      bump_owned(counters_.checkpoints);
      count_checkpointed(copied);
    } else if (rc != SQLITE_BUSY) {
      KLOG_WARN("event=log_checkpoint_failed path=%s error=%s", log::q(path_).c_str(),
                log::q(sqlite3_errmsg(db)).c_str());
    }
    if (stopping) break;
  }
  sqlite3_close(db);
}

uint64_t LogStore::submit(std::vector<StoredMessage> batch) {
  std::size_t bytes = 0;
  for (const StoredMessage &m : batch) bytes += m.body.size() + m.event.size();
  uint64_t id;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // The writer needs waking when it sleeps for want of work, and when the transaction it
    // is filling becomes ready; in between it wakes by itself at the batch's deadline (a
    // wake-up per drain pass would cost a context switch each, on the CPUs the I/O loops
    // need).
    const bool was_idle = idle();
    const bool was_ready = !was_idle && batch_ready();
    if (queue_.empty()) queued_since_ = std::chrono::steady_clock::now();
    id = ++queued_id_;
    queued_records_ = was_idle ? batch.size() : queued_records_ + batch.size();
    queued_bytes_ = was_idle ? bytes : queued_bytes_ + bytes;
    queue_.push_back(std::move(batch));
    wake = was_idle || (!was_ready && batch_ready());
  }
  submitted_.store(id, std::memory_order_release);
  if (wake) wake_.notify_one();
  return id;
}

void LogStore::run() {
  run_in_background(kBackgroundNice);
  std::vector<StoredMessage> records;
  std::unordered_map<std::string, UserRow> users;
  std::unordered_map<std::string, uint64_t> marks;
  auto next_trim = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(std::max<uint64_t>(options_.trim_interval_ms, 1));
  for (;;) {
    std::vector<std::vector<StoredMessage>> taken;
    uint64_t last_id = 0;
    bool stopping = false, behind = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // Idle: wake for the next retention round too.
      while (!stopping_ && idle()) {
        if (wake_.wait_until(lock, next_trim) == std::cv_status::timeout && idle()) {
          lock.unlock();
          // The journal's messages due for their age go into blocks without new ones too.
          if (regroup_due(std::chrono::steady_clock::now())) {
            records.clear();
            if (!write(records)) counters_.errors.fetch_add(1, std::memory_order_relaxed);
          }
          trim(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()));
          next_trim = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(std::max<uint64_t>(options_.trim_interval_ms, 1));
          lock.lock();
        }
      }
      // Let a transaction fill for up to batch_ms, unless it is full already.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.batch_ms);
      while (!stopping_ && !batch_ready() &&
             wake_.wait_until(lock, deadline) != std::cv_status::timeout) {
      }
      // A transaction that filled before its deadline (or that a join waits for): the
      // writer is busy, and takes no short turns in it.
      turns_on_ = !batch_ready();
      queued_records_ = 0;
      queued_bytes_ = 0;
      const bool waited = !queue_.empty() && std::chrono::steady_clock::now() - queued_since_ >=
                                                 std::chrono::milliseconds(kBehindMs);
      taken.swap(queue_);
      users.swap(user_rows_);
      marks.swap(taken_);
      last_id = queued_id_;
      stopping = stopping_;
      behind = stopping || waited;
    }
    turns_.begin();
    if (behind != raised_) set_behind(behind);
    // Presence is state, not a stream: a failed write is logged and the next change of
    // that user writes it again.
    if (!write_users(users)) {
      counters_.errors.fetch_add(1, std::memory_order_relaxed);
      KLOG_WARN("event=log_presence_write_failed path=%s error=%s", log::q(path_).c_str(),
                log::q(sqlite3_errmsg(db_)).c_str());
    }
    users.clear();
    records.clear();
    for (auto &b : taken) {
      for (auto &r : b) records.push_back(std::move(r));
    }
    if (!records.empty() || !taken.empty() || regroup_due(std::chrono::steady_clock::now())) {
      // An SQLite error (disk full, I/O) must not lose what is queued: retry until it works
      // or we are told to stop; the rings hold the records meanwhile (they are not released).
      // Given up only when stopping: the records stay unreleased in their rings and are
      // read (and logged) again at the next start.
      int attempt = 0;
      bool ok;
      while (!(ok = write(records))) {
        if (cut_.load(std::memory_order_relaxed)) break;  // not an error: stop() said so
        counters_.errors.fetch_add(1, std::memory_order_relaxed);
        if (++attempt == 1 || attempt % 100 == 0) {
          KLOG_ERROR("event=log_write_failed path=%s error=%s action=retrying",
                     log::q(path_).c_str(), log::q(sqlite3_errmsg(db_)).c_str());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_ && attempt >= 10) break;
      }
      if (!ok) {
        std::lock_guard<std::mutex> lock(mutex_);
        left_uncommitted_ = records.size();
        for (const auto &b : queue_) left_uncommitted_ += b.size();
        return;
      }
      committed_.store(last_id, std::memory_order_release);
      notify_waiters(false);
      {
        std::lock_guard<std::mutex> lock(on_commit_mutex_);
        if (on_commit_) on_commit_();
      }
    }
    // After the records they name (logged above, or in an earlier transaction). A mark that
    // fails to be written only means records sent again after a crash (Redis counts them
    // once); the next acknowledgement of the topic writes a newer one.
    if (!write_taken(marks)) {
      counters_.errors.fetch_add(1, std::memory_order_relaxed);
      KLOG_WARN("event=log_outbox_write_failed path=%s error=%s", log::q(path_).c_str(),
                log::q(sqlite3_errmsg(db_)).c_str());
    }
    marks.clear();
    // Under steady load the queue is never empty: a retention round between batches, at
    // most one chunk per rule, keeps the log bounded without holding logging up for long.
    // Not while stopping: what is submitted comes first.
    if (!stopping && std::chrono::steady_clock::now() >= next_trim) {
      trim(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()));
      next_trim = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(std::max<uint64_t>(options_.trim_interval_ms, 1));
    }
    if (stopping) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!idle()) continue;
      }
      // Everything submitted is in: the journal's messages go into blocks, so that a cleanly
      // stopped log has an empty journal. Not when stop() cut the writer, nor after an error
      // (they are in the journal, which the next start reads).
      records.clear();
      if (!cut_.load(std::memory_order_relaxed) && !write(records, true)) {
        counters_.errors.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
  }
}

int LogStore::on_progress(void *self) {
  static_cast<LogStore *>(self)->take_turn();
  return 0;  // go on
}

void LogStore::set_behind(bool behind) {
  if (behind && raise_refused_) return;
  const int nice = behind ? base_nice_ : kBackgroundNice;
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) {
    if (behind) {
      raise_refused_ = true;
      KLOG_WARN(
          "event=log_behind nice_failed=%d error=%s consequence=\"the log stays at nice %d when "
          "it falls behind; allow it with LimitNICE=+%d (systemd) or RLIMIT_NICE\"",
          nice, log::q(std::strerror(errno)).c_str(), kBackgroundNice, nice);
    }
    return;
  }
  raised_ = behind;
  if (behind) counters_.times_behind.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace kronop::daemon
