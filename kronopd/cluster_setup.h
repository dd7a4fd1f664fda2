// From --redis and the flags beside it to this node's part of the cluster (cluster_node.h):
// the endpoint (the URL, the password file) and the check, once at start, that the Redis
// named is one kronopd can use — reachable, the password right, and version 7 or later
// (sharded pub/sub). A node that cannot join the cluster it was told to join stops at once
// with the reason, rather than serve as an island.
#pragma once

#include <cstdint>
#include <string>

#include "cluster_node.h"
#include "config.h"
#include "kronop/result.h"

namespace kronop::daemon {

// The node's options from `config`. An error names the flag (a usage error: exit status 2).
Result<ClusterNodeOptions> cluster_options(const Config &config);

// Connects once (at most `timeout_ms`), authenticates, selects the database and reads the
// server's version. An error says which step failed and why (exit status 3). Returns the
// version ("7.0.15").
Result<std::string> check_redis(const RedisEndpoint &endpoint, uint32_t timeout_ms = 2000);

}  // namespace kronop::daemon
