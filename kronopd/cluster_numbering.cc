#include "cluster_numbering.h"

#include <openssl/sha.h>

#include <cerrno>

#include "redis_reply.h"

namespace kronop::daemon {

namespace {

// KEYS: meta, history, then each record's producer key. ARGV: the epoch of a new stream,
// history size, ttl (s), channel, then per record: producer id ("0": none), producer seq,
// counter op ("-": none; l, c, s: one more like, comment, share; t: the totals only),
// envelope bytes. Answer: the epoch, then per record its seq (0: a duplicate).
constexpr const char *kScript = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local out = {epoch}
local counted = {l = 'likes', c = 'comments', s = 'shares'}
for i = 1, (#ARGV - 4) / 4 do
  local producer, pseq, op, envelope = ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3], ARGV[4 * i + 4]
  local last = producer ~= '0' and redis.call('GET', KEYS[i + 2])
  if last and tonumber(last) >= tonumber(pseq) then
    out[#out + 1] = 0
  else
    local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
    local s = string.format('%d', seq)
    local head = epoch .. ':' .. s
    if op == '-' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], s .. '-0', 'm', envelope)
    else
      local field = counted[op]
      if field then redis.call('HINCRBY', KEYS[1], field, 1) end
      local c = redis.call('HMGET', KEYS[1], 'likes', 'comments', 'shares')
      local totals = (c[1] or '0') .. ',' .. (c[2] or '0') .. ',' .. (c[3] or '0')
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], s .. '-0', 'm', envelope, 'n', totals)
      head = head .. '#' .. totals
    end
    if producer ~= '0' then redis.call('SET', KEYS[i + 2], pseq, 'EX', ARGV[3]) end
    redis.call('SPUBLISH', ARGV[4], head .. ':' .. envelope)
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
  argv.reserve(3 + 2 + 5 * records.size() + 4);
  for (const NumberingRecord &r : records) argv.push_back(keys.producer(r.producer_id));
  argv.push_back(std::to_string(new_epoch));
  argv.push_back(std::to_string(limits.size));
  argv.push_back(std::to_string(limits.ttl_s));
  argv.push_back(keys.channel);
  for (const NumberingRecord &r : records) {
    argv.push_back(std::to_string(r.producer_id));
    argv.push_back(std::to_string(r.producer_seq));
    argv.emplace_back(r.counter == CounterOp::kNone ? "-"
                                                    : std::string(1, static_cast<char>(r.counter)));
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

bool parse_totals(std::string_view text, ReelCounters *out) {
  int64_t *fields[] = {&out->likes, &out->comments, &out->shares};
  for (std::size_t i = 0; i < 3; ++i) {
    const auto comma = i < 2 ? text.find(',') : text.size();
    uint64_t v = 0;
    if (comma == std::string_view::npos || !parse_decimal_u64(text.substr(0, comma), &v) ||
        v > static_cast<uint64_t>(INT64_MAX)) {
      return false;
    }
    *fields[i] = static_cast<int64_t>(v);
    text.remove_prefix(i < 2 ? comma + 1 : comma);
  }
  return true;
}

Result<NumberedMessage> parse_numbered_message(std::string_view payload) {
  // EPOCH:SEQ:ENVELOPE, or EPOCH:SEQ#L,C,S:ENVELOPE (the reel's totals after it).
  const auto first = payload.find(':');
  const auto seq_end =
      first == std::string_view::npos ? first : payload.find_first_of(":#", first + 1);
  const auto second = seq_end == std::string_view::npos ? seq_end : payload.find(':', seq_end);
  NumberedMessage m;
  if (second == std::string_view::npos || !parse_decimal_u64(payload.substr(0, first), &m.epoch) ||
      !parse_decimal_u64(payload.substr(first + 1, seq_end - first - 1), &m.seq) || m.epoch == 0 ||
      m.seq == 0) {
    return Error{-EPROTO, "not EPOCH:SEQ:ENVELOPE"};
  }
  if (payload[seq_end] == '#') {
    if (!parse_totals(payload.substr(seq_end + 1, second - seq_end - 1), &m.totals)) {
      return Error{-EPROTO, "not EPOCH:SEQ#LIKES,COMMENTS,SHARES:ENVELOPE"};
    }
    m.counted = true;
  }
  m.envelope = payload.substr(second + 1);
  return m;
}

}  // namespace kronop::daemon
