// Durability: what keeps an accepted record from being lost or told twice differently.
//
// THE INVARIANT (docs/ARCHITECTURE.md, "Durability"): a record that a producer's publish
// accepted is, at every moment, in the durable log or still in its ring. It is enforced
// here, by RingRelease and nowhere else: ring space is handed back to a producer only once
// the log has committed every record read before it. The pipeline (pipeline.h) reads a
// drain pass's records, fans them out at once (the log never delays delivery), submits them
// to the log as one batch, and gives RingRelease the positions it read to; RingRelease
// releases them when LogStore::committed() reaches that batch. A kronopd killed at any
// moment therefore reads again, at its next start, whatever the log does not hold; the
// log's record of each producer's last logged sequence (Ingest's already_logged) keeps that
// from being logged twice. Without a log (--no-durable-log) everything read is released at once.
//
// ReplayEpochs is the other half of a restart after a crash: records fanned out by the run
// that died, but not logged, are read again and numbered again. One producer's records come
// back in the same order, so a topic fed by one producer gets the same numbers; where two
// producers' records meet on a topic their interleaving may differ, so that topic gets a
// new epoch and its clients are told they cannot recover rather than given a different
// history under the same numbers.
//
// RingRelease and ReplayEpochs are used by the ingest thread only. The rest of this file is
// used at start and stop, on the main thread: the data directory, the log's opening, the
// running marker (an unclean stop is how ReplayEpochs knows to act) and users' last-known
// presence, which the log keeps across restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "envelope_validation.h"
#include "kronop/ipc/consumer.h"
#include "kronop/result.h"
#include "log_store.h"
#include "sequencer.h"

namespace kronop::daemon {

class RingRelease {
 public:
  // `log`: the durable log; null: no log, everything read is released at once.
  RingRelease(ipc::Consumer &consumer, LogStore *log) : consumer_(consumer), log_(log) {}

  // After a drain pass whose records (if it read any) were submitted to the log: keeps the
  // positions read so far under the batch that holds them, then releases whatever the log
  // has committed.
  void after_pass(bool read_something);
  // Whether positions wait for the log's commit (the producers want the room: look again
  // soon).
  bool waiting() const { return !pending_.empty(); }

 private:
  ipc::Consumer &consumer_;
  LogStore *log_;
  uint64_t generation_ = 0;  // the consumer's, when pending_ was last cleared
  struct Pending {
    uint64_t batch = 0;              // the log batch that covers these positions
    std::vector<uint64_t> read_pos;  // per ring
  };
  std::vector<Pending> pending_;  // oldest first
};

class ReplayEpochs {
 public:
  // `after_unclean_stop`: the running marker was found (otherwise it is never active).
  ReplayEpochs(ipc::Consumer &consumer, Sequencer &sequencer, bool after_unclean_stop)
      : consumer_(consumer), sequencer_(sequencer), after_unclean_stop_(after_unclean_stop) {}

  // As the ingest thread starts: after an unclean stop, notes where each ring's records
  // written before this start end, and is active until every ring is read past them.
  void start();

  // While some ring is not yet read past what it held at start.
  bool active() const { return active_; }
  // A valid record of ring `ring` ending at `end_pos`, before it is numbered.
  void see(uint32_t ring, uint64_t end_pos, const EnvelopeView &view);
  // After each drain pass.
  void after_pass();

 private:
  ipc::Consumer &consumer_;
  Sequencer &sequencer_;
  bool after_unclean_stop_;
  bool active_ = false;
  std::vector<uint64_t> written_before_start_;  // per ring
  // Per topic while active: the producer seen, whether two were, whether one of its records
  // was written before the start. Mixed and replayed: a new epoch.
  struct Track {
    uint64_t producer = 0;
    bool mixed = false;
    bool replayed = false;
  };
  std::unordered_map<std::string, Track> tracks_;
};

class PresenceHub;

// The data directory (made with the directories to it, mode 0750, when missing).
Result<bool> make_data_dir(const std::string &path);

// The durable log of `config`: DATA_DIR/kronop.db with its retention, or null (and a
// warning line) with --no-durable-log. An error names the file and what is wrong with it.
Result<std::unique_ptr<LogStore>> open_durable_log(const Config &config);

// Users' last-known presence survives restarts: restores what the log holds into `presence`
// and has every later change kept by the log (written with its next batch).
void keep_presence_in_log(LogStore &log, PresenceHub &presence);

// DATA_DIR/kronopd.running exists while kronopd runs: found at start, the last run did not
// stop cleanly (ReplayEpochs). Removed only by a clean stop, once everything fanned out is
// logged.
class RunningMarker {
 public:
  explicit RunningMarker(const std::string &data_dir) : path_(data_dir + "/kronopd.running") {}
  // Whether the marker of an earlier run is there (logged as a warning when it is).
  bool found() const;
  void create() const;
  void remove() const;

 private:
  std::string path_;
};

}  // namespace kronop::daemon
