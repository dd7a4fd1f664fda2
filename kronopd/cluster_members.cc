// The members' heartbeats; see cluster_members.h.
#include "cluster_members.h"

#include <cerrno>

#include "redis_reply.h"

namespace kronop::daemon {

namespace {

// KEYS: the members' hash. ARGV: the node's id, "TTL_MS CONNECTIONS ADDRESS". An entry is
// "HEARTBEAT_MS TTL_MS CONNECTIONS ADDRESS", removed once older than its own TTL less a
// fifth (one heartbeat interval). Answer: {1 if the node's entry was there, Redis's time in
// ms, then id, entry, id, entry, ...}.
constexpr const char *kHeartbeatScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local was = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now) .. ' ' .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local out = {was, now}
for i = 1, #all, 2 do
  local at, ttl = string.match(all[i + 1], '^(%d+) (%d+) ')
  at, ttl = tonumber(at), tonumber(ttl)
  if at == nil or ttl == nil or now - at > ttl - math.floor(ttl / 5) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
)lua";

Error bad(const char *what) { return Error{-EPROTO, what}; }

// "HEARTBEAT_MS TTL_MS CONNECTIONS ADDRESS"
bool parse_entry(std::string_view text, ClusterMember *m) {
  uint64_t *numbers[] = {&m->heartbeat_ms, &m->ttl_ms, &m->connections};
  for (uint64_t *n : numbers) {
    const auto space = text.find(' ');
    if (space == std::string_view::npos || !parse_decimal_u64(text.substr(0, space), n)) {
      return false;
    }
    text.remove_prefix(space + 1);
  }
  m->address = text;
  return m->address.size() <= 512;
}

}  // namespace

std::vector<std::string> heartbeat_command(std::string_view id, std::string_view address,
                                           uint64_t connections, uint64_t ttl_ms) {
  std::string entry = std::to_string(ttl_ms);
  entry += ' ';
  entry += std::to_string(connections);
  entry += ' ';
  entry += address;
  return {"EVAL",          kHeartbeatScript, "1", std::string(kMembersKey),
          std::string(id), std::move(entry)};
}

Result<MembersReply> read_heartbeat_reply(const redisReply &reply, std::size_t max_members) {
  if (reply.type == REDIS_REPLY_ERROR) return Error{-EPROTO, describe_reply(reply)};
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 2 || reply.elements % 2 != 0 ||
      reply.element == nullptr || reply.element[0] == nullptr || reply.element[1] == nullptr ||
      reply.element[0]->type != REDIS_REPLY_INTEGER ||
      reply.element[1]->type != REDIS_REPLY_INTEGER || reply.element[1]->integer < 0) {
    return bad("the heartbeat script answered something else than {listed, now, members...}");
  }
  MembersReply out;
  out.was_listed = reply.element[0]->integer != 0;
  out.now_ms = static_cast<uint64_t>(reply.element[1]->integer);
  for (std::size_t i = 2; i + 1 < reply.elements && out.members.size() < max_members; i += 2) {
    const redisReply *id = reply.element[i];
    const redisReply *entry = reply.element[i + 1];
    ClusterMember m;
    if (id == nullptr || entry == nullptr || id->type != REDIS_REPLY_STRING ||
        entry->type != REDIS_REPLY_STRING || id->len == 0 || id->len > 64 ||
        !parse_entry({entry->str, entry->len}, &m)) {
      return bad("a member's entry is not ID -> \"HEARTBEAT_MS TTL_MS CONNECTIONS ADDRESS\"");
    }
    m.id.assign(id->str, id->len);
    out.members.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> leave_command(std::string_view id) {
  return {"HDEL", std::string(kMembersKey), std::string(id)};
}

}  // namespace kronop::daemon
