// From --redis and the flags beside it to this node's part of the cluster (cluster_node.h):
// the endpoint (the URL, the password file) and the check, once at start, that the Redis
// named is one kronopd can use — reachable, the password right, and version 7 or later
// (sharded pub/sub) — and whether it is a Redis Cluster (then, or with several --redis
// seeds, the node talks to every master: redis_cluster_link.h). A node that cannot join the cluster
// it was told to join stops at once with the reason, rather than serve as an island.
#pragma once

#include <cstdint>
#include <string>

#include "cluster_node.h"
#include "config.h"
#include "kronop/result.h"

namespace kronop::daemon {

// The node's options from `config`. An error names the flag (a usage error: exit status 2).
Result<ClusterNodeOptions> cluster_options(const Config &config);

struct RedisCheck {
  std::string version;   // "7.0.15"
  bool cluster = false;  // a Redis Cluster (cluster_enabled:1)
};

// Connects once (at most `timeout_ms`), authenticates, selects the database and reads the
// server's version and whether it is a Redis Cluster. An error says which step failed and
// why (exit status 3).
Result<RedisCheck> check_redis(const RedisEndpoint &endpoint, uint32_t timeout_ms = 2000);

// check_redis on each seed in turn, up to the first usable one (those that are not are
// logged when there are several). Sets o.redis_cluster when the seed is a Redis Cluster;
// an error when several seeds were given and it is not one.
Result<RedisCheck> check_seeds(ClusterNodeOptions &o, uint32_t timeout_ms = 2000);

}  // namespace kronop::daemon
