#include "cluster_history.h"

#include <cerrno>

#include "cluster_numbering.h"
#include "redis_reply.h"
#include "reels.h"

namespace kronop::daemon {

namespace {

// KEYS: meta, history. ARGV: the epoch of a new stream, its TTL while unnumbered (s).
// Answer: {epoch, last seq}. A stream started here empties any history left of an earlier
// one, as the numbering script does, so that the new epoch never names an old message.
constexpr const char *kPositionScript = R"lua(
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 's', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {ARGV[1], 0}
end
return {e, tonumber(redis.call('HGET', KEYS[1], 's')) or 0}
)lua";

// KEYS: meta, history. ARGV: first and last entry id, most entries. Answer: {epoch or nil,
// entries}, read together.
constexpr const char *kHistoryScript = R"lua(
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return {false, {}} end
return {e, redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}
)lua";

Error bad(const std::string &what) { return Error{-EPROTO, what}; }

std::string entry_id(uint64_t seq) {
  std::string id = std::to_string(seq);
  id += "-0";
  return id;
}

// "SEQ-0" as the numbering script writes it.
bool parse_entry_id(std::string_view id, uint64_t *seq) {
  if (id.size() < 3 || id.substr(id.size() - 2) != "-0") return false;
  return parse_decimal_u64(id.substr(0, id.size() - 2), seq) && *seq != 0;
}

}  // namespace

std::vector<std::string> position_command(std::string_view topic, uint64_t new_epoch,
                                          uint64_t unnumbered_ttl_s) {
  const TopicKeys keys = TopicKeys::of(topic);
  return {"EVAL",
          kPositionScript,
          "2",
          keys.meta,
          keys.history,
          std::to_string(new_epoch),
          std::to_string(unnumbered_ttl_s)};
}

Result<StreamPosition> read_position_reply(const redisReply &reply) {
  if (reply.type == REDIS_REPLY_ERROR) return bad(describe_reply(reply));
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 2 || reply.element == nullptr ||
      reply.element[0] == nullptr || reply.element[1] == nullptr) {
    return bad("the position script answered something else than {epoch, seq}");
  }
  StreamPosition at;
  if (!reply_u64(*reply.element[0], &at.epoch) || at.epoch == 0 ||
      !reply_u64(*reply.element[1], &at.seq)) {
    return bad("the position script's epoch or seq is not a number");
  }
  return at;
}

std::vector<std::string> history_command(std::string_view topic, uint64_t after, uint64_t until) {
  const TopicKeys keys = TopicKeys::of(topic);
  return {"EVAL",
          kHistoryScript,
          "2",
          keys.meta,
          keys.history,
          entry_id(after + 1),
          entry_id(until),
          std::to_string(until > after ? until - after : 0)};
}

Result<HistoryRange> read_history_reply(const redisReply &reply, uint64_t after, uint64_t until) {
  if (reply.type == REDIS_REPLY_ERROR) return bad(describe_reply(reply));
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 2 || reply.element == nullptr ||
      reply.element[0] == nullptr || reply.element[1] == nullptr ||
      reply.element[1]->type != REDIS_REPLY_ARRAY) {
    return bad("the history script answered something else than {epoch, entries}");
  }
  HistoryRange out;
  const redisReply &epoch = *reply.element[0];
  if (epoch.type == REDIS_REPLY_NIL) return out;  // no stream
  if (!reply_u64(epoch, &out.epoch) || out.epoch == 0) {
    return bad("the history script's epoch is not a number above 0");
  }
  const redisReply &entries = *reply.element[1];
  const uint64_t most = until > after ? until - after : 0;
  if (entries.elements > most) return bad("the history holds more entries than asked");
  out.entries.reserve(entries.elements);
  uint64_t previous = after;
  for (std::size_t i = 0; i < entries.elements; ++i) {
    // Each entry: [id, [field, value, ...]], the message in field "m".
    const redisReply *e = entries.element[i];
    if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0] == nullptr || e->element[1] == nullptr ||
        e->element[1]->type != REDIS_REPLY_ARRAY) {
      return bad("a history entry is not [id, fields]");
    }
    HistoryEntry h;
    if (!parse_entry_id(reply_text(*e->element[0]), &h.seq) || h.seq <= previous || h.seq > until) {
      return bad("a history entry's id is not a seq of the range, in order");
    }
    // Fields: m = the message; n = its reel's totals, for a counted one.
    const redisReply &fields = *e->element[1];
    bool found = false;
    for (std::size_t f = 0; f + 1 < fields.elements; f += 2) {
      if (fields.element[f] == nullptr || fields.element[f + 1] == nullptr) break;
      const redisReply &value = *fields.element[f + 1];
      if (value.type != REDIS_REPLY_STRING) continue;
      const std::string_view name = reply_text(*fields.element[f]);
      if (name == "m") {
        h.envelope.assign(value.str, value.len);
        found = true;
      } else if (name == "n") {
        if (!parse_totals({value.str, value.len}, &h.totals)) {
          return bad("a history entry's totals are not LIKES,COMMENTS,SHARES");
        }
        h.counted = true;
      }
    }
    if (!found) return bad("a history entry has no message");
    std::string counted;
    if (h.counted && with_totals(h.envelope, h.totals, &counted)) h.envelope.swap(counted);
    previous = h.seq;
    out.entries.push_back(std::move(h));
  }
  return out;
}

}  // namespace kronop::daemon
