// The outbox: marks kept, topics behind caught up; see cluster_outbox.h.
#include "cluster_outbox.h"

#include <iterator>

#include "cluster_node.h"
#include "kronop/clock.h"
#include "log.h"
#include "message.h"
#include "reels.h"

namespace kronop::daemon {

void keep_outbox(LogStore &log, ClusterNode &node) {
  node.on_taken([&log](const ForwardRecord &record, uint64_t, uint64_t) {
    if (record.local_seq != 0) log.submit_taken(record.topic, record.local_seq);
  });
}

void ClusterOutbox::start_behind(const std::vector<LogStore::OutboxTopic> &topics) {
  uint64_t records = 0;
  for (const LogStore::OutboxTopic &t : topics) {
    topics_[t.topic].forwarded = t.taken_seq;
    records += t.last_seq - t.taken_seq;
  }
  if (!topics.empty()) {
    KLOG_NOTICE(
        "event=cluster_outbox records=%llu topics=%zu consequence=\"logged but not taken by "
        "Redis when kronopd last stopped: sent again first, each counted once\"",
        static_cast<unsigned long long>(records), topics.size());
  }
}

void ClusterOutbox::drop_tail(Topic &t) {
  tail_records_ -= t.tail.size();
  t.tail.clear();
  t.tail.shrink_to_fit();
  t.tail_open = false;
}

void ClusterOutbox::keep(ForwardRecord record) {
  ++counters_.kept;
  if (topics_.empty() && monotonic_ms() >= next_spill_log_ms_) {
    KLOG_NOTICE(
        "event=cluster_outbox_spill consequence=\"more records wait for Redis than "
        "--redis-max-waiting: the next wait in the log, read back once Redis takes more\"");
    next_spill_log_ms_ = monotonic_ms() + kSpillLogMs;
    spill_logged_ = true;
  }
  auto [it, fresh] = topics_.try_emplace(record.topic);
  Topic &t = it->second;
  if (fresh) {
    // Every earlier record of the topic was forwarded.
    t.forwarded = record.local_seq - 1;
    t.tail_open = true;
  }
  if (!t.tail_open) return;
  if (tail_records_ >= max_tail_) {
    drop_tail(t);  // no longer complete: the log has it all
    return;
  }
  t.tail.push_back(std::move(record));
  ++tail_records_;
}

void ClusterOutbox::catch_up(std::size_t limit,
                             const std::function<uint64_t(const std::string &)> &last_numbered,
                             std::vector<ForwardRecord> &out) {
  if (topics_.empty()) return;
  round(limit, last_numbered, out);
  if (topics_.empty() && spill_logged_) {
    KLOG_NOTICE("event=cluster_outbox_caught_up read=%llu from_tail=%llu",
                static_cast<unsigned long long>(counters_.read),
                static_cast<unsigned long long>(counters_.from_tail));
    spill_logged_ = false;
  }
}

void ClusterOutbox::round(std::size_t limit,
                          const std::function<uint64_t(const std::string &)> &last_numbered,
                          std::vector<ForwardRecord> &out) {
  if (!reader_) {
    auto opened = LogReader::open(log_.path());
    if (!opened.ok()) {
      ++counters_.read_errors;
      return;
    }
    reader_ = std::move(opened).value();
  }
  limit = std::min(limit, kMaxReadPerRound);
  for (auto it = topics_.begin(); it != topics_.end() && out.size() < limit;) {
    Topic &t = it->second;
    LogQuery q;
    q.topic = it->first;
    q.after_seq = t.forwarded;
    if (!t.tail.empty()) q.until_seq = t.tail.front().local_seq - 1;
    q.limit = limit - out.size();
    auto read = reader_->read(q, [&](const StoredMessage &m) {
      out.push_back(ForwardRecord{m.topic, m.producer_id, m.producer_seq, envelope_bytes(m.view()),
                                  m.seq, counter_op(m.view())});
      t.forwarded = m.seq;
      return true;
    });
    if (!read.ok()) {
      ++counters_.read_errors;
      ++it;
      continue;
    }
    counters_.read += read.value();
    const bool more_in_log = read.value() == q.limit;
    if (!t.tail.empty() && t.tail.front().local_seq == t.forwarded + 1) {
      if (out.size() + t.tail.size() > limit) {
        ++it;  // the next round, with room for it
        continue;
      }
      // The log's records reach the tail: it follows them, and the topic is live again.
      t.forwarded = t.tail.back().local_seq;
      counters_.from_tail += t.tail.size();
      out.insert(out.end(), std::make_move_iterator(t.tail.begin()),
                 std::make_move_iterator(t.tail.end()));
      drop_tail(t);
      it = topics_.erase(it);
      continue;
    }
    if (t.tail.empty() && t.forwarded >= last_numbered(it->first)) {
      it = topics_.erase(it);  // nothing left behind
      continue;
    }
    if (!more_in_log && !t.tail_open) {
      // What the log has not committed yet is read next round; what is numbered from now
      // on is kept in memory too, so that a busy topic catches up.
      t.tail_open = tail_records_ < max_tail_;
    }
    ++it;
  }
}

}  // namespace kronop::daemon
