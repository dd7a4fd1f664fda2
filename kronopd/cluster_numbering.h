// How Redis numbers messages for the whole cluster (DESIGN.md §8): one server-side script
// call per topic carries that topic's records of a drain pass, in order, and runs
// atomically where the topic's keys live, so that every node delivers each message under
// the same (epoch, seq).
//
// A topic T has three kinds of keys, all under the hash tag {T} so that a Redis Cluster
// keeps them, and the channel, on one shard:
//   {T}:m         hash: e = the stream's epoch, s = the last seq given
//   {T}:h         stream: the recent history, entry id "SEQ-0", field m = the message
//   {T}:p:ID      the last producer seq of producer ID that was numbered (idempotency)
// and its shard channel is {T}. The script:
//   1. a missing meta hash (never used, expired, or Redis lost its data) starts a new
//      stream: the epoch the node proposes (sequencer.h, new_epoch), and the history is
//      emptied, so that no (epoch, seq) ever names two messages;
//   2. then for each record, in order: a record of producer ID with a producer seq at or
//      below {T}:p:ID is a duplicate (sent again after kronopd or Redis restarted without
//      its answer) and changes nothing; any other gets seq = s + 1, is appended to the
//      history (trimmed to about --redis-history-size entries) and published on the
//      channel as "EPOCH:SEQ:" + the envelope's bytes. A record that moves its reel's
//      totals (reels.h, CounterOp) moves them in the meta hash (fields likes, comments,
//      shares) and goes out with them: "EPOCH:SEQ#L,C,S:" + the envelope, and field
//      n = "L,C,S" in the history. The totals are the stream's: a new stream starts them
//      at 0, and they expire with it;
//   3. every key expires after --redis-history-ttl without publishing.
//
// Why a batch per topic, and why the caller keeps at most one call per topic in flight:
// the idempotency key is a high-water mark, so a producer's records must reach Redis in
// their order. Two pipelined calls for one topic could be taken out of order (the first
// refused — NOSCRIPT after a SCRIPT FLUSH, OOM — the second not), and the first, sent
// again, would then be taken for a duplicate and lost. One call in flight per topic, each
// carrying everything the topic has queued, keeps the order and still needs only one round
// trip per drain pass. Producer seqs count from 1 and stay far below 2^53, where Lua's
// numbers are exact.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"
#include "reel_counters.h"

namespace kronop::daemon {

struct HistoryLimits {
  uint64_t size = 10'000;   // entries kept per topic (approximately: MAXLEN ~)
  uint64_t ttl_s = 86'400;  // a topic's keys expire this long after its last message
};

// The keys and channel of topic `topic`.
struct TopicKeys {
  std::string meta;
  std::string history;
  std::string channel;
  static TopicKeys of(std::string_view topic);
  std::string producer(uint64_t producer_id) const;
};

// The script's Lua source, and its SHA1 (hex) for EVALSHA.
const std::string &numbering_script();
const std::string &numbering_script_sha1();

// One record of a topic's batch.
struct NumberingRecord {
  uint64_t producer_id = 0;  // 0: kronopd's own message, never sent twice (no key)
  uint64_t producer_seq = 0;
  std::string_view envelope;             // the record's Envelope bytes
  CounterOp counter = CounterOp::kNone;  // what it does to its reel's totals (reels.h)
};

// The EVALSHA command that numbers `records` of `topic` in order; `new_epoch` is the epoch a
// new stream takes.
std::vector<std::string> numbering_command(std::string_view topic,
                                           const std::vector<NumberingRecord> &records,
                                           uint64_t new_epoch, const HistoryLimits &limits);

struct NumberedBatch {
  uint64_t epoch = 0;
  std::vector<uint64_t> seqs;  // per record, in order: its seq, or 0 for a duplicate
};
// The script's answer for a batch of `count` records, or why it is not one (an error
// reply, such as NOSCRIPT, included).
Result<NumberedBatch> read_numbering_reply(const redisReply &reply, std::size_t count);

// A message as a channel or the history carries it.
struct NumberedMessage {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::string_view envelope;  // points into the payload read
  bool counted = false;       // it moved or carries its reel's totals, which are:
  ReelCounters totals;
};
// "EPOCH:SEQ:ENVELOPE", or "EPOCH:SEQ#L,C,S:ENVELOPE" for a counted one, read back (outside
// input: every node checks the envelope again).
Result<NumberedMessage> parse_numbered_message(std::string_view payload);
// "L,C,S": a reel's likes, comments and shares as the numbering script writes them.
bool parse_totals(std::string_view text, ReelCounters *out);

}  // namespace kronop::daemon
