// Reading a topic's cluster stream (cluster_numbering.h has its keys and how it is written):
// where it stands, for the answer to a join, and what its history holds, for a rejoin's
// recovery on any node.
//
// - Position: the stream's epoch and last seq, read in one script call that also starts a
//   stream where there is none, so that a joiner is told the epoch its first message will
//   carry (as LocalSequencer::current does on one host). A stream started this way and not
//   used expires after `unnumbered_ttl_s`, not after the history's TTL: joins of topics no
//   one publishes to, however many an outsider makes up, leave little behind in Redis.
// - History: the messages after `after` up to `until`, with the stream's epoch read in the
//   same call: a history emptied and started again (a new epoch) can hold the same seqs,
//   and they must not be taken for the old stream's.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"
#include "reel_counters.h"
#include "sequencer.h"

namespace kronop::daemon {

// EVAL of the position script for `topic`; `new_epoch` is the epoch a new stream takes.
std::vector<std::string> position_command(std::string_view topic, uint64_t new_epoch,
                                          uint64_t unnumbered_ttl_s);
// Its answer: the stream's epoch (never 0) and last seq.
Result<StreamPosition> read_position_reply(const redisReply &reply);

struct HistoryEntry {
  uint64_t seq = 0;
  std::string envelope;  // as delivered: with its reel's totals written in, if it has them
  bool counted = false;  // it moved or carries its reel's totals (cluster_numbering.h):
  ReelCounters totals;
};
struct HistoryRange {
  uint64_t epoch = 0;                 // 0: the topic has no stream
  std::vector<HistoryEntry> entries;  // seq order, each after `after` and at most `until`
};
// EVAL of the history script: the stream's epoch and its entries numbered after..until
// (at most until - after of them).
std::vector<std::string> history_command(std::string_view topic, uint64_t after, uint64_t until);
// Its answer, checked: entries in increasing seq order within (after, until], at most
// until - after of them. Whether they are all there is the caller's to judge (retention
// may have trimmed the oldest).
Result<HistoryRange> read_history_reply(const redisReply &reply, uint64_t after, uint64_t until);

}  // namespace kronop::daemon
