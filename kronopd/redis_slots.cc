// Hash slots, the CLUSTER SLOTS map and redirections; see redis_slots.h.
//
// The CRC16 is the table-driven CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection) of the Redis Cluster specification, with the table computed by the compiler.
#include "redis_slots.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <set>
#include <string>

#include "redis_reply.h"

namespace kronop::daemon {

namespace {

constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    unsigned crc = byte << 8;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = static_cast<uint16_t>(crc);
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = make_crc16_table();

constexpr uint16_t crc16(std::string_view bytes) {
  unsigned crc = 0;
  for (const char c : bytes) {
    crc = ((crc << 8) ^ kCrc16Table[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]) & 0xffff;
  }
  return static_cast<uint16_t>(crc);
}

// The check value of CRC-16/XMODEM, and the example of the Redis Cluster specification.
static_assert(crc16("123456789") == 0x31c3);

// The bytes of a host name or an address as Redis gives them: letters, digits, '.', '-',
// '_' (names), ':' (IPv6) and '%' (an IPv6 zone). Anything else — a space, a control byte,
// the "?" of a node without a hostname — is not something to connect to.
bool host_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_' || c == ':' || c == '%';
}

bool valid_host(std::string_view host) {
  return host.size() <= kMaxClusterHost && std::all_of(host.begin(), host.end(), host_byte);
}

// A decimal of at most 5 digits, at most `max`.
bool small_decimal(std::string_view text, uint32_t max, uint32_t *out) {
  uint64_t v = 0;
  if (text.size() > 5 || !parse_decimal_u64(text, &v) || v > max) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

Error bad(std::string_view what) {
  std::string message = "CLUSTER SLOTS: ";
  message.append(what);
  return Error{-EPROTO, std::move(message)};
}

const redisReply *element(const redisReply &r, std::size_t i) {
  if (r.type != REDIS_REPLY_ARRAY || r.element == nullptr || i >= r.elements) return nullptr;
  return r.element[i];
}

bool is_array(const redisReply *r) { return r != nullptr && r->type == REDIS_REPLY_ARRAY; }
bool is_bulk(const redisReply *r) {
  return r != nullptr && r->type == REDIS_REPLY_STRING && (r->str != nullptr || r->len == 0);
}
std::string_view bulk(const redisReply *r) {
  return r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}

bool integer_in(const redisReply *r, long long low, long long high, long long *out) {
  if (r == nullptr || r->type != REDIS_REPLY_INTEGER || r->integer < low || r->integer > high) {
    return false;
  }
  *out = r->integer;
  return true;
}

bool node_id(std::string_view id) {
  return id.size() == 40 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// The "ip" of a node's metadata (Redis 7: an array of name, value, name, value...), or "".
std::string_view metadata_ip(const redisReply *metadata) {
  if (!is_array(metadata)) return {};
  for (std::size_t i = 0; i + 1 < metadata->elements; i += 2) {
    const redisReply *name = element(*metadata, i);
    const redisReply *value = element(*metadata, i + 1);
    if (is_bulk(name) && bulk(name) == "ip" && is_bulk(value)) return bulk(value);
  }
  return {};
}

// A node: [endpoint, port, node id, metadata] (Redis 7; 4.0 to 6.2 send no metadata, 3.x no
// node id either). The host it names goes to `range`.
Result<bool> read_node(const redisReply *node, std::string_view asked_host, SlotRange *range) {
  if (!is_array(node) || node->elements < 2) return bad("a node is not [endpoint, port, ...]");
  const redisReply *endpoint = element(*node, 0);
  long long port = 0;
  if (!integer_in(element(*node, 1), 1, 65535, &port)) {
    return bad("a node's port is not an integer from 1 to 65535");
  }
  range->port = static_cast<uint16_t>(port);
  if (node->elements > 2) {
    const redisReply *id = element(*node, 2);
    if (!is_bulk(id) || !node_id(bulk(id))) return bad("a node id is not 40 hex digits");
    range->node_id = bulk(id);
  }
  const redisReply *metadata = element(*node, 3);
  if (node->elements > 3 && (!is_array(metadata) || metadata->elements % 2 != 0)) {
    return bad("a node's metadata is not [name, value, ...]");
  }
  if (endpoint != nullptr && endpoint->type == REDIS_REPLY_NIL) {
    range->host = asked_host;  // cluster-preferred-endpoint-type unknown-endpoint
    return true;
  }
  if (!is_bulk(endpoint)) return bad("a node's endpoint is not a string or nil");
  std::string_view host = bulk(endpoint);
  if (host == "?") {
    // A hostname was asked for and the node announces none: its IP, from the metadata.
    host = metadata_ip(metadata);
    if (host.empty() || !valid_host(host)) {
      return bad("a node has no hostname (\"?\") and no IP in its metadata");
    }
  }
  if (!valid_host(host)) {
    return bad("a node's endpoint is not a host name or an address of at most 255 bytes");
  }
  range->host = host.empty() ? asked_host : host;  // a node that does not know its own IP
  return true;
}

}  // namespace

uint16_t redis_hash_slot(std::string_view key) {
  const std::size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const std::size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return static_cast<uint16_t>(crc16(key) & (kClusterSlots - 1));
}

const SlotRange *SlotMap::owner(uint16_t slot) const {
  auto after = std::upper_bound(ranges.begin(), ranges.end(), slot,
                                [](uint16_t s, const SlotRange &r) { return s < r.first; });
  if (after == ranges.begin()) return nullptr;
  const SlotRange &r = *(after - 1);
  return slot <= r.last ? &r : nullptr;
}

bool SlotMap::complete() const {
  uint32_t next = 0;  // the first slot not yet seen served
  for (const SlotRange &r : ranges) {
    if (r.first != next || r.last < r.first) return false;
    next = uint32_t{r.last} + 1;
  }
  return next == kClusterSlots;
}

std::vector<std::pair<std::string, uint16_t>> SlotMap::masters() const {
  std::vector<std::pair<std::string, uint16_t>> out;
  std::set<std::pair<std::string_view, uint16_t>> seen;  // views into `ranges`
  for (const SlotRange &r : ranges) {
    if (seen.emplace(r.host, r.port).second) out.emplace_back(r.host, r.port);
  }
  return out;
}

Result<SlotMap> parse_cluster_slots(const redisReply &reply, std::string_view asked_host) {
  if (reply.type == REDIS_REPLY_ERROR) return bad(describe_reply(reply));
  if (reply.type != REDIS_REPLY_ARRAY) return bad("the answer is not an array");
  // A range serves one slot at least, so there are never more ranges than slots.
  if (reply.elements > kClusterSlots) return bad("more ranges than slots");
  SlotMap map;
  map.ranges.reserve(reply.elements);
  for (std::size_t i = 0; i < reply.elements; ++i) {
    const redisReply *entry = element(reply, i);
    if (!is_array(entry) || entry->elements < 3) {
      return bad("a range is not [first, last, master, replicas...]");
    }
    long long first = 0, last = 0;
    if (!integer_in(element(*entry, 0), 0, kClusterSlots - 1, &first) ||
        !integer_in(element(*entry, 1), first, kClusterSlots - 1, &last)) {
      return bad("a range's slots are not first <= last <= 16383");
    }
    // The replicas are not read, but are nodes all the same.
    for (std::size_t j = 3; j < entry->elements; ++j) {
      if (!is_array(element(*entry, j))) return bad("a replica is not a node");
    }
    SlotRange range;
    range.first = static_cast<uint16_t>(first);
    range.last = static_cast<uint16_t>(last);
    auto node = read_node(element(*entry, 2), asked_host, &range);
    if (!node.ok()) return node.error();
    map.ranges.push_back(std::move(range));
  }
  std::sort(map.ranges.begin(), map.ranges.end(),
            [](const SlotRange &a, const SlotRange &b) { return a.first < b.first; });
  for (std::size_t i = 1; i < map.ranges.size(); ++i) {
    if (map.ranges[i].first <= map.ranges[i - 1].last) {
      std::string what = "two ranges share slot ";
      what.append(std::to_string(map.ranges[i].first));
      return bad(what);
    }
  }
  return map;
}

std::optional<Redirect> parse_redirect(std::string_view text) {
  Redirect r;
  if (text.substr(0, 6) == "MOVED ") {
    r.kind = Redirect::Kind::kMoved;
    text.remove_prefix(6);
  } else if (text.substr(0, 4) == "ASK ") {
    r.kind = Redirect::Kind::kAsk;
    text.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const std::size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view endpoint = text.substr(space + 1);
  const std::size_t colon = endpoint.rfind(':');
  uint32_t slot = 0, port = 0;
  if (!small_decimal(text.substr(0, space), kClusterSlots - 1, &slot) ||
      colon == std::string_view::npos || !small_decimal(endpoint.substr(colon + 1), 65535, &port) ||
      port == 0 || !valid_host(endpoint.substr(0, colon))) {
    return std::nullopt;
  }
  r.slot = static_cast<uint16_t>(slot);
  r.port = static_cast<uint16_t>(port);
  r.host = endpoint.substr(0, colon);
  return r;
}

}  // namespace kronop::daemon
