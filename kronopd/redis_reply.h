// What Redis sends, read: hiredis's reply reader (redisReader) turns bytes into redisReply
// trees; this file says what kronopd makes of them. Everything here is outside input — a
// Redis that misbehaves, or a peer that is not Redis at all — so each accessor checks the
// shape it expects and answers "not that" rather than trusting it (the fuzz target
// redis_reply_fuzz feeds it arbitrary bytes).
//
// Pushes are what a subscriber connection receives (RESP2 arrays whose first element names
// the kind): messages of classic and shard channels, the confirmations of (S)SUBSCRIBE and
// (S)UNSUBSCRIBE — in a Redis Cluster an `sunsubscribe` also arrives unasked when the
// channel's slot moved — and the answer to PING in subscribed mode.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kronop/result.h"

namespace kronop::daemon {

struct ReplyDeleter {
  void operator()(redisReply *r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

struct ReaderDeleter {
  void operator()(redisReader *r) const;
};
using RedisReaderPtr = std::unique_ptr<redisReader, ReaderDeleter>;

// One reply may hold at most this many values (strings, integers, nils, arrays). hiredis
// 0.14 allocates an array's element table as soon as it reads the count ("*2000000000"
// asks for 16 GB), and a few bytes of input make each value: the reader made here refuses
// larger arrays and more values, so one reply cannot make kronopd allocate more than about
// kMaxReplyValues times a value's size, whatever Redis (or a peer that is not Redis) sends.
inline constexpr int kMaxReplyArray = 1 << 20;
inline constexpr std::size_t kMaxReplyValues = 1u << 21;

// A reader for one connection's bytes, within the bounds above.
RedisReaderPtr make_redis_reader();

// The next whole reply in `reader`: a reply, null when more bytes are needed, or an error
// when the bytes are not RESP (the connection cannot be read any further).
Result<RedisReplyPtr> next_redis_reply(redisReader &reader);

enum class PushKind {
  kNone,          // not a push kronopd knows
  kMessage,       // a message of a classic channel (message, or pmessage)
  kShardMessage,  // a message of a shard channel (smessage)
  kSubscribed,    // subscribe / ssubscribe / psubscribe confirmed
  kUnsubscribed,  // unsubscribe / sunsubscribe / punsubscribe, asked for or not
  kPong,          // PING's answer on a subscribed connection
  kError,         // an error reply (-MOVED, -NOAUTH, ...): `payload` holds its text
};

struct Push {
  PushKind kind = PushKind::kNone;
  bool sharded = false;      // ssubscribe / sunsubscribe / smessage
  std::string_view channel;  // empty for an unsubscribe of no channel
  std::string_view payload;  // a message's body, the pong's text, an error's text
  long long count = 0;       // subscriptions left (confirmations)
};

// What `reply` is, read as a push; views point into `reply`.
Push classify_push(const redisReply &reply);

// Small readers of replies, each false/empty when the shape is not the one asked for.
bool reply_is_status(const redisReply &reply, std::string_view text);  // +OK, +PONG
std::string_view reply_text(const redisReply &reply);  // a bulk or status string, else ""
bool reply_integer(const redisReply &reply, long long *out);
// A number at least 0 sent as an integer, or as a bulk or status string of decimal digits
// (what Lua gets from HGET), at most 20 of them.
bool reply_u64(const redisReply &reply, uint64_t *out);
bool parse_decimal_u64(std::string_view text, uint64_t *out);
// An error reply's text, or what else it was (for log lines: at most 200 bytes).
std::string describe_reply(const redisReply &reply);

}  // namespace kronop::daemon
