// Presence messages between nodes; see cluster_presence.h.
#include "cluster_presence.h"

#include <cerrno>

#include "cluster_numbering.h"
#include "kronop/clock.h"
#include "owned_counter.h"
#include "redis_reply.h"

namespace kronop::daemon {

namespace {

Error bad(const char *what) { return Error{-EPROTO, what}; }

// The next '\t'- or '\n'-ended field of `line` (taken off it); false when there is none.
bool field(std::string_view &rest, char end, std::string_view *out) {
  const auto at = rest.find(end);
  if (at == std::string_view::npos) return false;
  *out = rest.substr(0, at);
  rest.remove_prefix(at + 1);
  return true;
}

}  // namespace

bool is_presence_message(std::string_view payload) { return payload.starts_with('P'); }

std::string encode_presence(const PresenceMessage &m) {
  std::string out;
  std::size_t size = 4 + m.node.size();
  for (const auto *list : {&m.joins, &m.leaves}) {
    for (const PresenceHub::NodeMeta &n : *list) size += n.user.size() + 46;
  }
  out.reserve(size);
  out += 'P';
  out += static_cast<char>(m.kind);
  out += '\t';
  out += m.node;
  out += '\n';
  for (const PresenceHub::NodeMeta &n : m.joins) {
    out += "+\t";
    out += n.user;
    out += '\t';
    out += std::to_string(n.id);
    out += '\t';
    out += std::to_string(n.online_at);
    out += '\n';
  }
  for (const PresenceHub::NodeMeta &n : m.leaves) {
    out += "-\t";
    out += n.user;
    out += '\t';
    out += std::to_string(n.id);
    out += '\n';
  }
  return out;
}

Result<PresenceMessage> parse_presence_message(std::string_view payload, std::size_t max_lines) {
  PresenceMessage m;
  std::string_view rest = payload, head, node;
  if (!field(rest, '\t', &head) || head.size() != 2 || head[0] != 'P' ||
      (head[1] != 'D' && head[1] != 'S' && head[1] != 'Q') || !field(rest, '\n', &node) ||
      node.empty()) {
    return bad("not a presence message (PD, PS or PQ, a tab, the node's id, a newline)");
  }
  m.kind = static_cast<PresenceMessage::Kind>(head[1]);
  m.node = node;
  if (m.kind == PresenceMessage::Kind::kQuery && !rest.empty()) {
    return bad("a presence query carries no lines");
  }
  while (!rest.empty()) {
    if (m.joins.size() + m.leaves.size() >= max_lines) return bad("a presence message too long");
    std::string_view sign, user, id, online_at;
    if (!field(rest, '\t', &sign) || (sign != "+" && sign != "-") || !field(rest, '\t', &user)) {
      return bad("a presence line is not +/- USER ID [ONLINE_AT]");
    }
    PresenceHub::NodeMeta meta{std::string(user), 0, 0};
    if (sign == "+") {
      if (!field(rest, '\t', &id) || !field(rest, '\n', &online_at) ||
          !parse_decimal_u64(id, &meta.id) || !parse_decimal_u64(online_at, &meta.online_at)) {
        return bad("a presence join is not +\\tUSER\\tID\\tONLINE_AT");
      }
      m.joins.push_back(std::move(meta));
    } else {
      if (m.kind != PresenceMessage::Kind::kChanges || !field(rest, '\n', &id) ||
          !parse_decimal_u64(id, &meta.id)) {
        return bad("a presence leave is not -\\tUSER\\tID, in changes");
      }
      m.leaves.push_back(std::move(meta));
    }
  }
  return m;
}

std::vector<std::string> encode_changes(const std::string &node,
                                        std::vector<PresenceHub::NodeMeta> joins,
                                        std::vector<PresenceHub::NodeMeta> leaves) {
  std::vector<std::string> out;
  PresenceMessage m{PresenceMessage::Kind::kChanges, node, {}, {}};
  std::size_t j = 0, l = 0;
  while (j < joins.size() || l < leaves.size()) {
    m.joins.clear();
    m.leaves.clear();
    while (j < joins.size() && m.joins.size() < kMetasPerMessage) {
      m.joins.push_back(std::move(joins[j++]));
    }
    while (l < leaves.size() && m.joins.size() + m.leaves.size() < kMetasPerMessage) {
      m.leaves.push_back(std::move(leaves[l++]));
    }
    out.push_back(encode_presence(m));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The agent

ClusterPresence::ClusterPresence(uv_loop_t *loop, RedisConnection &commands, PresenceHub &hub,
                                 ClusterPresenceOptions options)
    : loop_(loop), commands_(commands), hub_(hub), options_(std::move(options)) {
  if (options_.ttl_ms < 1000) options_.ttl_ms = 1000;
}

void ClusterPresence::start() {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  const uint64_t interval = options_.ttl_ms / 5;
  uv_timer_start(
      &timer_, [](uv_timer_t *t) { static_cast<ClusterPresence *>(t->data)->heartbeat(); },
      interval, interval);
}

void ClusterPresence::leave(std::function<void()> done) {
  if (timer_open_) uv_timer_stop(&timer_);
  if (!commands_.up()) {
    done();
    return;
  }
  const auto argv = leave_command(PresenceHub::node_id());
  commands_.send({argv.begin(), argv.end()},
                 [done = std::move(done)](const redisReply *, const Error *) { done(); });
}

void ClusterPresence::stop() {
  if (!timer_open_) return;
  timer_open_ = false;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t *>(&timer_), nullptr);
}

void ClusterPresence::heartbeat() {
  if (!commands_.up() || heartbeat_in_flight_) return;
  heartbeat_in_flight_ = true;
  const uint64_t sent_ms = monotonic_ms();
  const uint64_t connections = options_.connections ? options_.connections() : 0;
  const auto argv =
      heartbeat_command(PresenceHub::node_id(), options_.address, connections, options_.ttl_ms);
  commands_.send({argv.begin(), argv.end()}, [this, sent_ms](const redisReply *reply,
                                                             const Error *) {
    heartbeat_in_flight_ = false;
    if (reply == nullptr) return;  // the link is lost: on_up heartbeats again
    auto r = read_heartbeat_reply(*reply);
    if (!r.ok()) {
      refuse("", "heartbeat: " + r.error().message);
      return;
    }
    bump_owned(counters_.heartbeats);
    std::vector<std::string> alive;
    alive.reserve(r.value().members.size());
    for (const ClusterMember &m : r.value().members) alive.push_back(m.id);
    // Nodes heard from before this heartbeat was sent and no longer listed are dead.
    const auto dropped = hub_.drop_nodes_except(alive, sent_ms);
    if (!dropped.empty()) {
      bump_owned(counters_.nodes_dropped, dropped.size());
      for (const std::string &id : dropped) {
        KLOG_NOTICE("event=cluster_node_gone node=%s consequence=\"its users leave every reel\"",
                    log::q(id).c_str());
      }
    }
    // Not listed any more, though it was: taken for dead (a long cut, a stalled host). The
    // others dropped its users; they are said again.
    if (!r.value().was_listed && ever_listed_) {
      KLOG_NOTICE("event=cluster_node_back consequence=\"this node's presences are said again\"");
      say_states();
    }
    ever_listed_ = true;
    std::lock_guard lock(members_mu_);
    members_ = std::move(r.value().members);
    members_as_of_ms_ = r.value().now_ms;
  });
}

void ClusterPresence::send(std::string_view topic, const std::string &payload) {
  // Dropped while the link is down: the states are said again once it is back.
  if (!commands_.up()) return;
  const std::string channel = TopicKeys::of(topic).channel;
  commands_.send({"SPUBLISH", channel, payload}, [](const redisReply *, const Error *) {});
  bump_owned(counters_.sent);
}

void ClusterPresence::publish(const std::string &topic, std::vector<PresenceHub::NodeMeta> joins,
                              std::vector<PresenceHub::NodeMeta> leaves) {
  for (const std::string &m :
       encode_changes(PresenceHub::node_id(), std::move(joins), std::move(leaves))) {
    send(topic, m);
  }
}

void ClusterPresence::say_states() {
  for (const std::string &topic : hub_.own_topics()) {
    send(topic,
         encode_presence(
             {PresenceMessage::Kind::kState, PresenceHub::node_id(), hub_.own_metas(topic), {}}));
  }
}

void ClusterPresence::on_up(const std::unordered_set<std::string> &wanted) {
  heartbeat();
  hub_.forget_remote(nullptr);
  say_states();
  for (const std::string &topic : wanted) on_subscribed(topic);
}

void ClusterPresence::on_unwanted(const std::string &topic) { hub_.forget_remote(&topic); }

void ClusterPresence::on_subscribed(std::string_view topic) {
  send(topic, encode_presence({PresenceMessage::Kind::kQuery, PresenceHub::node_id(), {}, {}}));
}

void ClusterPresence::on_message(std::string_view topic, std::string_view payload) {
  auto m = parse_presence_message(payload);
  if (!m.ok()) {
    refuse(topic, m.error().message);
    return;
  }
  PresenceMessage &msg = m.value();
  if (msg.node == PresenceHub::node_id()) return;  // this node's own, heard back
  bump_owned(counters_.received);
  const std::string t(topic);
  bool ok = true;
  switch (msg.kind) {
    case PresenceMessage::Kind::kQuery: {
      auto own = hub_.own_metas(t);
      if (!own.empty()) {
        send(topic,
             encode_presence(
                 {PresenceMessage::Kind::kState, PresenceHub::node_id(), std::move(own), {}}));
      }
      break;
    }
    case PresenceMessage::Kind::kState:
      ok = hub_.remote_state(t, msg.node, msg.joins, monotonic_ms());
      break;
    case PresenceMessage::Kind::kChanges:
      ok = hub_.remote_changes(t, msg.node, msg.joins, msg.leaves, monotonic_ms());
      break;
  }
  if (!ok) refuse(topic, "a node id or user that is not one, or past a bound");
}

void ClusterPresence::refuse(std::string_view topic, const std::string &why) {
  bump_owned(counters_.refused);
  uint64_t suppressed = 0;
  if (!refused_log_.allow(monotonic_ms(), &suppressed)) return;
  KLOG_WARN("event=cluster_presence_refused topic=%s error=%s suppressed=%llu",
            log::q(topic).c_str(), log::q(why).c_str(),
            static_cast<unsigned long long>(suppressed));
}

std::vector<ClusterMember> ClusterPresence::members(uint64_t *as_of_ms) const {
  std::lock_guard lock(members_mu_);
  if (as_of_ms != nullptr) *as_of_ms = members_as_of_ms_;
  return members_;
}

}  // namespace kronop::daemon
