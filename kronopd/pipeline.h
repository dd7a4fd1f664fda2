// The pipeline: the path of every record from a producer's ring to the clients and the log.
//
//   ring record --copy once--> validated copy --> sequencer --> fan-out + durable log
//       (ring_reader.h)        (ingest.h)      (sequencer.h)  (fanout.h)  (log_store.h)
//                                                  --> ring space released after commit
//                                                      (durability.h)
//
// One thread, `kronop-ingest`, runs it, in drain passes: it reads up to batch_per_ring
// records from every ring in turn (each copied out of shared memory once, by the ring
// reader); Ingest validates each copy; interactions are counted into their reel's totals
// (reels.h) and go out carrying them; the Sequencer gives the record its topic's next seq;
// the Dispatcher stages one encoded Message for every I/O loop with subscribers; the record
// joins the pass's log batch. At the end of the pass each reel whose counters changed gets
// one counter update (numbered and logged like any record), each loop gets its batch (one
// handoff, one wake-up), the log gets the pass's records as one batch, and RingRelease
// frees the ring space of what the log has committed. Fan-out never waits for the log.
//
// THREADS of kronopd, what each owns, and how they talk:
// - main (the default libuv loop, main.cc): signals (the SIGTERM drain, drain.h; SIGHUP
//   reload, reload.h), the client port's acceptor (accepted sockets go to the I/O loops in
//   turn), the control socket (control.h, control_answers.h), presence diff timer, systemd
//   notifications and watchdog. Owns the configuration.
// - kronop-ingest (this file): the rings' read side, the topic table (the sequencer), the
//   interest sets (which loops have subscribers of a topic), the reels' counters. Talks to
//   the loops through their inboxes (lock-free stacks + uv_async_send), hears from them
//   through the Dispatcher's interest stack (interest changes, sync requests for joins),
//   hands batches to the log writer (LogStore::submit) and reads its commit position.
// - kronop-io-N (io_loop.h, one per CPU): a libuv loop each, owning its connections, their
//   subscriptions and write queues. Other threads reach a loop only by posting to it.
// - kronop-log (log_store.h): the SQLite writer: batched transactions, retention. Owns the
//   database connection that writes.
// - kronop-checkpt (log_store.h): WAL checkpoints (the syncs to disk), off the writer.
// - libuv's thread pool: reads of the log for rejoining clients' history and REST history,
//   each with its own read-only connection, answered on the loop that asked.
// Counters are atomics written by their owning thread and read by any (stats.h: the control
// socket on the main thread, /metrics and /api/v1/system on an I/O thread).
//
// CLUSTER MODE (--redis; cluster_node.h, DESIGN.md §8). Records are still numbered by the
// local sequencer for the local log (the host's own record, and what releases ring space),
// but they are not fanned out here: the pass's records are forwarded to Redis, which numbers
// them for the whole cluster, and every node — this one included — stages what its
// subscriptions receive, under Redis's (epoch, seq) (ClusterSequencer). The Dispatcher's
// interest changes become subscriptions, and its sync answers wait for a topic's position.
// - kronop-cluster (cluster_node.h): the Redis links; talks to this thread through handoff
//   stacks, and wakes it when events wait.
// At most --redis-max-waiting records wait for Redis in memory (it is slow or away); past that
// they wait in the durable log (cluster_outbox.h) and are read back once Redis takes more.
// Without a log, no ring is read past the bound: the rings hold what producers publish,
// and fill, rather than kronopd's memory.
// CUT OFF from Redis (a link down for kGoLocalAfterMs: a shorter blip only delays delivery,
// and the subscriptions catch up), the node delivers this host's records to its clients
// under the host's own numbering (the local log's streams), and goes back to Redis's once
// both links are up again. Either change is a change of every topic's stream, so each one
// resets every topic (Dispatcher::reset_all: its channels are told to join again), and a
// join is answered with the stream in force. The records are forwarded all the same, and
// numbered by Redis once it is back.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "cluster_node.h"
#include "cluster_outbox.h"
#include "cluster_sequencer.h"
#include "config.h"
#include "durability.h"
#include "fanout.h"
#include "ingest.h"
#include "kronop/ipc/consumer.h"
#include "log_store.h"
#include "reels.h"
#include "sequencer.h"

namespace kronop::daemon {

struct PipelineOptions {
  // How long the thread polls empty rings before it sleeps on the futex.
  uint64_t spin_ns = 50'000;
  // Longest sleep: the heartbeat and lease reclaim run at least this often.
  int idle_timeout_ms = 100;
  // Records taken from one ring before moving to the next (fairness between producers).
  std::size_t batch_per_ring = 256;
  // On stop(): how long the thread goes on reading records that are already in the rings
  // (what it reads is fanned out and submitted to the log). 0: it stops at once, and what is
  // unread stays in the rings for the next start.
  uint64_t stop_drain_ms = 1000;
  // The running marker was found: the last run did not stop cleanly (see ReplayEpochs).
  bool after_unclean_stop = false;

  // From the configuration, with or without a durable log.
  static PipelineOptions of(const Config &config, bool durable_log, bool after_unclean_stop);
};

class Pipeline {
 public:
  static constexpr uint64_t kGoLocalAfterMs = 1000;
  // `log`: the durable log (null: none). Numbering continues where the log left each topic,
  // and records the log already holds are skipped when read again. `cluster` (null: a single
  // host; see "Cluster mode" below) must not be started yet.
  Pipeline(std::unique_ptr<ipc::Consumer> consumer, PipelineOptions options,
           std::unique_ptr<Sequencer> sequencer, std::vector<LoopInbox *> inboxes, ReelState &reels,
           LogStore *log, ClusterNode *cluster = nullptr);
  ~Pipeline();  // stops and joins
  Pipeline(const Pipeline &) = delete;
  Pipeline &operator=(const Pipeline &) = delete;

  // Before start(): called on the ingest thread each time the segment file was created again
  // (Ingest::on_segment_recreated).
  void on_segment_recreated(std::function<void()> hook) {
    ingest_.on_segment_recreated(std::move(hook));
  }
  void start();
  // Stops the thread; what it has read is fanned out and submitted to the log.
  void stop();
  // After stop(), once the log has stopped too (it commits everything submitted): releases
  // the ring positions of what it committed, so the next start does not read those records
  // again.
  void release_logged();

  // The I/O loops report interest and ask for syncs here.
  Dispatcher &dispatcher() { return dispatcher_; }
  const IngestCounters &counters() const { return ingest_.counters(); }
  // Cluster mode: the streams as received (ingest thread's; read racily by stats).
  const ClusterStreamCounters &cluster_streams() const { return cluster_streams_.counters(); }
  ipc::Consumer &consumer() { return *consumer_; }

 private:
  void run();
  // One drain pass; returns the records read.
  std::size_t drain_pass();
  // A record the ring reader copied out: validated, counted, numbered, fanned out, logged.
  void take(uint32_t ring, const ipc::RingRecord &record);
  // Numbers a valid record, stages it for fan-out and adds it to the pass's log batch.
  uint64_t publish(const EnvelopeView &view);
  // The end of a pass: counter updates, the loops' batches, the log's batch (and in cluster
  // mode the records for Redis).
  void end_pass();
  // Cluster mode: what the cluster thread handed over, applied; true when anything was.
  bool take_cluster_events();
  // Cluster mode: cut off from Redis (true) or back; resets every topic's stream.
  void go_local(bool local);
  // Cluster mode: a message numbered by Redis, validated and staged for the loops.
  void deliver_cluster_message(const ClusterEvent &m);
  // Cluster mode: records forwarded and not yet taken by Redis (ingest pauses past a bound).
  uint64_t outstanding() const;
  // Cluster mode: hands records to the node, counted as outstanding.
  void forward(std::vector<ForwardRecord> records);
  // Cluster mode with a log: a round of the outbox's catch-up, when it is due.
  void catch_up_outbox();

  std::unique_ptr<ipc::Consumer> consumer_;
  PipelineOptions options_;
  std::unique_ptr<Sequencer> sequencer_;
  ClusterNode *cluster_;
  ClusterSequencer cluster_streams_;  // the Dispatcher's sequencer in cluster mode
  Dispatcher dispatcher_;
  ReelState &reels_;
  LogStore *log_;
  Ingest ingest_;
  RingRelease release_;
  ReplayEpochs replay_;
  std::vector<StoredMessage> to_log_;      // the pass's records
  std::vector<ForwardRecord> to_forward_;  // cluster mode: the pass's records for Redis
  uint64_t max_outstanding_ = 0;  // cluster mode: records waiting in memory for Redis, at most
  uint64_t forwarded_ = 0;        // cluster mode: records handed to the node
  // Cluster mode with a log: the topics whose records wait in the log (cluster_outbox.h).
  std::unique_ptr<ClusterOutbox> outbox_;
  uint64_t next_catch_up_ms_ = 0;
  bool paused_ = false;                  // cluster mode: the last pass read no ring
  bool local_ = false;                   // cluster mode: cut off, delivering locally
  uint64_t down_since_ms_ = 0;           // cluster mode: when a link went down (0: up)
  EnvelopeValidator cluster_validator_;  // cluster mode: messages from Redis
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace kronop::daemon
