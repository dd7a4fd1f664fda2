// The outbox's two ends; see cluster_outbox.h.
#include "cluster_outbox.h"

#include "cluster_node.h"
#include "log.h"
#include "log_reader.h"
#include "message.h"

namespace kronop::daemon {

Result<std::vector<ForwardRecord>> read_outbox(LogStore &log) {
  std::vector<ForwardRecord> out;
  const auto topics = log.outbox();
  if (topics.empty()) return out;
  auto reader = LogReader::open(log.path());
  if (!reader.ok()) return reader.error();
  for (const LogStore::OutboxTopic &t : topics) {
    LogQuery q;
    q.topic = t.topic;
    q.after_seq = t.taken_seq;
    q.until_seq = t.last_seq;
    auto read = reader.value()->read(q, [&out](const StoredMessage &m) {
      out.push_back(
          ForwardRecord{m.topic, m.producer_id, m.producer_seq, envelope_bytes(m.view()), m.seq});
      return true;
    });
    if (!read.ok()) return read.error();
  }
  KLOG_NOTICE(
      "event=cluster_outbox records=%zu topics=%zu consequence=\"logged but not taken by Redis "
      "when kronopd last stopped: sent again first, each counted once\"",
      out.size(), topics.size());
  return out;
}

void keep_outbox(LogStore &log, ClusterNode &node) {
  node.on_taken([&log](const ForwardRecord &record, uint64_t, uint64_t) {
    if (record.local_seq != 0) log.submit_taken(record.topic, record.local_seq);
  });
}

}  // namespace kronop::daemon
