#include "cluster_forwarder.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "redis_reply.h"

namespace kronop::daemon {

ClusterForwarder::ClusterForwarder(RedisConnection &link, HistoryLimits limits, TakenFn on_taken,
                                   std::function<uint64_t()> new_epoch,
                                   RedisConnection::StateFn on_state, std::size_t max_queued)
    : link_(link),
      limits_(limits),
      on_taken_(std::move(on_taken)),
      new_epoch_(std::move(new_epoch)),
      on_state_(std::move(on_state)),
      max_queued_(max_queued) {
  link_.on_state([this](bool up, const std::string &reason) { on_link_state(up, reason); });
}

bool ClusterForwarder::forward(ForwardRecord record) {
  if (queued_ >= max_queued_) {
    ++counters_.queue_full;
    return false;
  }
  auto [it, added] = topics_.try_emplace(record.topic);
  Topic &t = it->second;
  if (added) t.new_epoch = new_epoch_();
  if (t.call == 0 && !t.waiting) {
    t.waiting = true;
    waiting_.push_back(it->first);
  }
  t.records.push_back(std::move(record));
  ++queued_;
  return true;
}

void ClusterForwarder::flush() {
  if (!link_.up()) return;
  // Answers that fail at once (the link went down meanwhile) list their topic again in
  // waiting_: take the list first.
  std::vector<std::string> ready;
  ready.swap(waiting_);
  for (const std::string &name : ready) {
    auto it = topics_.find(name);
    if (it == topics_.end()) continue;
    it->second.waiting = false;
    if (it->second.call == 0 && !it->second.records.empty()) send(name, it->second);
  }
}

void ClusterForwarder::send(const std::string &name, Topic &t) {
  const std::size_t n = std::min(t.records.size(), kMaxRecordsPerCall);
  std::vector<NumberingRecord> records;
  records.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const ForwardRecord &r = t.records[i];
    records.push_back({r.producer_id, r.producer_seq, r.envelope, r.counter});
  }
  const std::vector<std::string> argv = numbering_command(name, records, t.new_epoch, limits_);
  const std::vector<std::string_view> views(argv.begin(), argv.end());
  const uint64_t call = next_call_++;
  t.call = call;
  t.in_flight = n;
  ++counters_.calls;
  if (t.sent_before) ++counters_.calls_again;
  t.sent_before = true;
  // May answer at once (the link refused it): `t` is not used after this.
  link_.send(views, [this, name, call](const redisReply *reply, const Error *error) {
    on_answer(name, call, reply, error);
  });
}

void ClusterForwarder::on_answer(const std::string &name, uint64_t call, const redisReply *reply,
                                 const Error *error) {
  auto it = topics_.find(name);
  if (it == topics_.end() || it->second.call != call) return;
  Topic &t = it->second;
  t.call = 0;
  auto again = [&] {
    // The same records, in the same order, at the next flush (or when the link is up).
    t.in_flight = 0;
    if (!t.waiting) {
      t.waiting = true;
      waiting_.push_back(name);
    }
  };
  if (error != nullptr) {
    again();
    return;
  }
  auto batch = read_numbering_reply(*reply, t.in_flight);
  if (!batch.ok()) {
    ++counters_.refusals;
    again();
    if (batch.error().message.rfind("NOSCRIPT", 0) == 0) {
      // The scripts were flushed: load it again, and send again behind it at once.
      link_.send({"SCRIPT", "LOAD", numbering_script()}, {});
      ++counters_.script_loads;
      flush();
    }
    return;
  }
  // Taken. The callbacks may forward more (and so change topics_): finish with `t` first.
  std::vector<ForwardRecord> taken;
  taken.reserve(t.in_flight);
  for (std::size_t i = 0; i < t.in_flight; ++i) {
    taken.push_back(std::move(t.records.front()));
    t.records.pop_front();
  }
  queued_ -= taken.size();
  t.in_flight = 0;
  t.sent_before = false;
  t.new_epoch = new_epoch_();
  if (t.records.empty()) {
    topics_.erase(it);
  } else {
    // What queued up meanwhile goes out now: one call per answer keeps the topic moving.
    send(name, t);
  }
  const NumberedBatch &b = batch.value();
  for (std::size_t i = 0; i < taken.size(); ++i) {
    if (b.seqs[i] == 0) {
      ++counters_.duplicates;
    } else {
      ++counters_.numbered;
    }
    on_taken_(taken[i], b.epoch, b.seqs[i]);
  }
}

void ClusterForwarder::on_link_state(bool up, const std::string &reason) {
  if (up) {
    // A new connection: the script first, then every topic that waits.
    link_.send({"SCRIPT", "LOAD", numbering_script()}, {});
    ++counters_.script_loads;
    flush();
  }
  if (on_state_) on_state_(up, reason);
}

}  // namespace kronop::daemon
