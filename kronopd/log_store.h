// The durable log: every numbered message in SQLite (WAL), written by one thread in batched
// transactions. A transaction's messages of one topic go into one row of `blocks` (up to
// block_records of them), encoded and compressed with zstd together (common/log_block.h):
// SQLite writes a row and an index entry per topic per transaction, not per message.
//
// The ingest thread numbers records and fans them out at once; it hands each drain pass's
// records to the log as one batch (submit) and keeps the ring positions they came from.
// Those positions are released to the producers only once committed() reaches the batch, so
// a record a producer's publish accepted is either in the log or still in its ring: a
// kronopd killed at any moment reads it again at the next start. Re-read records that were
// already logged are recognised by their producer identity (producer id + producer seq: the
// last seq logged per producer is in the `producers` table, written once per transaction)
// and skipped, so nothing is logged twice; so is a seq a topic has logged already.
//
// Per topic the log keeps the last seq and the stream's epoch (`topics`), so numbering
// continues across restarts.
//
// In a cluster (--redis) the log is also the outbox of what Redis has not taken yet
// (cluster_outbox.h): per topic, `cluster_outbox` holds the highest local seq below which
// Redis has taken every record. A topic's row is made in the transaction that logs its first
// record in cluster mode, and moves up as Redis's acknowledgements come (submit_taken),
// written after the records they name. A node that died is left with the rows above its
// marks: the next start sends them again (Redis counts each once). Run as a single host, the
// log drops the marks: what an earlier cluster run had not handed over is not sent later.
//
// Schema versions: PRAGMA user_version. 0 (a new file) is created; 1 (a row per message,
// kronopd before blocks) is migrated in place at open, in one transaction (log_migration.h);
// a version newer than this binary knows is refused at open, as are files that are not
// SQLite databases, corrupt or read-only ones, each with a message that says so.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "envelope_validation.h"
#include "kronop/result.h"
#include "log_block.h"
#include "short_turns.h"
#include "stored_message.h"
#include "topic_key.h"

struct sqlite3;

namespace kronop::daemon {

// A user's last-known presence (PresenceHub::UserPresence, without the hub's types).
struct UserRow {
  std::string user_id;
  int status = 0;  // PresenceHub::Status
  int32_t current_reel = 0;
  std::string activity;
  uint64_t last_seen_ms = 0;
};

// A block's id is its time in ms shifted left by this, plus a count (the schema, log_store.cc).
inline constexpr int kBlockIdTimeShift = 22;

struct LogOptions {
  // A transaction starts once batch_records or batch_bytes (bodies and events) are queued,
  // batch_ms after the first of them came, or at once when a join waits for them
  // (when_committed). Fewer, larger transactions cost less per record (with many topics,
  // each rewrites the pages of `topics` they touch); the records wait in their rings
  // meanwhile, so batch_bytes stays well below a ring's size (durability.cc).
  std::size_t batch_records = 4096;
  std::size_t batch_bytes = 256 * 1024;
  uint64_t batch_ms = 25;
  int zstd_level = 1;
  // A block holds at most this many messages, and stops growing past block_bytes encoded.
  std::size_t block_records = 1024;
  std::size_t block_bytes = 256 * 1024;
  // The journal (common/log_journal.h): a topic with fewer than journal_records messages (and
  // under journal_bytes) waiting goes into the transaction's journal row, a frame among the
  // other topics', rather than a block of its own, so that a transaction spread over many
  // topics costs one row rather than a row and an index entry per topic. Its messages are
  // written as blocks once they add up to that much, or are journal_ms old (at most
  // journal_regroup_topics topics per transaction for their age), or when the journal holds
  // more than journal_max_bytes; and all of them at a clean stop. 0 journal_records: no
  // journal (every transaction writes blocks).
  std::size_t journal_records = 64;
  std::size_t journal_bytes = 16 * 1024;
  uint64_t journal_ms = 1000;
  std::size_t journal_regroup_topics = 256;
  std::size_t journal_max_bytes = 64u << 20;
  // --log-sync full: every commit is synced to disk (SQLite's synchronous=FULL); otherwise
  // (normal) the checkpoints sync it, about once a second.
  bool sync_full = false;
  // Retention: messages older than this (0: kept whatever their age; by the block's time,
  // whole blocks), and beyond the newest this many per topic (0: no limit; exact: the block
  // across the line is written again without its older messages). Enforced incrementally:
  // every trim_interval_ms the writer deletes up to trim_chunk blocks at a time, each chunk
  // in its own short transaction, for at most trim_budget_ms a round, so trimming keeps pace
  // with logging without holding it up for long. A chunk is sized to take about
  // trim_chunk_ms by what the last one took: a block costs from about 0.1 ms (its pages
  // cached) to over 0.5 ms (read into a page cache still growing, after a start), and the
  // rings hold what the writer has not committed meanwhile.
  uint64_t retention_age_ms = 7ull * 24 * 3600 * 1000;
  uint64_t retention_count = 100'000;
  // The writer's page cache (SQLite's cache_size), in MiB; the indexes' pages stay in it.
  uint64_t cache_mib = 64;
  uint64_t trim_interval_ms = 1000;
  std::size_t trim_chunk = 64;
  uint64_t trim_chunk_ms = 5;
  uint64_t trim_budget_ms = 20;
  // How often the WAL is checkpointed into the database (and synced to disk), on a thread of
  // its own: the most a host crash can take from the log, give or take one checkpoint.
  uint64_t checkpoint_ms = 1000;
  // The WAL's size (in pages) past which the writer, between two transactions, finishes a
  // checkpoint itself so that the WAL is written from its start again (see restart_wal).
  int wal_restart_pages = 16384;
  // A cluster node (--redis): the log keeps the outbox's marks (above). Otherwise the marks
  // of an earlier cluster run are dropped at open.
  bool cluster_outbox = false;
};

struct LogCounters {
  std::atomic<uint64_t> rows{0};        // records logged
  std::atomic<uint64_t> blocks{0};      // rows of `blocks` they went into
  std::atomic<uint64_t> journaled{0};   // records that went into the journal first
  std::atomic<uint64_t> duplicates{0};  // records the unique producer identity turned away
  std::atomic<uint64_t> transactions{0};
  std::atomic<uint64_t> payload_bytes{0};     // the records' bodies
  std::atomic<uint64_t> compressed_bytes{0};  // the blocks as stored (bodies and fields)
  // What SQLite wrote to disk for them: WAL frames appended (headers included) and pages
  // copied into the database by checkpoints.
  std::atomic<uint64_t> disk_bytes{0};
  std::atomic<uint64_t> errors{0};       // failed transactions (retried)
  std::atomic<uint64_t> trimmed{0};      // records deleted by retention
  std::atomic<uint64_t> checkpoints{0};  // WAL checkpoints done
  // Times the writer fell behind (LogStore::kBehindMs) and left nice 10 until it caught up.
  std::atomic<uint64_t> times_behind{0};
};

class LogStore {
 public:
  static constexpr int kSchemaVersion = kLogSchemaVersion;
  // The writer runs at nice 10 (behind fan-out) while it keeps up. When the oldest record it
  // takes has waited this long, it is behind: the rings' space is released only once logged,
  // so a log starved by busy neighbours would stall the producers. It goes back to the nice
  // kronopd started with (where the process may: root, or RLIMIT_NICE, which the systemd
  // unit sets) until a transaction finds the queue young again; and so it does while stopping.
  static constexpr uint64_t kBehindMs = 250;

  // Opens (creating when missing) the database at `path`; errors name the file and say what
  // is wrong with it.
  static Result<std::unique_ptr<LogStore>> open(const std::string &path, LogOptions options = {});
  ~LogStore();  // stops the writer (committing what was submitted)
  LogStore(const LogStore &) = delete;
  LogStore &operator=(const LogStore &) = delete;

  // Before start(): what numbering continues from.
  struct TopicState {
    uint64_t last_seq = 0;
    uint64_t epoch = 0;
  };
  std::unordered_map<std::string, TopicState> topics();
  // producer id -> the last producer seq logged for it.
  std::unordered_map<uint64_t, uint64_t> producers();
  // Users' last-known presence, least recently seen first.
  std::vector<UserRow> users();
  // Any thread: keep this as the user's last-known presence (written with the next batch;
  // only the newest per user is kept).
  void submit_user(UserRow row);
  // Before start(), in a cluster: the topics with logged records Redis has not taken, in the
  // local seq range (taken_seq, last_seq].
  struct OutboxTopic {
    std::string topic;
    uint64_t taken_seq = 0;
    uint64_t last_seq = 0;
  };
  std::vector<OutboxTopic> outbox();
  // Any thread, in a cluster: Redis has taken every record of `topic` up to local seq `seq`
  // (written with the next transaction, after the records submitted before this call).
  void submit_taken(const std::string &topic, uint64_t seq);

  void start();
  // Commits everything submitted, then ends the writer thread; true when all of it was
  // committed. With a `budget`, the writer is cut when it runs out: the transaction under way
  // is rolled back and what is left stays in the rings, unreleased, to be read and logged at
  // the next start (as after a crash). Meanwhile the writer leaves nice 10 where it may.
  bool stop(std::optional<std::chrono::milliseconds> budget = std::nullopt);
  // After a stop() that was cut: the records it left to the rings.
  uint64_t left_uncommitted() const { return left_uncommitted_; }

  // Ingest thread: queues one drain pass's records; returns the batch's id (1, 2, ...).
  uint64_t submit(std::vector<StoredMessage> batch);
  // The highest batch id whose records are committed (any thread).
  uint64_t committed() const { return committed_.load(std::memory_order_acquire); }
  uint64_t submitted() const { return submitted_.load(std::memory_order_acquire); }
  // Any thread: calls fn() once batch `batch` is committed: at once (on the caller's thread)
  // when it already is, otherwise on the writer thread right after the commit that covers it;
  // and at stop() (after the writer's last commit) for waiters whose batch never came. So
  // fn() is called exactly once, and must check committed() itself to tell the two apart.
  // fn() runs with no lock of the log held; it should only hand the news on (post it to an
  // I/O loop), as the writer thread waits for it.
  void when_committed(uint64_t batch, std::function<void()> fn);
  // Any thread: fn() is called on the writer thread after every commit (the ingest thread
  // is woken to hand the committed ring space back, rather than polling for it); empty: no
  // more calls. Once this returns, no call of the previous fn() is under way.
  void on_commit(std::function<void()> fn);
  const LogCounters &counters() const { return counters_; }
  const std::string &path() const { return path_; }

 private:
  LogStore(sqlite3 *db, std::string path, LogOptions options);
  bool load_caches();
  void run();
  // One transaction; false (rolled back, the caches as they were) on an SQLite error.
  // `flush`: every topic's journal messages go into blocks (a clean stop).
  bool write(std::vector<StoredMessage> &records, bool flush = false);
  // A message's size as journal_bytes and block_bytes count it.
  static std::size_t journal_weight(const StoredMessage &m) {
    return m.body.size() + m.event.size() + 32;
  }
  // log_pending.cc: the journal's messages not yet in blocks, read back at open.
  Result<bool> load_journal();
  // Whether some topic's journal messages are due to go into blocks for their age or the
  // journal's size (the writer looks when idle too).
  bool regroup_due(std::chrono::steady_clock::time_point now) const;
  // One round of retention (trim_budget_ms at most); returns the records deleted.
  uint64_t trim(uint64_t now_ns);
  // A chunk of whole blocks, whose id and count `select` gives (?1 a, ?2 b, ?3 the chunk's
  // size), deleted in a transaction of its own; the records they held.
  uint64_t delete_blocks(const char *select, int64_t a, int64_t b);
  std::size_t trim_blocks_ = 1;  // the next chunk's size (the writer's)
  // Writes topic_id's block across `upto` again without its messages up to `upto`.
  uint64_t cut_block(int64_t topic_id, int64_t upto);

 public:
  // Runs retention rounds until nothing is left to trim (tests, and `now_ns` lets them pick
  // the time). Not while the writer thread runs.
  uint64_t trim_all(uint64_t now_ns);
  // One round, as the writer runs it (tests: how long one takes).
  uint64_t trim_round(uint64_t now_ns) { return trim(now_ns); }

 private:
  sqlite3 *db_;
  std::string path_;
  LogOptions options_;
  std::unique_ptr<LogBlockCodec> codec_;  // the writer thread's
  // The writer's view of what is committed: each topic's row, each producer's last seq, the
  // last block id. Loaded at open, updated after each commit.
  struct TopicRow {
    int64_t id = 0;
    uint64_t last_seq = 0;
    uint64_t epoch = 0;
    uint64_t blocked_seq = 0;  // its messages up to here are in blocks
  };
  // The journal's messages of a topic not yet in blocks (log_pending.cc), encoded as a block
  // holds them (LogBlockCodec::append), and the journal rows that hold their frames.
  struct Pending {
    std::string raw;
    BlockSpan span;
    std::vector<int64_t> rows;  // ascending
    std::size_t bytes = 0;      // as journal_bytes counts them
    std::chrono::steady_clock::time_point since;
    uint64_t generation = 0;  // its entry in pending_order_
  };
  struct TopicEntry {
    TopicRow row;
    std::unique_ptr<Pending> pending;  // none: all its messages are in blocks
  };
  // Every topic of the log (never erased: entries stay where they are).
  using Topics = std::unordered_map<std::string, TopicEntry, TopicHash, TopicEqual>;
  Topics topics_;
  // Topics in the order their pending messages began (oldest first); an entry whose
  // generation is not its topic's pending's any more is stale. Its time lets the writer stop
  // at the first young entry without looking further.
  struct PendingEntry {
    std::chrono::steady_clock::time_point since;
    uint64_t generation = 0;
    Topics::value_type *topic = nullptr;
  };
  std::deque<PendingEntry> pending_order_;
  uint64_t pending_generation_ = 0;
  std::size_t pending_bytes_ = 0;
  std::size_t pending_topics_ = 0;  // topics with pending messages
  // Per journal row, how many of its frames are not yet in blocks (a row is deleted when
  // none is left).
  std::map<int64_t, uint32_t> journal_live_;
  int64_t last_journal_id_ = 0;
  std::unordered_map<uint64_t, uint64_t> producer_seqs_;
  int64_t last_block_id_ = 0;
  int page_size_ = 4096;
  LogCounters counters_;
  std::mutex mutex_;
  std::condition_variable wake_;                        // the writer's
  std::condition_variable checkpoint_wake_;             // the checkpointer's
  std::vector<std::vector<StoredMessage>> queue_;       // guarded by mutex_
  std::unordered_map<std::string, UserRow> user_rows_;  // guarded by mutex_
  bool write_users(const std::unordered_map<std::string, UserRow> &rows);
  std::unordered_map<std::string, uint64_t> taken_;  // guarded by mutex_: outbox marks
  bool write_taken(const std::unordered_map<std::string, uint64_t> &marks);
  // Nothing queued for the writer (guarded by mutex_).
  bool idle() const { return queue_.empty() && user_rows_.empty() && taken_.empty(); }
  uint64_t queued_id_ = 0;          // guarded by mutex_: id of queue_.back()
  std::size_t queued_records_ = 0;  // guarded by mutex_: records in queue_
  std::size_t queued_bytes_ = 0;    // guarded by mutex_: their bodies and events
  // guarded by mutex_: the queue holds a transaction's worth, or a batch a join waits for.
  bool batch_ready() const {
    return queued_records_ >= options_.batch_records || queued_bytes_ >= options_.batch_bytes ||
           (!waiters_.empty() && waiters_.begin()->first <= queued_id_);
  }
  bool stopping_ = false;     // guarded by mutex_
  bool writer_done_ = false;  // guarded by mutex_: run() has returned
  std::condition_variable writer_done_cv_;
  // stop() ran out of budget: the writer rolls back and returns (checked per row).
  std::atomic<bool> cut_{false};
  uint64_t left_uncommitted_ = 0;  // the writer's, read after join
  int base_nice_ = 0;              // the nice of the thread that called start()
  // guarded by mutex_: when queue_ last went from empty to holding a batch.
  std::chrono::steady_clock::time_point queued_since_{};
  // The writer's: whether it runs at base_nice_ now (behind, or stopping), and whether the
  // system refused that once (then it stays at nice 10, said once in the log).
  bool raised_ = false;
  bool raise_refused_ = false;
  void set_behind(bool behind);
  // The writer's turns on a CPU (short_turns.h), taken between topics of a transaction and
  // by SQLite's progress handler (on_progress) within its statements, while it keeps up:
  // not in a transaction that filled before its deadline (or that a join waits for), nor
  // while behind. Then the producers (whose rings the log frees) wait for the writer, not
  // the other way round.
  ShortTurns turns_{std::chrono::microseconds(200)};
  bool turns_on_ = false;
  void take_turn() {
    if (turns_on_ && !raised_) turns_.step();
  }
  static int on_progress(void *self);
  bool checkpointer_stopping_ = false;  // guarded by mutex_
  // when_committed's waiters by batch id; guarded by mutex_. waiters_closed_: stop() has
  // called them all, later ones are called at once.
  std::multimap<uint64_t, std::function<void()>> waiters_;
  bool waiters_closed_ = false;
  // Calls (outside the lock) the waiters whose batch is committed; all of them with `all`.
  void notify_waiters(bool all);
  std::mutex on_commit_mutex_;       // held while on_commit_ runs
  std::function<void()> on_commit_;  // guarded by on_commit_mutex_
  std::atomic<uint64_t> submitted_{0};
  std::atomic<uint64_t> committed_{0};
  std::thread thread_;
  std::thread checkpointer_;
  void checkpoint_run();
  // The writer thread, after a commit: restarts the WAL when it has grown past
  // wal_restart_pages. wal_pages_ is the WAL's size after the last commit (SQLite's WAL hook).
  void restart_wal();
  static int on_wal_commit(void *self, sqlite3 *db, const char *name, int pages);
  // Frames a checkpoint reports copied into the database (SQLite counts them for the WAL's
  // life, whichever connection copied them): the ones no checkpoint reported before count.
  void count_checkpointed(int copied);
  std::atomic<int> backfilled_{0};
  int wal_pages_ = 0;
  int wal_restart_at_ = 0;
  struct Statements;
  std::unique_ptr<Statements> stmts_;
};

}  // namespace kronop::daemon
