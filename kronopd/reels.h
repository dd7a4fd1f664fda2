// What the daemon keeps per reel, on the ingest thread's side of the fan-out: the
// interaction counters (likes, comments, shares) and the recent reel_update payloads that
// GET /api/v1/reels/:id/updates serves.
//
// Counting happens at ingest, where every interaction passes exactly once whoever sent it (a
// client's push through the daemon's own producer, or a backend through its ring), in the
// order the topic is numbered. An interaction is dispatched with the reel's totals after it
// filled in (Interaction.like_count, ...). After each drain pass, every reel whose counters
// changed gets one reel_update (low priority: the next one supersedes it) whose update_data
// carries "likes", "comments" and "shares" as JSON numbers ({"likes":3,"comments":1,
// "shares":0}), so a burst of likes costs one counter message, not one per like.
//
// The counters and recent updates live in memory (since start); the durable log makes them
// survive restarts. At most `max_reels` reels are kept, least recently updated evicted first.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "envelope_validation.h"
#include "fanout.h"
#include "reel_counters.h"
#include "topic_key.h"

namespace kronop::daemon {

// The numeric id of reel:<id>, 0 when the id is not a positive int32.
int32_t reel_number(std::string_view topic);

// {"likes":L,"comments":C,"shares":S}
std::string counters_json(const ReelCounters &c);

// CLUSTER MODE (DESIGN.md §8): the totals are Redis's, so that every node shows the same and
// each interaction counts once. The numbering script moves a reel's totals as it numbers
// the records that change them, and hands them out with the message (cluster_numbering.h);
// each node then writes them into what it delivers, as it does on one host.
//
// What a record does to its reel's totals, in the numbering script's terms: an interaction
// of a counted kind moves one of them ('l', 'c', 's'); kronopd's own counter update (a
// reel_update made by flush_counter_updates: producer 0) carries them ('t'); anything else
// has nothing to do with them (0).
CounterOp counter_op(const EnvelopeView &view);
// `envelope` (a valid record's bytes) as delivered with `totals`: an interaction carrying
// them, a counter update whose update_data is them. False when it is neither (left as is).
bool with_totals(std::string_view envelope, const ReelCounters &totals, std::string *out);

class ReelState {
 public:
  explicit ReelState(std::size_t recent_per_reel = 100, std::size_t max_reels = 100'000);

  // Ingest thread, before dispatch. For a valid interaction on a reel topic (a typed
  // Interaction, or a JSON body that maps onto one) of a known kind: counts it and points
  // `out` at the record to dispatch instead (the same Envelope, its Interaction carrying the
  // reel's totals, as a typed body; valid until the next call). False: dispatch the record
  // as it is.
  bool count_interaction(const EnvelopeView &view, EnvelopeView *out);
  // Ingest thread, after dispatch: keeps a reel_update record (its body, numbered `seq`) for
  // the REST API. Its JSON is made when asked for, so remembering costs a copy.
  void remember(const EnvelopeView &view, uint64_t seq);
  // Ingest thread, after a drain pass: calls `dispatch` with one reel_update record per reel
  // whose counters changed since the last call (the view is valid during the call).
  void flush_counter_updates(const std::function<void(const EnvelopeView &)> &dispatch);

  // Any thread: a reel's counters and its most recent updates (seq and payload JSON, oldest
  // first, at most `limit`); nullopt when nothing is known about the reel.
  struct Snapshot {
    ReelCounters counters;
    std::vector<std::pair<uint64_t, std::string>> updates;  // seq, payload
  };
  std::optional<Snapshot> snapshot(std::string_view topic, std::size_t limit) const;
  // Ingest thread, cluster mode: the reel's totals as Redis gave them with a message.
  void set_counters(std::string_view topic, const ReelCounters &totals);
  uint64_t reels() const;

 private:
  struct Reel {
    std::string topic;
    ReelCounters counters;
    struct Update {
      uint64_t seq = 0;
      BodyKind kind = BodyKind::kNone;
      std::string body;
    };
    std::vector<Update> recent;  // a ring
    std::size_t next = 0;        // where the next payload goes once full
    bool counters_dirty = false;
    std::list<Reel *>::iterator lru;
  };
  // Under mutex_.
  Reel &touch(std::string_view topic);

  std::size_t recent_per_reel_;
  std::size_t max_reels_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Reel, TopicHash, TopicEqual> reels_;
  std::list<Reel *> lru_;           // most recently updated first
  std::vector<std::string> dirty_;  // topics with changed counters (ingest thread only)
  EnvelopeValidator validator_;     // ingest thread only
  std::string record_;              // the rewritten record count_interaction points into
};

}  // namespace kronop::daemon
