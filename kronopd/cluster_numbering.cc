#include "cluster_numbering.h"

#include <openssl/sha.h>

#include <cerrno>

#include "redis_reply.h"

namespace kronop::daemon {

namespace {

// KEYS: meta, history, then each record's producer key. ARGV: the epoch of a new stream,
// history size, ttl (s), channel, then per record: producer id ("0": none), producer seq,
// envelope bytes. Answer: the epoch, then per record its seq (0: a duplicate).
constexpr const char *kScript = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local out = {epoch}
for i = 1, (#ARGV - 4) / 3 do
  local producer, pseq, envelope = ARGV[3 * i + 2], ARGV[3 * i + 3], ARGV[3 * i + 4]
  local last = producer ~= '0' and redis.call('GET', KEYS[i + 2])
  if last and tonumber(last) >= tonumber(pseq) then
    out[#out + 1] = 0
  else
    local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
    local s = string.format('%d', seq)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], s .. '-0', 'm', envelope)
    if producer ~= '0' then redis.call('SET', KEYS[i + 2], pseq, 'EX', ARGV[3]) end
    redis.call('SPUBLISH', ARGV[4], epoch .. ':' .. s .. ':' .. envelope)
    out[#out + 1] = seq
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return out
)lua";

}  // namespace

TopicKeys TopicKeys::of(std::string_view topic) {
  std::string tag(1, '{');
  tag.append(topic).push_back('}');
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

std::vector<std::string> numbering_command(std::string_view topic,
                                           const std::vector<NumberingRecord> &records,
                                           uint64_t new_epoch, const HistoryLimits &limits) {
  const TopicKeys keys = TopicKeys::of(topic);
  std::vector<std::string> argv = {"EVALSHA", numbering_script_sha1(),
                                   std::to_string(2 + records.size()), keys.meta, keys.history};
  argv.reserve(3 + 2 + 4 * records.size() + 4);
  for (const NumberingRecord &r : records) argv.push_back(keys.producer(r.producer_id));
  argv.push_back(std::to_string(new_epoch));
  argv.push_back(std::to_string(limits.size));
  argv.push_back(std::to_string(limits.ttl_s));
  argv.push_back(keys.channel);
  for (const NumberingRecord &r : records) {
    argv.push_back(std::to_string(r.producer_id));
    argv.push_back(std::to_string(r.producer_seq));
    argv.emplace_back(r.envelope);
  }
  return argv;
}

Result<NumberedBatch> read_numbering_reply(const redisReply &reply, std::size_t count) {
  if (reply.type == REDIS_REPLY_ERROR) {
    return Error{-EPROTO, std::string(reply.str != nullptr ? reply.str : "", reply.len)};
  }
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements != count + 1 || reply.element == nullptr) {
    return Error{-EPROTO, "the numbering script answered something else than {epoch, seq...}"};
  }
  NumberedBatch b;
  const redisReply *epoch = reply.element[0];
  if (epoch == nullptr || epoch->type != REDIS_REPLY_STRING ||
      !parse_decimal_u64({epoch->str, epoch->len}, &b.epoch) || b.epoch == 0) {
    return Error{-EPROTO, "the numbering script's epoch is not a number above 0"};
  }
  b.seqs.reserve(count);
  uint64_t previous = 0;
  for (std::size_t i = 1; i <= count; ++i) {
    const redisReply *seq = reply.element[i];
    if (seq == nullptr || seq->type != REDIS_REPLY_INTEGER || seq->integer < 0) {
      return Error{-EPROTO, "the numbering script's seqs are not numbers"};
    }
    const auto s = static_cast<uint64_t>(seq->integer);
    // Seqs given in one call follow each other.
    if (s != 0 && previous != 0 && s != previous + 1) {
      return Error{-EPROTO, "the numbering script's seqs do not follow each other"};
    }
    if (s != 0) previous = s;
    b.seqs.push_back(s);
  }
  return b;
}

Result<NumberedMessage> parse_numbered_message(std::string_view payload) {
  const auto first = payload.find(':');
  const auto second = first == std::string_view::npos ? first : payload.find(':', first + 1);
  NumberedMessage m;
  if (second == std::string_view::npos || !parse_decimal_u64(payload.substr(0, first), &m.epoch) ||
      !parse_decimal_u64(payload.substr(first + 1, second - first - 1), &m.seq) || m.epoch == 0 ||
      m.seq == 0) {
    return Error{-EPROTO, "not EPOCH:SEQ:ENVELOPE"};
  }
  m.envelope = payload.substr(second + 1);
  return m;
}

}  // namespace kronop::daemon
