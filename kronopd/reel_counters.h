// A reel's interaction totals: what reels.h keeps per reel, and what Redis hands out with a
// message in a cluster (cluster_numbering.h).
#pragma once

#include <cstdint>

namespace kronop::daemon {

struct ReelCounters {
  int64_t likes = 0;
  int64_t comments = 0;
  int64_t shares = 0;
};

// What a record does to its reel's totals in a cluster (reels.h, counter_op).
enum class CounterOp : char { kNone = 0, kLike = 'l', kComment = 'c', kShare = 's', kTotals = 't' };

}  // namespace kronop::daemon
