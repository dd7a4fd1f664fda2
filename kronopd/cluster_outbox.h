// The durable log as the cluster's outbox (DESIGN.md §8): what this host's producers
// published is logged before its ring space is released, and forwarded to Redis to be
// numbered; Redis's acknowledgements move the log's per-topic marks (log_store.h). A node
// killed before Redis took everything it forwarded (kill -9, Redis restarting) finds the
// records above the marks at its next start and sends them again, before any ring record,
// in their order; Redis's idempotency key (producer id + producer seq) counts each once.
//
// kronopd's own records (counter updates) have no producer identity: one sent again after
// a crash may be numbered twice. It carries a reel's totals, so the second says the same.
// Without a durable log (--no-durable-log) there is no outbox: what Redis had not taken
// when kronopd died is lost to the cluster.
#pragma once

#include <vector>

#include "cluster_forwarder.h"
#include "kronop/result.h"
#include "log_store.h"

namespace kronop::daemon {

class ClusterNode;

// Before the log's writer starts: the records to send again, each topic's in seq order.
Result<std::vector<ForwardRecord>> read_outbox(LogStore &log);
// Before the node starts: each record Redis takes moves its topic's mark in the log.
void keep_outbox(LogStore &log, ClusterNode &node);

}  // namespace kronop::daemon
