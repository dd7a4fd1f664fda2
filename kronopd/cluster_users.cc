// Users' status across the cluster; see cluster_users.h.
#include "cluster_users.h"

#include <cerrno>
#include <climits>

#include "kronop/clock.h"
#include "log.h"
#include "redis_reply.h"

namespace kronop::daemon {

namespace {

// Redis's clock in ms, as a decimal string (Lua's numbers are doubles: %d, not tostring).
#define KRONOP_LUA_NOW                              \
  "local t = redis.call('TIME')\n"                  \
  "local now = tonumber(t[1]) * 1000 + math.floor(" \
  "tonumber(t[2]) / 1000)\n"

// KEYS: the record. ARGV: node id, its count, the alive TTL (ms), the record's TTL (ms), then
// the ids of the nodes alive. Answer: the cluster's count after it.
constexpr const char *kSocketsScript = KRONOP_LUA_NOW R"lua(
local own = 'n:' .. ARGV[1]
local alive = {}
for i = 5, #ARGV do alive['n:' .. ARGV[i]] = true end
local fields = redis.call('HGETALL', KEYS[1])
local before, others = 0, 0
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, 2) == 'n:' then
    local n, at = string.match(fields[i + 1], '^(%d+) (%d+)$')
    n, at = tonumber(n), tonumber(at)
    if f == own then
      before = before + (n or 0)
    elseif n and (alive[f] or now - at <= tonumber(ARGV[3])) then
      before = before + n
      others = others + n
    else
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], own, string.format('%d %d', count, now))
else
  redis.call('HDEL', KEYS[1], own)
end
local after = others + count
if before == 0 and after > 0 then
  if redis.call('HGET', KEYS[1], 'st') ~= 'away' then redis.call('HSET', KEYS[1], 'st', 'online') end
elseif before > 0 and after == 0 then
  redis.call('HSET', KEYS[1], 'st', 'offline', 'r', '0', 'a', '')
end
redis.call('HSET', KEYS[1], 'ls', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return after
)lua";

// KEYS: the record. ARGV: status, reel, activity, the record's TTL (ms).
constexpr const char *kStatusScript = KRONOP_LUA_NOW R"lua(
redis.call('HSET', KEYS[1], 'st', ARGV[1], 'r', ARGV[2], 'a', ARGV[3], 'ls', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
)lua";

// KEYS: the record. Answer: {Redis's time in ms, field, value, field, value, ...}.
constexpr const char *kReadScript = KRONOP_LUA_NOW R"lua(
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, string.format('%d', now))
return out
)lua";

#undef KRONOP_LUA_NOW

// Longest activity text taken from a record (the REST API takes 128 bytes).
constexpr std::size_t kMaxActivity = 1024;

std::string_view text_of(const redisReply *r) {
  return r != nullptr && r->type == REDIS_REPLY_STRING ? std::string_view(r->str, r->len)
                                                       : std::string_view();
}

// "COUNT AT_MS"
bool parse_count(std::string_view v, uint64_t *count, uint64_t *at) {
  const auto space = v.find(' ');
  return space != std::string_view::npos && parse_decimal_u64(v.substr(0, space), count) &&
         parse_decimal_u64(v.substr(space + 1), at);
}

bool parse_reel(std::string_view v, int32_t *out) {
  uint64_t n = 0;
  if (!parse_decimal_u64(v, &n) || n > INT32_MAX) return false;
  *out = static_cast<int32_t>(n);
  return true;
}

}  // namespace

std::string user_record_key(std::string_view user) {
  std::string key = "{user:";
  key.append(user);
  key += "}:u";
  return key;
}

std::vector<std::string> user_sockets_command(std::string_view user, std::string_view node,
                                              uint32_t count, const std::vector<std::string> &alive,
                                              uint64_t alive_ttl_ms, uint64_t record_ttl_ms) {
  std::vector<std::string> argv = {"EVAL",
                                   kSocketsScript,
                                   "1",
                                   user_record_key(user),
                                   std::string(node),
                                   std::to_string(count),
                                   std::to_string(alive_ttl_ms),
                                   std::to_string(record_ttl_ms)};
  argv.insert(argv.end(), alive.begin(), alive.end());
  return argv;
}

std::vector<std::string> user_status_command(const PresenceHub::UserPresence &p,
                                             uint64_t record_ttl_ms) {
  return {"EVAL",
          kStatusScript,
          "1",
          user_record_key(p.user_id),
          PresenceHub::status_name(p.status),
          std::to_string(p.current_reel),
          p.activity,
          std::to_string(record_ttl_ms)};
}

std::vector<std::string> user_read_command(std::string_view user) {
  return {"EVAL", kReadScript, "1", user_record_key(user)};
}

Result<std::optional<PresenceHub::UserPresence>> read_user_record(
    const redisReply &reply, std::string_view user, const std::unordered_set<std::string> &alive,
    uint64_t alive_ttl_ms, uint64_t now_ms) {
  if (reply.type == REDIS_REPLY_ERROR) return Error{-EPROTO, describe_reply(reply)};
  uint64_t redis_now = 0;
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 1 || reply.elements % 2 != 1 ||
      !parse_decimal_u64(text_of(reply.element[0]), &redis_now)) {
    return Error{-EPROTO, "a user's record read answered something else than {time, hash}"};
  }
  if (reply.elements == 1) return std::optional<PresenceHub::UserPresence>();
  PresenceHub::UserPresence p;
  p.user_id = user;
  uint64_t sockets = 0;
  uint64_t last_seen = 0;
  for (std::size_t i = 1; i + 1 < reply.elements; i += 2) {
    const std::string_view field = text_of(reply.element[i]);
    const std::string_view value = text_of(reply.element[i + 1]);
    if (field.substr(0, 2) == "n:") {
      uint64_t count = 0, at = 0;
      if (!parse_count(value, &count, &at)) continue;
      const bool recent = redis_now >= at && redis_now - at <= alive_ttl_ms;
      if (recent || alive.count(std::string(field.substr(2))) != 0) {
        sockets = std::min<uint64_t>(sockets + count, UINT32_MAX);
      }
    } else if (field == "st") {
      if (!PresenceHub::parse_status(value, &p.status)) p.status = PresenceHub::Status::kOffline;
    } else if (field == "r") {
      if (!parse_reel(value, &p.current_reel)) p.current_reel = 0;
    } else if (field == "a") {
      if (value.size() <= kMaxActivity) p.activity = value;
    } else if (field == "ls") {
      (void)parse_decimal_u64(value, &last_seen);
    }
  }
  p.sockets = static_cast<uint32_t>(sockets);
  if (p.sockets == 0 && p.status == PresenceHub::Status::kOnline) {
    // Its sockets were on nodes that died: it is offline, as their last socket closing
    // would have made it.
    p.status = PresenceHub::Status::kOffline;
    p.current_reel = 0;
    p.activity.clear();
  }
  p.last_seen_ms = p.sockets > 0 ? now_ms : last_seen;
  return std::optional<PresenceHub::UserPresence>(std::move(p));
}

ClusterUsers::ClusterUsers(RedisConnection &commands, std::string node_id, AliveFn alive,
                           uint64_t alive_ttl_ms, uint64_t record_ttl_ms)
    : commands_(commands),
      node_id_(std::move(node_id)),
      alive_(std::move(alive)),
      alive_ttl_ms_(alive_ttl_ms),
      record_ttl_ms_(record_ttl_ms) {}

void ClusterUsers::sockets(const std::string &user, uint32_t count) {
  if (count > 0) {
    held_[user] = count;
  } else {
    held_.erase(user);
  }
  if (!unwritten_set_.insert(user).second) return;
  unwritten_.push_back(user);
  if (unwritten_.size() <= kMaxUnwritten) return;
  // Redis has been away long: the oldest change goes. A count still held is written again
  // at the reconnection; a zero is lost.
  std::string oldest = std::move(unwritten_.front());
  unwritten_.pop_front();
  unwritten_set_.erase(oldest);
  if (held_.count(oldest) != 0) return;
  bump_owned(counters_.dropped);
  if (!dropped_logged_) {
    dropped_logged_ = true;
    KLOG_WARN(
        "event=cluster_user_counts_dropped limit=%zu consequence=\"users who left this node "
        "while Redis was away may read online until they next change\"",
        kMaxUnwritten);
  }
}

void ClusterUsers::status(const PresenceHub::UserPresence &p) {
  if (!commands_.up()) {
    bump_owned(counters_.failures);
    return;
  }
  flush();  // the user's count before their choice, as they happened
  bump_owned(counters_.writes);
  const auto argv = user_status_command(p, record_ttl_ms_);
  commands_.send({argv.begin(), argv.end()}, [this](const redisReply *reply, const Error *) {
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) bump_owned(counters_.failures);
  });
}

void ClusterUsers::read(const std::string &user, uint64_t now_ms, ReadFn done) {
  if (!commands_.up()) {
    bump_owned(counters_.failures);
    done(Error{-ENOTCONN, "not connected to Redis"});
    return;
  }
  bump_owned(counters_.reads);
  std::vector<std::string> alive = alive_();
  const auto argv = user_read_command(user);
  commands_.send({argv.begin(), argv.end()},
                 [this, user, now_ms, done = std::move(done),
                  alive = std::unordered_set<std::string>(alive.begin(), alive.end())](
                     const redisReply *reply, const Error *error) {
                   if (reply == nullptr) {
                     bump_owned(counters_.failures);
                     done(*error);
                     return;
                   }
                   auto r = read_user_record(*reply, user, alive, alive_ttl_ms_, now_ms);
                   if (!r.ok()) bump_owned(counters_.failures);
                   done(std::move(r));
                 });
}

void ClusterUsers::flush() {
  if (unwritten_.empty() || !commands_.up()) return;
  const std::vector<std::string> alive = alive_();
  if (alive.empty()) return;  // the members are not known yet
  while (!unwritten_.empty()) {
    std::string user = std::move(unwritten_.front());
    unwritten_.pop_front();
    unwritten_set_.erase(user);
    const auto it = held_.find(user);
    write_count(user, it != held_.end() ? it->second : 0, alive);
  }
  dropped_logged_ = false;
}

void ClusterUsers::on_up() {
  for (const auto &[user, count] : held_) {
    if (unwritten_set_.insert(user).second) unwritten_.push_back(user);
  }
  flush();
}

void ClusterUsers::write_count(const std::string &user, uint32_t count,
                               const std::vector<std::string> &alive) {
  bump_owned(counters_.writes);
  const auto argv =
      user_sockets_command(user, node_id_, count, alive, alive_ttl_ms_, record_ttl_ms_);
  commands_.send({argv.begin(), argv.end()}, [this, user](const redisReply *reply, const Error *) {
    if (reply != nullptr && reply->type != REDIS_REPLY_ERROR) return;
    bump_owned(counters_.failures);
    // Written again at the next flush (the count then held).
    if (unwritten_set_.insert(user).second) unwritten_.push_back(user);
  });
}

}  // namespace kronop::daemon
