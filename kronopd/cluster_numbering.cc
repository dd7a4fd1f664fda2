#include "cluster_numbering.h"

#include <openssl/sha.h>

#include <cerrno>
#include <charconv>

namespace kronop::daemon {

namespace {

// KEYS: meta, history, the producer's key. ARGV: the epoch of a new stream, producer id
// ("0": none), producer seq, history size, ttl (s), channel, envelope bytes.
constexpr const char *kScript = R"lua(
local producer = ARGV[2] ~= '0'
if producer then
  local last = redis.call('GET', KEYS[3])
  if last and tonumber(last) >= tonumber(ARGV[3]) then return {0, '0', 0} end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
local s = string.format('%d', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], s .. '-0', 'm', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if producer then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[5]) end
redis.call('SPUBLISH', ARGV[6], epoch .. ':' .. s .. ':' .. ARGV[7])
return {1, epoch, seq}
)lua";

bool parse_u64(std::string_view text, uint64_t *out) {
  if (text.empty() || text.size() > 20) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

TopicKeys TopicKeys::of(std::string_view topic) {
  const std::string tag = "{" + std::string(topic) + "}";
  return {tag + ":m", tag + ":h", tag};
}

std::string TopicKeys::producer(uint64_t producer_id) const {
  return channel + ":p:" + std::to_string(producer_id);
}

const std::string &numbering_script() {
  static const std::string script(kScript);
  return script;
}

const std::string &numbering_script_sha1() {
  static const std::string sha1 = [] {
    unsigned char digest[SHA_DIGEST_LENGTH];
    const std::string &s = numbering_script();
    SHA1(reinterpret_cast<const unsigned char *>(s.data()), s.size(), digest);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char b : digest) {
      hex += kHex[b >> 4];
      hex += kHex[b & 15];
    }
    return hex;
  }();
  return sha1;
}

std::vector<std::string> numbering_command(std::string_view topic, uint64_t producer_id,
                                           uint64_t producer_seq, std::string_view envelope,
                                           uint64_t new_epoch, const HistoryLimits &limits) {
  const TopicKeys keys = TopicKeys::of(topic);
  return {"EVALSHA",
          numbering_script_sha1(),
          "3",
          keys.meta,
          keys.history,
          keys.producer(producer_id),
          std::to_string(new_epoch),
          std::to_string(producer_id),
          std::to_string(producer_seq),
          std::to_string(limits.size),
          std::to_string(limits.ttl_s),
          keys.channel,
          std::string(envelope)};
}

Result<Numbered> read_numbering_reply(const redisReply &reply) {
  if (reply.type == REDIS_REPLY_ERROR) {
    return Error{-EPROTO, std::string(reply.str != nullptr ? reply.str : "", reply.len)};
  }
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 3 || reply.element == nullptr) {
    return Error{-EPROTO, "the numbering script answered something else than {flag, epoch, seq}"};
  }
  const redisReply *flag = reply.element[0];
  const redisReply *epoch = reply.element[1];
  const redisReply *seq = reply.element[2];
  Numbered n;
  if (flag == nullptr || flag->type != REDIS_REPLY_INTEGER || epoch == nullptr ||
      epoch->type != REDIS_REPLY_STRING || seq == nullptr || seq->type != REDIS_REPLY_INTEGER ||
      !parse_u64({epoch->str, epoch->len}, &n.epoch) || seq->integer < 0) {
    return Error{-EPROTO, "the numbering script's answer has the wrong types"};
  }
  n.duplicate = flag->integer == 0;
  n.seq = static_cast<uint64_t>(seq->integer);
  if (!n.duplicate && (n.epoch == 0 || n.seq == 0)) {
    return Error{-EPROTO, "the numbering script gave epoch or seq 0"};
  }
  return n;
}

Result<NumberedMessage> parse_numbered_message(std::string_view payload) {
  const auto first = payload.find(':');
  const auto second = first == std::string_view::npos ? first : payload.find(':', first + 1);
  NumberedMessage m;
  if (second == std::string_view::npos || !parse_u64(payload.substr(0, first), &m.epoch) ||
      !parse_u64(payload.substr(first + 1, second - first - 1), &m.seq) || m.epoch == 0 ||
      m.seq == 0) {
    return Error{-EPROTO, "not EPOCH:SEQ:ENVELOPE"};
  }
  m.envelope = payload.substr(second + 1);
  return m;
}

}  // namespace kronop::daemon
