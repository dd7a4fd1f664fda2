// Phoenix Presence tracking and user status (see presence.h).
#include "presence.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <random>
#include <system_error>

#include "kronop/v1/presence.pb.h"
#include "payload_codec.h"
#include "phoenix.h"

namespace kronop::daemon {

namespace {

constexpr char kBase36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
// Digits of a uint64_t in base 36 and base 10, at most.
constexpr std::size_t kMaxBase36 = 13;
constexpr std::size_t kMaxBase10 = 20;
// "F" and 8 random characters; other nodes' prefixes, at most kMaxPrefix characters.
constexpr std::size_t kPrefixSize = 9;
constexpr std::size_t kMaxPrefix = 16;

// The id of the next meta, process-wide: refs stay unique with several hubs (the tests).
std::atomic<uint64_t> g_next_meta_id{1};

// "F" and 8 random base-36 characters, drawn once per process: a daemon restarted while
// clients reconnect must not hand out the refs of the previous one, which those clients may
// still hold (syncState keeps metas whose refs it already knows).
const std::string &ref_prefix() {
  static const std::string prefix = [] {
    std::random_device device;
    uint64_t bits = (uint64_t{device()} << 32) ^ device();
    // In case random_device is deterministic on some platform.
    bits ^= static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
    std::string p = "F";
    while (p.size() < kPrefixSize) {
      p.push_back(kBase36[bits % 36]);
      bits /= 36;
    }
    return p;
  }();
  return prefix;
}

void append_ref(std::string &out, uint64_t id) {
  out += ref_prefix();
  char buf[kMaxBase36];
  const auto r = std::to_chars(buf, buf + sizeof buf, id, 36);
  out.append(buf, r.ptr);
}

// The id of a ref append_ref wrote in this process; false for anything else (another
// process's refs, non-canonical spellings such as upper case or leading zeros).
bool parse_ref(std::string_view ref, uint64_t &id) {
  const std::string &prefix = ref_prefix();
  if (ref.size() <= prefix.size() || ref.size() > prefix.size() + kMaxBase36 ||
      ref.substr(0, prefix.size()) != prefix) {
    return false;
  }
  const std::string_view digits = ref.substr(prefix.size());
  const char *end = digits.data() + digits.size();
  const auto parsed = std::from_chars(digits.data(), end, id, 36);
  if (parsed.ec != std::errc() || parsed.ptr != end) return false;
  char buf[kMaxBase36];
  const auto r = std::to_chars(buf, buf + sizeof buf, id, 36);
  return std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)) == digits;
}

// {"phx_ref":"REF","online_at":MS}, written on the stack and appended at once (this is the
// inner loop of encoding a big topic's state). `prefix`: the meta's node's.
void append_meta(std::string &out, const std::string &prefix, uint64_t id, uint64_t online_at) {
  static constexpr std::string_view kHead = R"({"phx_ref":")";
  static constexpr std::string_view kMiddle = R"(","online_at":)";
  assert(prefix.size() <= kMaxPrefix);
  char buf[kHead.size() + kMaxPrefix + kMaxBase36 + kMiddle.size() + kMaxBase10 + 1];
  char *p = std::copy(kHead.begin(), kHead.end(), buf);
  p = std::copy(prefix.begin(), prefix.end(), p);
  p = std::to_chars(p, p + kMaxBase36, id, 36).ptr;
  p = std::copy(kMiddle.begin(), kMiddle.end(), p);
  p = std::to_chars(p, p + kMaxBase10, online_at).ptr;
  *p++ = '}';
  out.append(buf, p);
}

const std::shared_ptr<const std::string> &empty_state() {
  static const auto empty = std::make_shared<const std::string>("{}");
  return empty;
}

}  // namespace

PresenceHub::PresenceHub() : PresenceHub(Options{}) {}

PresenceHub::PresenceHub(Options options) : options_(options) {}

const std::string &PresenceHub::node_id() { return ref_prefix(); }

// ---------------------------------------------------------------------------------------
// Topic presence

std::string PresenceHub::track(const std::string &topic, const std::string &user, uint64_t now_ms) {
  assert(phoenix::json_safe(topic) && phoenix::json_safe(user));
  uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    TopicNode &tn = *topic_table_.try_emplace(topic).first;
    // Taken under the lock, so that ids grow in the order metas are added (see Meta).
    id = g_next_meta_id.fetch_add(1, std::memory_order_relaxed);
    add_meta_locked(tn, user, Meta{id, now_ms, 0, false});
  }
  std::string ref;
  ref.reserve(ref_prefix().size() + kMaxBase36);
  append_ref(ref, id);
  return ref;
}

void PresenceHub::untrack(const std::string &topic, const std::string &user,
                          const std::string &phx_ref) {
  uint64_t id = 0;
  if (!parse_ref(phx_ref, id)) return;
  std::lock_guard lock(mu_);
  const auto tit = topic_table_.find(topic);
  if (tit != topic_table_.end()) remove_meta_locked(*tit, user, 0, id);
}

void PresenceHub::mark_dirty_locked(TopicNode &tn, UserNode &un) {
  if (!un.second.dirty) {
    un.second.dirty = true;
    tn.second.dirty_users.push_back(&un);
  }
  if (!tn.second.dirty) {
    tn.second.dirty = true;
    dirty_topics_.push_back(&tn);
  }
}

bool PresenceHub::add_meta_locked(TopicNode &tn, const std::string &user, const Meta &meta) {
  Topic &t = tn.second;
  UserNode &un = *t.users.try_emplace(user).first;
  UserMetas &u = un.second;
  const auto less = [](const Meta &a, const Meta &b) { return a.before(b); };
  if (meta.node != 0) {
    // Another node's: it may be told again (a state after a diff).
    const auto find = [&](std::vector<Meta> &v) {
      const auto it = std::lower_bound(v.begin(), v.end(), meta, less);
      return it != v.end() && it->node == meta.node && it->id == meta.id ? &*it : nullptr;
    };
    if (find(u.joins) != nullptr) return false;
    Meta *flushed = find(u.flushed);
    if (flushed != nullptr && !flushed->leaving) return false;
    if (flushed != nullptr) {
      // Forgotten since the last flush (forget_remote) and told again: it never left for
      // the clients, who saw it in the last state, so it stays out of the next leaves.
      flushed->leaving = false;
      --u.leaving;
      if (u.live() == 1) ++t.live_users;
      if (t.live_metas++ == 0) topics_.fetch_add(1, std::memory_order_relaxed);
      metas_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  // This node's ids grow, and its metas sort first: a track appends.
  u.joins.insert(std::upper_bound(u.joins.begin(), u.joins.end(), meta, less), meta);
  mark_dirty_locked(tn, un);
  if (u.live() == 1) ++t.live_users;
  if (t.live_metas++ == 0) topics_.fetch_add(1, std::memory_order_relaxed);
  metas_.fetch_add(1, std::memory_order_relaxed);
  if (meta.node != 0) {
    ++t.remote_metas;
    ++nodes_[meta.node].metas;
  }
  return true;
}

bool PresenceHub::remove_meta_locked(TopicNode &tn, const std::string &user, uint32_t node,
                                     uint64_t id) {
  Topic &t = tn.second;
  const auto uit = t.users.find(user);
  if (uit == t.users.end()) return false;
  UserMetas &u = uit->second;
  const Meta key{id, 0, node, false};
  const auto less = [](const Meta &a, const Meta &b) { return a.before(b); };
  const auto j = std::lower_bound(u.joins.begin(), u.joins.end(), key, less);
  if (j != u.joins.end() && j->node == node && j->id == id) {
    // Joined since the last flush: the two cancel out. The user and topic are already
    // dirty (since the join), so the flush erases what is left empty.
    u.joins.erase(j);
    if (node != 0) {
      --t.remote_metas;
      release_node_locked(node);
    }
  } else {
    const auto f = std::lower_bound(u.flushed.begin(), u.flushed.end(), key, less);
    if (f == u.flushed.end() || f->node != node || f->id != id || f->leaving) return false;
    // Still in the flushed state (state() shows it until the next flush), and in that
    // flush's leaves.
    f->leaving = true;
    ++u.leaving;
    mark_dirty_locked(tn, *uit);
  }
  if (u.live() == 0) --t.live_users;
  if (--t.live_metas == 0) topics_.fetch_sub(1, std::memory_order_relaxed);
  metas_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void PresenceHub::release_node_locked(uint32_t node) {
  RemoteNode &n = nodes_[node];
  if (--n.metas != 0) return;
  node_index_.erase(n.id);
  n.id.clear();
  free_nodes_.push_back(node);
}

// `"USER":{"metas":[META,...]}` for the metas in [begin, end) (only those leaving when
// `only_leaving`); META is {"phx_ref":"REF","online_at":MS}.
void PresenceHub::append_metas(std::string &out, const std::string &user, const Meta *begin,
                               const Meta *end, bool only_leaving) const {
  out += '"';
  out += user;
  out += "\":{\"metas\":[";
  bool first = true;
  for (const Meta *m = begin; m != end; ++m) {
    if (only_leaving && !m->leaving) continue;
    if (!first) out += ',';
    first = false;
    append_meta(out, m->node == 0 ? ref_prefix() : nodes_[m->node].id, m->id, m->online_at);
  }
  out += "]}";
}

std::string PresenceHub::encode_state(const Topic &t) const {
  // One allocation: an upper bound of the size (`"U":{"metas":[]},` per user, the longest
  // meta and a comma per meta).
  const std::size_t max_meta =
      sizeof R"({"phx_ref":"","online_at":},)" - 1 + kMaxPrefix + kMaxBase36 + kMaxBase10;
  std::size_t size = 2;
  for (const auto &[user, u] : t.users) {
    if (!u.flushed.empty()) size += user.size() + 16 + u.flushed.size() * max_meta;
  }
  std::string out;
  out.reserve(size);
  out += '{';
  for (const auto &[user, u] : t.users) {
    if (u.flushed.empty()) continue;  // only pending joins
    if (out.size() > 1) out += ',';
    append_metas(out, user, u.flushed.data(), u.flushed.data() + u.flushed.size(), false);
  }
  out += '}';
  return out;
}

std::shared_ptr<const std::string> PresenceHub::state(const std::string &topic) {
  std::lock_guard lock(mu_);
  const auto it = topic_table_.find(topic);
  if (it == topic_table_.end()) return empty_state();
  Topic &t = it->second;
  if (!t.state) {
    std::string encoded = encode_state(t);
    t.state = encoded.size() == 2 ? empty_state()
                                  : std::make_shared<const std::string>(std::move(encoded));
  }
  return t.state;
}

std::size_t PresenceHub::flush(std::vector<Diff> &out) {
  std::lock_guard lock(mu_);
  std::size_t produced = 0;
  std::string joins;
  std::string leaves;
  Diff own;  // Options::replicate: this node's changes of the topic
  for (TopicNode *tn : dirty_topics_) {
    Topic &t = tn->second;
    joins.clear();
    leaves.clear();
    for (UserNode *un : t.dirty_users) {
      UserMetas &u = un->second;
      u.dirty = false;
      if (u.leaving > 0) {
        if (!leaves.empty()) leaves += ',';
        append_metas(leaves, un->first, u.flushed.data(), u.flushed.data() + u.flushed.size(),
                     true);
        std::erase_if(u.flushed, [&](const Meta &m) {
          if (!m.leaving) return false;
          if (m.node != 0) {
            --t.remote_metas;
            release_node_locked(m.node);
          } else if (options_.replicate) {
            own.own_leaves.push_back({un->first, m.id, 0});
          }
          return true;
        });
        u.leaving = 0;
      }
      if (!u.joins.empty()) {
        if (!joins.empty()) joins += ',';
        append_metas(joins, un->first, u.joins.data(), u.joins.data() + u.joins.size(), false);
        if (options_.replicate) {
          for (const Meta &m : u.joins) {
            if (m.node == 0) own.own_joins.push_back({un->first, m.id, m.online_at});
          }
        }
        // A new user (the common case) takes the vector as it is. With this node's metas
        // only, every pending join sorts after every flushed meta; other nodes' may not.
        if (u.flushed.empty()) {
          u.flushed.swap(u.joins);
        } else {
          const auto old_size = static_cast<std::ptrdiff_t>(u.flushed.size());
          const bool sorted = u.flushed.back().before(u.joins.front());
          u.flushed.insert(u.flushed.end(), u.joins.begin(), u.joins.end());
          if (!sorted) {
            std::inplace_merge(u.flushed.begin(), u.flushed.begin() + old_size, u.flushed.end(),
                               [](const Meta &a, const Meta &b) { return a.before(b); });
          }
        }
        u.joins.clear();
      }
      // By iterator: erase(key) would be handed a key living in the node it destroys.
      if (u.flushed.empty()) t.users.erase(t.users.find(un->first));
    }
    t.dirty_users.clear();
    t.dirty = false;
    if (!joins.empty() || !leaves.empty()) {
      t.state.reset();  // rebuilt by the next state()
      std::string payload;
      payload.reserve(joins.size() + leaves.size() + 24);
      payload += "{\"joins\":{";
      payload += joins;
      payload += "},\"leaves\":{";
      payload += leaves;
      payload += "}}";
      out.push_back(
          {tn->first, std::move(payload), std::move(own.own_joins), std::move(own.own_leaves)});
      own.own_joins.clear();
      own.own_leaves.clear();
      ++produced;
    }
    if (t.users.empty()) topic_table_.erase(topic_table_.find(tn->first));
  }
  dirty_topics_.clear();
  diffs_.fetch_add(produced, std::memory_order_relaxed);
  return produced;
}

std::size_t PresenceHub::metas_of(const std::string &topic) const {
  std::lock_guard lock(mu_);
  const auto it = topic_table_.find(topic);
  return it == topic_table_.end() ? 0 : it->second.live_metas;
}

std::size_t PresenceHub::users_of(const std::string &topic) const {
  std::lock_guard lock(mu_);
  const auto it = topic_table_.find(topic);
  return it == topic_table_.end() ? 0 : it->second.live_users;
}

std::size_t PresenceHub::topic_entries() const {
  std::lock_guard lock(mu_);
  return topic_table_.size();
}

std::vector<PresenceHub::Present> PresenceHub::present(const std::string &topic) const {
  std::vector<Present> out;
  {
    std::lock_guard lock(mu_);
    const auto it = topic_table_.find(topic);
    if (it == topic_table_.end()) return out;
    for (const auto &[user, u] : it->second.users) {
      if (!u.flushed.empty()) out.push_back({user, u.flushed.size()});  // as encode_state
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Present &a, const Present &b) { return a.user_id < b.user_id; });
  return out;
}

// ---------------------------------------------------------------------------------------
// User status

PresenceHub::UserEntryNode &PresenceHub::find_or_add_user_locked(const std::string &user) {
  const auto it = users_.find(user);
  if (it != users_.end()) return *it;
  // Make room: forget the users offline longest. Users with sockets are not in idle_, so
  // when all are online the table goes over max_users (bounded by the sockets).
  while (users_.size() >= options_.max_users && !idle_.empty()) {
    const UserEntryNode *oldest = idle_.front();
    idle_.pop_front();
    users_.erase(users_.find(oldest->first));
  }
  return *users_.try_emplace(user).first;
}

// Puts a user with no sockets last in the eviction order (most recently seen).
void PresenceHub::touch_idle_locked(UserEntryNode &node) {
  UserEntry &e = node.second;
  if (e.idle) {
    idle_.splice(idle_.end(), idle_, e.idle_pos);
  } else {
    e.idle_pos = idle_.insert(idle_.end(), &node);
    e.idle = true;
  }
}

// Forgets the users with no sockets not seen for user_ttl_ms. idle_ is in the order users
// were last seen (up to the callers' clocks disagreeing by a few ms), so this looks at the
// front only: O(1) amortised, each entry being evicted once.
void PresenceHub::expire_users_locked(uint64_t now_ms) {
  while (!idle_.empty()) {
    const UserEntryNode *oldest = idle_.front();
    const uint64_t seen = oldest->second.last_seen_ms;
    if (now_ms <= seen || now_ms - seen <= options_.user_ttl_ms) break;
    idle_.pop_front();
    users_.erase(users_.find(oldest->first));
  }
}

PresenceHub::UserPresence PresenceHub::snapshot(const UserEntryNode &node, uint64_t now_ms) {
  const UserEntry &e = node.second;
  UserPresence p;
  p.user_id = node.first;
  p.status = e.status;
  p.current_reel = e.current_reel;
  p.activity = e.activity;
  p.last_seen_ms = e.sockets > 0 ? now_ms : e.last_seen_ms;
  p.sockets = e.sockets;
  return p;
}

void PresenceHub::restore(const UserPresence &p) {
  std::lock_guard lock(mu_);
  UserEntryNode &node = find_or_add_user_locked(p.user_id);
  UserEntry &e = node.second;
  if (e.sockets > 0) return;  // already live again
  e.status = p.status == Status::kAway ? Status::kAway : Status::kOffline;
  e.current_reel = p.current_reel;
  e.activity = p.activity;
  e.last_seen_ms = p.last_seen_ms;
  touch_idle_locked(node);
}

void PresenceHub::connected(const std::string &user, uint64_t now_ms) {
  UserPresence changed;
  bool first = false;
  {
    std::lock_guard lock(mu_);
    expire_users_locked(now_ms);
    UserEntryNode &node = find_or_add_user_locked(user);
    UserEntry &e = node.second;
    e.last_seen_ms = now_ms;
    first = e.sockets++ == 0;
    if (first) {
      if (e.idle) {
        idle_.erase(e.idle_pos);
        e.idle = false;
      }
      // Away is the user's choice (made with no socket open, e.g. over the REST API) and
      // outlives the connection; offline is what having no socket meant.
      if (e.status != Status::kAway) e.status = Status::kOnline;
      users_online_.fetch_add(1, std::memory_order_relaxed);
    }
    if (!observer_ && !cluster_observer_) return;
    changed = snapshot(node, now_ms);
  }
  if (first && observer_) observer_(changed);
  if (cluster_observer_) cluster_observer_(changed, false);
}

void PresenceHub::disconnected(const std::string &user, uint64_t now_ms) {
  UserPresence changed;
  bool last = false;
  {
    std::lock_guard lock(mu_);
    expire_users_locked(now_ms);
    const auto it = users_.find(user);
    if (it == users_.end() || it->second.sockets == 0) return;
    UserEntry &e = it->second;
    e.last_seen_ms = now_ms;
    last = --e.sockets == 0;
    if (last) {
      e.status = Status::kOffline;
      e.current_reel = 0;
      std::string().swap(e.activity);
      touch_idle_locked(*it);
      users_online_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (!observer_ && !cluster_observer_) return;
    changed = snapshot(*it, now_ms);
  }
  if (last && observer_) observer_(changed);
  if (cluster_observer_) cluster_observer_(changed, false);
}

PresenceHub::UserPresence PresenceHub::set_status(const std::string &user, Status s,
                                                  int32_t current_reel, std::string activity,
                                                  uint64_t now_ms) {
  UserPresence result;
  {
    std::lock_guard lock(mu_);
    expire_users_locked(now_ms);
    UserEntryNode &node = find_or_add_user_locked(user);
    UserEntry &e = node.second;
    e.status = s;
    e.current_reel = current_reel;
    e.activity = std::move(activity);
    e.last_seen_ms = now_ms;
    if (e.sockets == 0) touch_idle_locked(node);
    result = snapshot(node, now_ms);
  }
  if (observer_) observer_(result);
  if (cluster_observer_) cluster_observer_(result, true);
  return result;
}

std::optional<PresenceHub::UserPresence> PresenceHub::user(const std::string &user,
                                                           uint64_t now_ms) const {
  std::lock_guard lock(mu_);
  const auto it = users_.find(user);
  if (it == users_.end()) return std::nullopt;
  return snapshot(*it, now_ms);
}

std::size_t PresenceHub::user_entries() const {
  std::lock_guard lock(mu_);
  return users_.size();
}

const char *PresenceHub::status_name(Status s) {
  switch (s) {
    case Status::kOnline:
      return "online";
    case Status::kAway:
      return "away";
    case Status::kOffline:
      return "offline";
  }
  return "offline";
}

bool PresenceHub::parse_status(std::string_view name, Status *out) {
  // PresenceUpdate.Status's words ("online") or proto names ("STATUS_ONLINE").
  const auto *v = enum_value_of(*kronop::v1::PresenceUpdate::Status_descriptor(), name);
  switch (v == nullptr ? 0 : v->number()) {
    case kronop::v1::PresenceUpdate::STATUS_ONLINE:
      *out = Status::kOnline;
      return true;
    case kronop::v1::PresenceUpdate::STATUS_AWAY:
      *out = Status::kAway;
      return true;
    case kronop::v1::PresenceUpdate::STATUS_OFFLINE:
      *out = Status::kOffline;
      return true;
    default:
      return false;
  }
}

}  // namespace kronop::daemon
