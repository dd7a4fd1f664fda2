// How Redis numbers a message for the whole cluster (DESIGN.md §8): one server-side script
// per message, run atomically where the topic's keys live, so that every node delivers it
// under the same (epoch, seq).
//
// A topic T has three kinds of keys, all under the hash tag {T} so that a Redis Cluster
// keeps them, and the channel, on one shard:
//   {T}:m         hash: e = the stream's epoch, s = the last seq given
//   {T}:h         stream: the recent history, entry id "SEQ-0", field m = the message
//   {T}:p:ID      the last producer seq of producer ID that was numbered (idempotency)
// and its shard channel is {T}. The script, in order:
//   1. a record of producer ID with a producer seq at or below {T}:p:ID is a duplicate
//      (sent again after kronopd or Redis restarted without its answer): nothing changes,
//      the answer says so;
//   2. a missing meta hash (never used, expired, or Redis lost its data) starts a new
//      stream: the epoch the node proposes (sequencer.h, new_epoch), and the history is
//      emptied, so that no (epoch, seq) ever names two messages;
//   3. seq = s + 1; the message is appended to the history (trimmed to about
//      --redis-history-size entries; every key expires after --redis-history-ttl without
//      publishing) and published on the channel as "EPOCH:SEQ:" + the envelope's bytes.
// Producer seqs count from 1 and stay far below 2^53, where Lua's numbers are exact.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"

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

// The EVALSHA command that numbers one message: `envelope` is the record's Envelope bytes,
// `new_epoch` the epoch a new stream takes, `producer_id` 0 for a message that is never sent
// twice (no idempotency key).
std::vector<std::string> numbering_command(std::string_view topic, uint64_t producer_id,
                                           uint64_t producer_seq, std::string_view envelope,
                                           uint64_t new_epoch, const HistoryLimits &limits);

struct Numbered {
  bool duplicate = false;  // numbered before: epoch and seq are 0
  uint64_t epoch = 0;
  uint64_t seq = 0;
};
// The script's answer, or why it is not one (an error reply, such as NOSCRIPT, included).
Result<Numbered> read_numbering_reply(const redisReply &reply);

// A message as a channel or the history carries it.
struct NumberedMessage {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::string_view envelope;  // points into the payload read
};
// "EPOCH:SEQ:ENVELOPE" read back (outside input: every node checks the envelope again).
Result<NumberedMessage> parse_numbered_message(std::string_view payload);

}  // namespace kronop::daemon
