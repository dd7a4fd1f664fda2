// Fuzz target for the presence messages other nodes publish (kronopd/cluster_presence.h):
// what a peer in the cluster, or anyone who can publish on a topic's channel, sends. Each
// input is parsed; a message that parses is encoded again and must parse to the same; then
// it is taken into a presence hub with small bounds (changes, states and a node's death),
// whose state and diffs must stay well formed (JSON objects of users to metas) and within
// the bounds.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cluster_presence.h"
#include "fuzz_check.h"
#include "presence.h"

namespace {

using kronop::daemon::PresenceHub;
using kronop::daemon::PresenceMessage;

bool same(const std::vector<PresenceHub::NodeMeta> &a,
          const std::vector<PresenceHub::NodeMeta> &b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].user != b[i].user || a[i].id != b[i].id || a[i].online_at != b[i].online_at) {
      return false;
    }
  }
  return true;
}

bool json_object(const std::string &text) {
  static simdjson::dom::parser parser;
  simdjson::dom::object o;
  return !parser.parse(text).get_object().get(o);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string_view input(reinterpret_cast<const char *>(data), size);
  auto parsed = kronop::daemon::parse_presence_message(input);
  if (!parsed.ok()) {
    FUZZ_CHECK(!parsed.error().message.empty());
    return 0;
  }
  const PresenceMessage &m = parsed.value();
  FUZZ_CHECK(!m.node.empty());
  auto again = kronop::daemon::parse_presence_message(kronop::daemon::encode_presence(m));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again.value().kind == m.kind && again.value().node == m.node);
  FUZZ_CHECK(same(again.value().joins, m.joins));
  FUZZ_CHECK(same(again.value().leaves, m.leaves));

  PresenceHub hub(PresenceHub::Options{.max_remote_metas_per_topic = 8, .max_remote_nodes = 2});
  hub.track("reel:1", "local", 1);
  const std::string topic = "reel:1";
  std::vector<PresenceHub::Diff> diffs;
  for (int round = 0; round < 2; ++round) {
    if (m.kind == PresenceMessage::Kind::kState) {
      hub.remote_state(topic, m.node, m.joins, 1);
    } else {
      hub.remote_changes(topic, m.node, m.joins, m.leaves, 1);
    }
    hub.flush(diffs);
    FUZZ_CHECK(hub.metas_of(topic) <= 8 + 1);
    FUZZ_CHECK(hub.remote_nodes() <= 2);
    FUZZ_CHECK(json_object(*hub.state(topic)));
  }
  hub.drop_nodes_except({}, 2);
  hub.flush(diffs);
  for (const PresenceHub::Diff &d : diffs) FUZZ_CHECK(json_object(d.payload));
  FUZZ_CHECK(hub.metas_of(topic) == 1);
  FUZZ_CHECK(hub.remote_nodes() == 0);
  return 0;
}
