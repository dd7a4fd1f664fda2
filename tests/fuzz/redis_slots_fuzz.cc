// Fuzz target for the Redis Cluster parsers (kronopd/redis_slots.h): the bytes a seed node —
// or a peer that is not one — answers CLUSTER SLOTS with, read by the bounded reply reader
// as a link reads them; each whole reply read as a slot map, and an error reply's text as a
// redirection. The input is also taken whole as a redirection's text and as a key to hash.
// Checks: a map that was taken has sorted, disjoint ranges within 0..16383, ports from 1,
// hosts of at most 255 bytes (the host asked where Redis named none), each range owning its
// own slots, complete() true exactly when the ranges cover 16384 slots, and masters() each
// once; a redirection has a slot within 0..16383, a port from 1 and a host of at most 255
// bytes; a key's slot is below 16384, and a hash tag's slot is the tag's.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "redis_reply.h"
#include "redis_slots.h"

namespace {

using kronop::daemon::kClusterSlots;
using kronop::daemon::kMaxClusterHost;

constexpr std::string_view kAskedHost = "seed.example";

void check_map(const kronop::daemon::SlotMap &map) {
  FUZZ_CHECK(map.ranges.size() <= kClusterSlots);
  uint32_t served = 0;
  for (std::size_t i = 0; i < map.ranges.size(); ++i) {
    const auto &r = map.ranges[i];
    FUZZ_CHECK(r.first <= r.last && r.last < kClusterSlots);
    FUZZ_CHECK(i == 0 || r.first > map.ranges[i - 1].last);
    FUZZ_CHECK(r.port != 0);
    FUZZ_CHECK(!r.host.empty() && r.host.size() <= kMaxClusterHost);
    FUZZ_CHECK(r.node_id.empty() || r.node_id.size() == 40);
    FUZZ_CHECK(map.owner(r.first) == &r && map.owner(r.last) == &r);
    served += uint32_t{r.last} - r.first + 1;
  }
  FUZZ_CHECK(map.complete() == (served == kClusterSlots));
  const auto masters = map.masters();
  const std::set<std::pair<std::string, uint16_t>> distinct(masters.begin(), masters.end());
  FUZZ_CHECK(distinct.size() == masters.size() && masters.size() <= map.ranges.size());
}

void check_redirect(std::string_view text) {
  const auto r = kronop::daemon::parse_redirect(text);
  if (!r) return;
  FUZZ_CHECK(r->slot < kClusterSlots && r->port != 0 && r->host.size() <= kMaxClusterHost);
  FUZZ_CHECK(text.find(r->host) != std::string_view::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string_view input(reinterpret_cast<const char *>(data), size);
  check_redirect(input);
  const uint16_t slot = kronop::daemon::redis_hash_slot(input);
  FUZZ_CHECK(slot < kClusterSlots);
  // A key with a tag has the slot of the tag alone.
  const std::size_t open = input.find('{');
  const std::size_t close = open == std::string_view::npos ? open : input.find('}', open + 1);
  if (close != std::string_view::npos && close > open + 1) {
    // The tag holds no '}', so it is hashed whole.
    FUZZ_CHECK(kronop::daemon::redis_hash_slot(input.substr(open + 1, close - open - 1)) == slot);
  }

  auto reader = kronop::daemon::make_redis_reader();
  FUZZ_CHECK(redisReaderFeed(reader.get(), input.data(), input.size()) == REDIS_OK);
  for (;;) {
    auto next = kronop::daemon::next_redis_reply(*reader);
    if (!next.ok()) break;
    kronop::daemon::RedisReplyPtr reply = std::move(next).value();
    if (!reply) break;
    auto map = kronop::daemon::parse_cluster_slots(*reply, kAskedHost);
    if (map.ok()) {
      check_map(map.value());
    } else {
      FUZZ_CHECK(!map.error().message.empty());
    }
    if (reply->type == REDIS_REPLY_ERROR && reply->str != nullptr) {
      check_redirect({reply->str, reply->len});
    }
  }
  return 0;
}
