// The cluster's members: which nodes are alive, for presence (a dead node's users leave
// everywhere) and for operators (`kronopctl cluster` lists them).
//
// Every node heartbeats every --redis-presence-ttl / 5 with one script call on its commands
// link. The script, on Redis's clock (no two hosts' clocks are compared):
//   - writes the node's entry in the hash kronop:nodes: "HEARTBEAT_MS TTL_MS CONNECTIONS
//     ADDRESS";
//   - removes every entry older than its node's TTL less one heartbeat interval (a node
//     missing four heartbeats in a row is dead), so that, with the others heartbeating
//     within that interval too (the same TTL on every node), a dead node is gone everywhere
//     within the TTL of its last heartbeat;
//   - answers whether the node's own entry was there (it was not: the node is new, or it
//     was taken for dead and comes back), Redis's time, and the entries left.
// A node that stops cleanly removes its entry (leave_command).
//
// Threads: the cluster thread (cluster_node.h).
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"

namespace kronop::daemon {

inline constexpr std::string_view kMembersKey = "kronop:nodes";

struct ClusterMember {
  std::string id;  // the node's id (PresenceHub::node_id)
  std::string address;
  uint64_t connections = 0;
  uint64_t heartbeat_ms = 0;  // Unix ms of its last heartbeat, on Redis's clock
  uint64_t ttl_ms = 0;        // its --redis-presence-ttl
};

struct MembersReply {
  bool was_listed = false;  // this node's entry was there before this heartbeat
  uint64_t now_ms = 0;      // Redis's clock
  std::vector<ClusterMember> members;
};

// The heartbeat of node `id` (address without spaces), whose presences expire `ttl_ms` after
// its last heartbeat.
std::vector<std::string> heartbeat_command(std::string_view id, std::string_view address,
                                           uint64_t connections, uint64_t ttl_ms);
// Its answer (outside input: at most max_members entries are read, each checked).
Result<MembersReply> read_heartbeat_reply(const redisReply &reply,
                                          std::size_t max_members = 10'000);
// A node stopping: its entry removed.
std::vector<std::string> leave_command(std::string_view id);

}  // namespace kronop::daemon
