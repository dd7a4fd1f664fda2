// PresenceHub's cluster part (presence.h, "Cluster"): other nodes' metas, taken into the
// same tables as this node's (so that state() and the diffs show them), and this node's
// own, for the others.
#include <algorithm>
#include <set>
#include <utility>

#include "phoenix.h"
#include "presence.h"

namespace kronop::daemon {

namespace {

constexpr std::size_t kMaxNodeId = 16;
constexpr std::size_t kMaxUser = 256;

bool valid_node_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxNodeId && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  });
}

bool valid_user(const std::string &user) {
  return !user.empty() && user.size() <= kMaxUser && phoenix::json_safe(user);
}

}  // namespace

uint32_t PresenceHub::node_index_locked(std::string_view id, uint64_t now_ms) {
  if (!valid_node_id(id) || id == node_id()) return 0;
  const auto it = node_index_.find(std::string(id));
  if (it != node_index_.end()) return it->second;
  uint32_t index = 0;
  if (!free_nodes_.empty()) {
    index = free_nodes_.back();
    free_nodes_.pop_back();
  } else if (nodes_.size() <= options_.max_remote_nodes) {
    index = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  } else {
    return 0;
  }
  nodes_[index] = {std::string(id), now_ms, 0};
  node_index_.emplace(std::string(id), index);
  return index;
}

bool PresenceHub::remote_changes(const std::string &topic, std::string_view node,
                                 const std::vector<NodeMeta> &joins,
                                 const std::vector<NodeMeta> &leaves, uint64_t now_ms) {
  std::lock_guard lock(mu_);
  const uint32_t n = node_index_locked(node, now_ms);
  if (n == 0) return false;
  // Held while this runs: a node whose last meta leaves here keeps its slot until the end.
  ++nodes_[n].metas;
  bool all = true;
  if (const auto it = topic_table_.find(topic); it != topic_table_.end()) {
    for (const NodeMeta &m : leaves) remove_meta_locked(*it, m.user, n, m.id);
  }
  if (!joins.empty()) {
    TopicNode &tn = *topic_table_.try_emplace(topic).first;
    for (const NodeMeta &m : joins) {
      if (tn.second.remote_metas >= options_.max_remote_metas_per_topic || !valid_user(m.user)) {
        all = false;
        continue;
      }
      add_meta_locked(tn, m.user, Meta{m.id, m.online_at, n, false});
    }
    // Nothing taken into a topic made for it: not kept.
    if (tn.second.users.empty() && !tn.second.dirty) topic_table_.erase(topic_table_.find(topic));
  }
  release_node_locked(n);
  return all;
}

bool PresenceHub::remote_state(const std::string &topic, std::string_view node,
                               const std::vector<NodeMeta> &metas, uint64_t now_ms) {
  std::vector<NodeMeta> gone;
  {
    std::lock_guard lock(mu_);
    const uint32_t n = node_index_locked(node, now_ms);
    if (n == 0) return false;
    const auto it = topic_table_.find(topic);
    if (it != topic_table_.end()) {
      std::set<std::pair<std::string_view, uint64_t>> told;
      for (const NodeMeta &m : metas) told.emplace(m.user, m.id);
      for (const auto &[user, u] : it->second.users) {
        for (const std::vector<Meta> *v : {&u.flushed, &u.joins}) {
          for (const Meta &m : *v) {
            if (m.node == n && !m.leaving && !told.contains({user, m.id})) {
              gone.push_back({user, m.id, 0});
            }
          }
        }
      }
    }
    if (nodes_[n].metas == 0 && gone.empty() && metas.empty()) {
      // Made for this call and nothing to hold: freed.
      ++nodes_[n].metas;
      release_node_locked(n);
      return true;
    }
  }
  return remote_changes(topic, node, metas, gone, now_ms);
}

std::vector<std::string> PresenceHub::drop_nodes_except(const std::vector<std::string> &alive,
                                                        uint64_t heard_before_ms) {
  std::vector<std::string> dropped;
  std::lock_guard lock(mu_);
  std::vector<uint32_t> dead;
  for (uint32_t i = 1; i < nodes_.size(); ++i) {
    const RemoteNode &n = nodes_[i];
    if (!n.id.empty() && n.first_heard_ms < heard_before_ms &&
        std::find(alive.begin(), alive.end(), n.id) == alive.end()) {
      dead.push_back(i);
      dropped.push_back(n.id);
    }
  }
  if (dead.empty()) return dropped;
  // Rare (a node died): every topic is looked at.
  for (TopicNode &tn : topic_table_) {
    remove_remote_locked(
        tn, [&](uint32_t node) { return std::find(dead.begin(), dead.end(), node) != dead.end(); });
  }
  return dropped;
}

std::size_t PresenceHub::remove_remote_locked(TopicNode &tn,
                                              const std::function<bool(uint32_t node)> &which) {
  if (tn.second.remote_metas == 0) return 0;
  std::vector<std::pair<std::string, Meta>> gone;
  for (const auto &[user, u] : tn.second.users) {
    for (const std::vector<Meta> *v : {&u.flushed, &u.joins}) {
      for (const Meta &m : *v) {
        if (m.node != 0 && !m.leaving && which(m.node)) gone.emplace_back(user, m);
      }
    }
  }
  std::size_t removed = 0;
  for (const auto &[user, m] : gone) removed += remove_meta_locked(tn, user, m.node, m.id);
  return removed;
}

std::size_t PresenceHub::forget_remote(const std::string *topic) {
  std::lock_guard lock(mu_);
  const auto any = [](uint32_t) { return true; };
  if (topic != nullptr) {
    const auto it = topic_table_.find(*topic);
    return it == topic_table_.end() ? 0 : remove_remote_locked(*it, any);
  }
  std::size_t forgotten = 0;
  for (TopicNode &tn : topic_table_) forgotten += remove_remote_locked(tn, any);
  return forgotten;
}

std::vector<PresenceHub::NodeMeta> PresenceHub::own_metas(const std::string &topic) const {
  std::vector<NodeMeta> out;
  std::lock_guard lock(mu_);
  const auto it = topic_table_.find(topic);
  if (it == topic_table_.end()) return out;
  for (const auto &[user, u] : it->second.users) {
    for (const std::vector<Meta> *v : {&u.flushed, &u.joins}) {
      for (const Meta &m : *v) {
        if (m.node == 0 && !m.leaving) out.push_back({user, m.id, m.online_at});
      }
    }
  }
  return out;
}

std::vector<std::string> PresenceHub::own_topics() const {
  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  for (const auto &[topic, t] : topic_table_) {
    // Live metas beyond other nodes' structs: some are this node's.
    bool own = false;
    for (const auto &[user, u] : t.users) {
      const auto mine = [](const Meta &m) { return m.node == 0 && !m.leaving; };
      own = std::any_of(u.flushed.begin(), u.flushed.end(), mine) ||
            std::any_of(u.joins.begin(), u.joins.end(), mine);
      if (own) break;
    }
    if (own) out.push_back(topic);
  }
  return out;
}

std::size_t PresenceHub::remote_nodes() const {
  std::lock_guard lock(mu_);
  return node_index_.size();
}

}  // namespace kronop::daemon
