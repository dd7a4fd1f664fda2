// Presence diffs on the main loop: every --presence-interval-ms, one presence_diff per reel
// whose viewers changed (PresenceHub::flush, presence.h), handed to every I/O loop, each of
// which writes it to its own subscribers of the topic. So a burst of joins and leaves costs
// each viewer one message per interval, not one per change. In a cluster, this node's own
// changes in them also go to the other nodes (ClusterNode::publish_presence).
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "cluster_node.h"
#include "io_loop.h"
#include "presence.h"

namespace kronop::daemon {

class PresenceDiffs {
 public:
  PresenceDiffs(uv_loop_t *loop, PresenceHub &hub, std::vector<std::unique_ptr<IoLoop>> &loops,
                uint64_t interval_ms, ClusterNode *cluster = nullptr);
  PresenceDiffs(const PresenceDiffs &) = delete;
  PresenceDiffs &operator=(const PresenceDiffs &) = delete;

  // The timer (the drain closes it).
  uv_handle_t *handle() { return reinterpret_cast<uv_handle_t *>(&timer_); }

 private:
  static void on_tick(uv_timer_t *t);

  PresenceHub &hub_;
  std::vector<std::unique_ptr<IoLoop>> &loops_;
  ClusterNode *cluster_;
  std::vector<PresenceHub::Diff> diffs_;  // reused
  uv_timer_t timer_{};
};

}  // namespace kronop::daemon
