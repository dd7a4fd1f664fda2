// Where a key lives in a Redis Cluster: the building blocks for sharded pub/sub (SPUBLISH,
// SSUBSCRIBE), which Redis routes by the channel's hash slot exactly as it routes a key.
//
// - redis_hash_slot: the slot of a key or shard channel, as the Redis Cluster specification
//   defines it: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384. Two channels
//   with the same tag ("{reel:42}.likes", "{reel:42}.presence") share a slot, and so a node.
// - SlotMap / parse_cluster_slots: which master serves each slot, read from the answer to
//   CLUSTER SLOTS. A node asks one seed for it at start and again after a MOVED.
// - Redirect / parse_redirect: the -MOVED and -ASK errors a master answers for a slot it
//   does not serve (MOVED: the map is out of date; ASK: this one command goes elsewhere while
//   the slot migrates).
//
// CLUSTER SLOTS and the redirections are outside input, like every reply (redis_reply.h):
// every type, count and bound is checked, and a reply that is not what Redis 7 sends is an
// error rather than a map with holes in odd places. The fuzz target redis_slots_fuzz feeds
// the parsers arbitrary bytes.
//
// The endpoint Redis 7 gives for a node, in CLUSTER SLOTS and in a redirection, is what
// cluster-preferred-endpoint-type says: its IP (the default), its announced hostname, or
// nothing at all ("unknown-endpoint": nil in CLUSTER SLOTS, "MOVED 1 :6380"), which tells the
// client to connect to the host it asked, at the port given. A node that has not met
// another yet does not know its own IP and gives an empty one too. Both are read as "the
// host asked": parse_cluster_slots puts `asked_host` there, parse_redirect leaves the host
// empty for the caller to do the same. A node that should give its hostname but has none
// announced gives "?": CLUSTER SLOTS also lists the node's IP in its metadata, which is used
// then; a redirection to "?" is refused (nullopt), and the caller asks CLUSTER SLOTS again.
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kronop/result.h"

namespace kronop::daemon {

// The slots of a Redis Cluster: 0 .. kClusterSlots - 1.
inline constexpr uint16_t kClusterSlots = 16384;
// The longest host name or address taken from Redis (a DNS name is at most 253 bytes).
inline constexpr std::size_t kMaxClusterHost = 255;

// The slot of `key` (a key, or a shard channel's name): CRC16-XMODEM modulo 16384, of the
// hash tag when the key has one: the bytes between its first '{' and the first '}' after
// it, when there are any ("{user}.a" and "{user}.b" share a slot; "a{}b" has no tag).
uint16_t redis_hash_slot(std::string_view key);

// Slots first..last (inclusive) and the master serving them.
struct SlotRange {
  uint16_t first = 0;
  uint16_t last = 0;
  std::string host;  // a name or an address (IPv6 without brackets)
  uint16_t port = 0;
  std::string node_id;  // 40 hex digits; empty when Redis did not give it
};

struct SlotMap {
  // Sorted by first, and no two overlap (parse_cluster_slots makes it so; owner() and
  // complete() rely on it).
  std::vector<SlotRange> ranges;

  // The range holding `slot`, or null when no master serves it (the cluster is not whole:
  // a command for it would be answered -CLUSTERDOWN).
  const SlotRange *owner(uint16_t slot) const;
  // Every slot, 0 to 16383, is served, each by one range.
  bool complete() const;
  // The masters, each host:port once, in the order of the slots they serve first.
  std::vector<std::pair<std::string, uint16_t>> masters() const;
};

// The slot map in `reply`, the answer to CLUSTER SLOTS (RESP2: an array of [first, last,
// master, replicas...], each node [endpoint, port, node id, metadata...]); the replicas are
// not read. An endpoint that is nil or empty is `asked_host`, the host CLUSTER SLOTS was
// sent to (see above). A map with holes is a map (complete() says whether it is whole);
// anything else than what Redis sends, overlapping ranges included, is an Error -EPROTO.
Result<SlotMap> parse_cluster_slots(const redisReply &reply, std::string_view asked_host);

struct Redirect {
  enum class Kind { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  uint16_t slot = 0;
  std::string host;  // empty: the host the command was sent to (see above)
  uint16_t port = 0;
};

// An error reply's text (without the '-'), read as a redirection: "MOVED 3999 10.0.0.2:6381"
// or "ASK 3999 10.0.0.2:6381". The port follows the last ':' (an IPv6 address has its own:
// "MOVED 1 ::1:6380"); the host may be empty. nullopt for anything else, a slot above 16383,
// a port of 0 or above 65535, and a host of other bytes than a name's or an address's.
std::optional<Redirect> parse_redirect(std::string_view error_text);

}  // namespace kronop::daemon
