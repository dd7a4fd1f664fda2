// Gathering the daemon's figures; see stats.h.
#include "stats.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "kronop/clock.h"
#include "time_format.h"

namespace kronop::daemon {
namespace {

void fill_latency(const LatencyHistogram::Summary &lat, kronop::v1::LatencySummary &l) {
  l.set_count(lat.count);
  l.set_p50_ns(lat.p50);
  l.set_p90_ns(lat.p90);
  l.set_p99_ns(lat.p99);
  l.set_p999_ns(lat.p999);
  l.set_max_ns(lat.max);
}

uint64_t get(const std::atomic<uint64_t> &a) { return a.load(std::memory_order_relaxed); }

void fill_ingest(const Config &config, Pipeline &pipeline, kronop::v1::DaemonStats &s) {
  const IngestCounters &c = pipeline.counters();
  ipc::Consumer &consumer = pipeline.consumer();
  s.set_shm_name(config.shm_name);
  s.set_segment_epoch(consumer.epoch());
  s.set_records(get(c.records));
  s.set_bytes(get(c.bytes));
  s.set_rejects(get(c.rejects));
  s.set_corrupt_ranges(get(c.corrupt_ranges));
  s.set_producers_attached(get(c.producers_attached));
  s.set_leases_reclaimed(get(c.leases_reclaimed));
  s.set_wakeups(consumer.wake_calls());
  s.set_polled_waits(get(c.polled_waits));
  s.set_polls_caught(get(c.polls_caught));
  s.set_seq_gaps(get(c.seq_gaps));
  s.set_seq_regressions(get(c.seq_regressions));
  s.set_already_logged(get(c.already_logged));
  if (const uint64_t repairs = get(c.segment_repairs); repairs > 0) {
    s.set_segment_repairs(repairs);
    s.set_segment_problem_age_ms(monotonic_ms() - get(c.segment_repaired_ms));
    std::lock_guard<std::mutex> lock(c.segment_problem_mutex);
    s.set_segment_problem(c.segment_problem);
  }
  fill_latency(c.publish_to_ingest_ns.summarize(), *s.mutable_publish_to_ingest());
  for (std::size_t i = 1; i < c.rejects_by_reason.size(); ++i) {
    if (uint64_t n = get(c.rejects_by_reason[i]); n > 0) {
      (*s.mutable_rejects_by_reason())[reject_name(static_cast<Reject>(i))] = n;
    }
  }
  for (const auto &ring : consumer.snapshot()) {
    if (ring.lease == 0 && ring.used_bytes == 0 && ring.records_published == 0) continue;
    auto *r = s.add_rings();
    r->set_index(ring.index);
    r->set_producer_pid(ipc::lease_pid(ring.lease));
    r->set_producer_id(ring.producer_id);
    r->set_capacity_bytes(consumer.ring_capacity());
    r->set_used_bytes(ring.used_bytes);
    r->set_records_published(ring.records_published);
    r->set_refused_full(ring.refused_full);
    r->set_refused_too_large(ring.refused_too_large);
  }
}

void fill_clients(const ServerCounters &c, const DispatchCounters &d, kronop::v1::DaemonStats &s) {
  auto *m = s.mutable_clients();
  m->set_connections(c[Counter::kConnections]);
  m->set_connections_total(c[Counter::kConnectionsTotal]);
  m->set_frames_in(c[Counter::kFramesIn]);
  m->set_frames_out(c[Counter::kFramesOut]);
  m->set_bytes_out(c[Counter::kBytesOut]);
  m->set_closed_idle(c[Counter::kClosedIdle]);
  m->set_closed_protocol(c[Counter::kClosedProtocol]);
  m->set_http_errors(c[Counter::kHttpErrors]);
  m->set_messages_fanned_out(get(d.messages));
  m->set_encode_failures(get(d.encode_failures));
  m->set_dropped_low(c[Counter::kDroppedLow]);
  m->set_closed_slow(c[Counter::kClosedSlow]);
  m->set_writes(c[Counter::kWrites]);
  m->set_auth_rejected(c[Counter::kAuthRejected]);
  m->set_closed_rate_limited(c[Counter::kRateLimited]);
  m->set_joins_over_limit(c[Counter::kJoinsOverLimit]);
  m->set_interactions(c[Counter::kInteractions]);
  m->set_interactions_invalid(c[Counter::kInteractionsInvalid]);
  m->set_interactions_rate_limited(c[Counter::kInteractionsRateLimited]);
  m->set_recoveries(c[Counter::kRecoveries]);
  m->set_recoveries_failed(c[Counter::kRecoveriesFailed]);
  m->set_recovered_messages(c[Counter::kRecoveredMessages]);
  auto &kinds = *m->mutable_channels_by_kind();
  kinds["reel"] = c[Counter::kChannelsReel];
  kinds["user"] = c[Counter::kChannelsUser];
  kinds["system"] = c[Counter::kChannelsSystem];
}

void fill_log(const LogStore &log, kronop::v1::DaemonStats &s) {
  const LogCounters &lc = log.counters();
  auto *l = s.mutable_log();
  l->set_path(log.path());
  l->set_rows(get(lc.rows));
  l->set_duplicates(get(lc.duplicates));
  l->set_transactions(get(lc.transactions));
  l->set_payload_bytes(get(lc.payload_bytes));
  l->set_stored_bytes(get(lc.compressed_bytes));
  l->set_errors(get(lc.errors));
  l->set_batches_behind(log.submitted() - log.committed());
  l->set_trimmed(get(lc.trimmed));
  l->set_checkpoints(get(lc.checkpoints));
  l->set_times_behind(get(lc.times_behind));
  l->set_blocks(get(lc.blocks));
  l->set_journaled(get(lc.journaled));
  l->set_disk_bytes(get(lc.disk_bytes));
  if (l->rows() > 0) {
    l->set_disk_bytes_per_message(double(l->disk_bytes()) / double(l->rows()));
  }
  if (l->stored_bytes() > 0) {
    l->set_compression_ratio(double(l->payload_bytes()) / double(l->stored_bytes()));
  }
}

void fill_cluster(const ClusterNode &node, const ClusterStreamCounters &streams,
                  kronop::v1::DaemonStats &s) {
  const ClusterCounters &c = node.counters();
  auto *out = s.mutable_cluster();
  out->set_redis(node.options().redis_display());
  if (node.options().redis_cluster) {
    auto *rc = out->mutable_redis_cluster();
    rc->set_masters(get(c.masters));
    rc->set_redirects(get(c.redirects));
    rc->set_map_changes(get(c.map_changes));
  }
  out->set_up(node.up());
  out->set_ups(get(c.ups));
  out->set_downs(get(c.downs));
  out->set_forwarded(get(c.forwarded));
  out->set_numbered(get(c.numbered));
  out->set_duplicates(get(c.duplicates));
  const uint64_t taken = get(c.numbered) + get(c.duplicates);
  out->set_waiting(get(c.forwarded) > taken ? get(c.forwarded) - taken : 0);
  out->set_messages_received(get(c.messages));
  out->set_delivered(get(streams.delivered));
  out->set_subscriptions(get(c.subscriptions));
  out->set_history_reads(get(c.history_reads));
  out->set_gaps(get(streams.gaps));
  out->set_epoch_changes(get(streams.epoch_changes));
  out->set_node_id(PresenceHub::node_id());
  uint64_t as_of = 0;
  auto members = node.members(&as_of);
  std::sort(members.begin(), members.end(),
            [](const ClusterMember &a, const ClusterMember &b) { return a.id < b.id; });
  for (const ClusterMember &m : members) {
    auto *o = out->add_members();
    o->set_id(m.id);
    o->set_address(m.address);
    o->set_connections(m.connections);
    o->set_last_heartbeat(rfc3339_ms(m.heartbeat_ms));
    o->set_heartbeat_age_ms(as_of > m.heartbeat_ms ? as_of - m.heartbeat_ms : 0);
    o->set_self(m.id == PresenceHub::node_id());
  }
  if (const ClusterPresenceCounters *p = node.presence_counters()) {
    out->set_presence_sent(get(p->sent));
    out->set_presence_received(get(p->received));
    out->set_presence_refused(get(p->refused));
    out->set_nodes_dropped(get(p->nodes_dropped));
  }
  if (const ClusterUsersCounters *u = node.users_counters()) {
    out->set_user_writes(get(u->writes));
    out->set_user_reads(get(u->reads));
    out->set_user_failures(get(u->failures));
  }
}

}  // namespace

Stats::Stats(Parts parts) : parts_(parts), started_ms_(monotonic_ms()) {}

void Stats::snapshot(kronop::v1::DaemonStats &s) const {
  s.set_pid(static_cast<uint32_t>(::getpid()));
  s.set_uptime_ms(monotonic_ms() - started_ms_);
  fill_ingest(*parts_.config, *parts_.pipeline, s);
  ServerCounters sum;
  std::array<uint64_t, LatencyHistogram::kBuckets> counts{};
  uint64_t max = 0;
  for (const auto &l : *parts_.loops) {
    sum += l->counters();
    l->delivery_latency().add_to(counts, max);
  }
  fill_clients(sum, parts_.pipeline->dispatcher().counters(), s);
  s.mutable_clients()->set_refused_per_ip(parts_.peer_limit->refused());
  fill_latency(LatencyHistogram::summarize(counts, max),
               *s.mutable_clients()->mutable_publish_to_delivery());
  s.mutable_clients()->set_rest_requests(parts_.rest->requests());
  auto *p = s.mutable_presence();
  p->set_topics(parts_.presence->topics());
  p->set_presences(parts_.presence->metas());
  p->set_users_online(parts_.presence->users_online());
  p->set_diffs(parts_.presence->diffs());
  p->set_reels(parts_.reels->reels());
  if (parts_.log != nullptr) fill_log(*parts_.log, s);
  if (parts_.cluster != nullptr) {
    fill_cluster(*parts_.cluster, parts_.pipeline->cluster_streams(), s);
  }
  struct statvfs fs {};
  if (::statvfs(parts_.config->data_dir.c_str(), &fs) == 0) {
    s.set_data_dir_free_bytes(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
  }
}

std::string Stats::status_line() {
  kronop::v1::DaemonStats s;
  snapshot(s);
  const uint64_t now = monotonic_ms();
  const double secs = last_status_.ms != 0 ? double(now - last_status_.ms) / 1000 : 0;
  const uint64_t fanned = s.clients().messages_fanned_out(), records = s.records();
  char line[200];
  std::snprintf(line, sizeof line,
                "%llu connections, %.0f messages/s fanned out, %.0f records/s in",
                static_cast<unsigned long long>(s.clients().connections()),
                secs > 0 ? double(fanned - last_status_.fanned_out) / secs : 0.0,
                secs > 0 ? double(records - last_status_.records) / secs : 0.0);
  last_status_ = {now, fanned, records};
  return line;
}

}  // namespace kronop::daemon
