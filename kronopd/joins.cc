// Joins and recovery; see joins.h.
//
// Threads: everything here runs on the loop's thread, except
//  - the when_committed callback (the log's writer thread, or the caller's, or stop()'s),
//    which only posts the wait id to the loop (LoopPost; after the loop closed it is dropped);
//  - the history read (a libuv pool thread), which owns copies of all it uses (HistoryRead)
//    and is answered on the loop by its wait id.
#include "joins.h"

#include <algorithm>

#include "cluster_node.h"
#include "connection.h"
#include "kronop/clock.h"
#include "log.h"
#include "log_reader.h"
#include "log_store.h"
#include "pool_work.h"
#include "reels.h"
#include "server.h"

namespace kronop::daemon {

// A history read's own copies of what it uses: the connection may close meanwhile.
struct HistoryRead {
  std::string path;
  std::string topic;
  uint64_t after = 0;
  uint64_t until = 0;
  uint64_t epoch = 0;
  Identity identity;
  Audience audience;
  std::size_t chunk_bytes = 0;
  std::vector<SharedFrame> chunks;
  uint64_t messages = 0;
  bool complete = false;
  // Cluster mode: the range Redis answered with (whether it did, and its stream's epoch).
  bool answered = false;
  uint64_t range_epoch = 0;
  std::vector<HistoryEntry> entries;
  std::string chunk;  // the chunk being filled

  // Adds one message's frame to the chunks: one allocation and one write per chunk.
  void add(const std::string &frame) {
    if (!chunk.empty() && chunk.size() + frame.size() > chunk_bytes) close_chunk();
    if (chunk.empty()) chunk.reserve(std::max(chunk_bytes, frame.size()));
    chunk += frame;
    if (chunk.size() >= chunk_bytes) close_chunk();
  }
  void close_chunk() {
    if (chunk.empty()) return;
    chunks.push_back(std::make_shared<const std::string>(std::move(chunk)));
    chunk.clear();
  }
};

namespace {

// Inside the official clients' 10 s join timeout: a client told "recovered": false starts
// again from the reel's counters; one whose join timed out only tries again, and waits again.
constexpr uint64_t kCommitDeadlineMs = 5'000;

SharedFrame text(std::string_view s) {
  return std::make_shared<const std::string>(ws::text_frame(s));
}

// History goes out in chunks of frames: one allocation and one write each, rather than a
// message object and a frame per message. At most 64 KiB, and a quarter of
// --max-unsent-bytes, so that a chunk always fits next to what pump_history lets queue.
std::size_t history_chunk_bytes(std::size_t max_unsent_bytes) {
  return std::clamp<std::size_t>(max_unsent_bytes / 4, 1, 64 * 1024);
}

// A thread-pool thread: the frames the reader gets for the messages of its topic numbered
// after..until in stream `epoch`, from the log (which has committed them), concatenated into
// chunks. True when all of them are there: a row missing (trimmed by retention) or of
// another epoch means the client cannot recover. Rows whose body does not convert are not
// sent, as live.
bool read_log_history(HistoryRead &h) {
  // One read-only connection per pool thread, kept.
  thread_local std::unique_ptr<LogReader> reader;
  thread_local std::string reader_path;
  if (!reader || reader_path != h.path) {
    auto opened = LogReader::open(h.path);
    if (!opened.ok()) {
      KLOG_WARN("event=recovery_failed topic=%s error=%s", log::q(h.topic).c_str(),
                log::q(opened.error().message).c_str());
      return false;
    }
    reader = std::move(opened).value();
    reader_path = h.path;
  }
  LogQuery q;
  q.topic = h.topic;
  q.after_seq = h.after;
  q.until_seq = h.until;
  uint64_t expect = h.after + 1;
  auto read = reader->read(q, [&](const StoredMessage &row) {
    if (row.seq != expect || row.epoch != h.epoch) return false;
    ++expect;
    MessagePtr m = Message::make(row.view(), row.seq);
    const SharedFrame *f = m ? frame_for(*m, h.audience) : nullptr;
    if (f == nullptr) return true;
    ++h.messages;
    h.add(**f);
    return true;
  });
  h.close_chunk();
  if (!read.ok()) {
    KLOG_WARN("event=recovery_failed topic=%s error=%s", log::q(h.topic).c_str(),
              log::q(read.error().message).c_str());
    return false;
  }
  return expect == h.until + 1;
}

// A thread-pool thread, cluster mode: the frames for the entries Redis answered with. True
// when they are all there, in the stream the client saw: each entry is outside input (Redis,
// or whoever writes there) and is checked as a ring record is; one that fails is not sent,
// as live.
bool build_cluster_history(HistoryRead &h) {
  if (!h.answered || h.range_epoch != h.epoch) return false;
  thread_local EnvelopeValidator validator;
  uint64_t expect = h.after + 1;
  for (const HistoryEntry &e : h.entries) {
    if (e.seq != expect) return false;  // trimmed, or expired
    ++expect;
    EnvelopeView view;
    if (validator.validate(e.envelope, view) != Reject::kNone || view.topic != h.topic) continue;
    MessagePtr m = Message::make(view, e.seq);
    const SharedFrame *f = m ? frame_for(*m, h.audience) : nullptr;
    if (f == nullptr) continue;
    ++h.messages;
    h.add(**f);
  }
  h.close_chunk();
  h.entries.clear();
  return expect == h.until + 1;
}

void log_not_committed(const std::string &topic, uint64_t batch) {
  KLOG_WARN("event=recovery_failed topic=%s error=\"log has not committed batch %llu in 5 s\"",
            log::q(topic).c_str(), static_cast<unsigned long long>(batch));
}

}  // namespace

void JoinTracker::start(uv_loop_t *loop) {
  loop_ = loop;
  uv_timer_init(loop, &resync_);
  resync_.data = this;
  uv_timer_init(loop, &commit_deadline_);
  commit_deadline_.data = this;
  // They only serve the connections; they must not keep the loop alive by themselves.
  uv_unref(reinterpret_cast<uv_handle_t *>(&resync_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&commit_deadline_));
  timers_open_ = true;
}

void JoinTracker::stop() {
  if (!timers_open_) return;
  timers_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&resync_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&commit_deadline_), nullptr);
}

uint64_t JoinTracker::wait_for(Connection *c, PendingJoin *j) {
  j->wait_id = ++next_id_;
  waits_[j->wait_id] = c;
  return j->wait_id;
}

std::pair<Connection *, PendingJoin *> JoinTracker::take(uint64_t id) {
  auto it = waits_.find(id);
  if (it == waits_.end()) return {nullptr, nullptr};  // closed, left, or joined again since
  Connection *c = it->second;
  waits_.erase(it);
  for (auto &p : c->joining) {
    if (p->wait_id == id) return {c, p.get()};
  }
  return {nullptr, nullptr};
}

void JoinTracker::ask_sync(uint64_t id, const std::string &topic) {
  if (sync_) {
    sync_(topic, id);
  } else {
    on_sync(SyncReply{id, 0, 0, 0});  // no dispatcher: an empty stream
  }
}

bool JoinTracker::check_params(Connection *c, const phoenix::ClientMessage &m) {
  uint64_t v = 0;
  const char *error = nullptr;
  if (server_.parser().payload_uint("last_seq", v) == phoenix::Lookup::kWrongType) {
    error = R"({"reason":"last_seq must be a non-negative integer"})";
  } else if (server_.parser().payload_uint("epoch", v) == phoenix::Lookup::kWrongType) {
    error = R"({"reason":"epoch must be a non-negative integer"})";
  }
  if (error == nullptr) return true;
  server_.send(c, text(phoenix::encode_reply(m.join_ref.json, m.ref.json, m.topic_json,
                                             phoenix::ReplyStatus::kError, error)));
  return false;
}

void JoinTracker::begin(Connection *c, const phoenix::ClientMessage &m) {
  // A join of a topic whose earlier join is still waiting replaces it (the router has told
  // the earlier one it is closed); what was held is kept.
  PendingJoin *j = c->joining_on(m.topic);
  if (j != nullptr) {
    waits_.erase(j->wait_id);
    j->answered = false;
    j->history.clear();
    j->next = 0;
  } else {
    c->joining.push_back(std::make_unique<PendingJoin>());
    j = c->joining.back().get();
    j->topic = std::string(m.topic);
  }
  j->join_ref_json = std::string(m.join_ref.json);
  j->ref_json = std::string(m.ref.json);
  j->topic_json = std::string(m.topic_json);
  uint64_t v = 0;
  j->recover = server_.parser().payload_uint("last_seq", v) == phoenix::Lookup::kFound;
  j->last_seq = j->recover ? v : 0;
  j->epoch = server_.parser().payload_uint("epoch", v) == phoenix::Lookup::kFound ? v : 0;
  ask_sync(wait_for(c, j), j->topic);
}

void JoinTracker::on_sync(const SyncReply &r) {
  auto [c, j] = take(r.id);
  if (j == nullptr) return;
  j->synced = r;
  if (!j->recover) {
    finish(c, j, std::nullopt);
    return;
  }
  // last_seq 0 (nothing received yet) is the start of whichever stream there is now.
  const uint64_t n = j->last_seq;
  const bool same_stream = n == 0 || j->epoch == 0 || j->epoch == r.epoch;
  if (same_stream && n > r.last_seq && r.epoch != 0) {
    // The client has seen more of this stream than kronopd has numbered: right after a
    // kronopd crash, the records it had fanned out but not logged are being read again, and
    // get the same seqs (where they could not, the topic has a new epoch). Ask again shortly,
    // for a few seconds, before telling the client it is ahead of the stream.
    const uint64_t now = monotonic_ms();
    if (j->ahead_since_ms == 0) j->ahead_since_ms = now;
    if (now - j->ahead_since_ms < 5000) {
      resyncs_.emplace_back(wait_for(c, j), j->topic);
      if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&resync_)))
        uv_timer_start(&resync_, on_resync, 20, 0);
      return;
    }
  }
  const ServerOptions &o = server_.options();
  // Redis's history for the cluster's streams; the local log for the host's own (a single
  // host, or a cluster node cut off from Redis).
  const bool from_redis = o.cluster != nullptr && !r.local;
  if (!same_stream || n > r.last_seq || r.last_seq - n > o.max_recovery ||
      (n < r.last_seq && !from_redis && o.log == nullptr)) {
    finish(c, j, false);
  } else if (n == r.last_seq) {
    finish(c, j, true);
  } else if (from_redis) {
    read_cluster_history(c, j);
  } else {
    await_commit(c, j, r);
  }
}

void JoinTracker::on_resync(uv_timer_t *timer) {
  auto *self = static_cast<JoinTracker *>(timer->data);
  std::vector<std::pair<uint64_t, std::string>> due;
  due.swap(self->resyncs_);
  for (auto &[id, topic] : due) {
    if (!self->waits_.contains(id)) continue;  // closed or left meanwhile
    self->ask_sync(id, topic);
  }
}

void JoinTracker::await_commit(Connection *c, PendingJoin *j, const SyncReply &r) {
  LogStore *log = server_.options().log;
  if (log->committed() >= r.durable || !post_) {
    // Committed already (the usual case), or no way to be told (a loop without a command
    // queue): read now; the read finds what is there.
    read_history(c, j);
    return;
  }
  const uint64_t id = wait_for(c, j);
  commit_waits_.push_back({monotonic_ms() + kCommitDeadlineMs, id, r.durable});
  arm_commit_deadline();
  // The writer thread (or stop()) calls this; the loop learns of it through its queue. After
  // the loop closed, post_ refuses and nothing runs: the tracker may be gone by then.
  log->when_committed(
      r.durable, [post = post_, self = this, id] { post([self, id] { self->on_committed(id); }); });
}

void JoinTracker::arm_commit_deadline() {
  if (commit_waits_.empty() || !timers_open_) return;
  const uint64_t now = monotonic_ms();
  const uint64_t due = commit_waits_.front().deadline_ms;
  uv_timer_start(&commit_deadline_, on_commit_deadline, due > now ? due - now : 0, 0);
}

void JoinTracker::on_committed(uint64_t id) {
  auto it = waits_.find(id);
  if (it == waits_.end()) return;  // gone, or given up on at the deadline
  Connection *c = it->second;
  PendingJoin *j = nullptr;
  for (auto &p : c->joining) {
    if (p->wait_id == id) j = p.get();
  }
  if (j == nullptr) return;
  if (server_.options().log->committed() < j->synced.durable) {
    // Called by stop(): the batch will never be committed. The deadline ends the wait, as
    // it would have without the log stopping.
    return;
  }
  // The read waits under a new id; `id` must go, or the deadline's entry for it would find
  // this connection after it closed (forget() erases only the current wait ids).
  waits_.erase(it);
  read_history(c, j);
}

void JoinTracker::on_commit_deadline(uv_timer_t *timer) {
  auto *self = static_cast<JoinTracker *>(timer->data);
  const uint64_t now = monotonic_ms();
  while (!self->commit_waits_.empty() && self->commit_waits_.front().deadline_ms <= now) {
    const CommitWait w = self->commit_waits_.front();
    self->commit_waits_.pop_front();
    auto [c, j] = self->take(w.id);
    if (j == nullptr) continue;  // read, closed or left meanwhile
    log_not_committed(j->topic, w.batch);
    self->finish(c, j, false);
  }
  self->arm_commit_deadline();
}

std::shared_ptr<HistoryRead> JoinTracker::history_read(Connection *c, PendingJoin *j) {
  auto h = std::make_shared<HistoryRead>();
  h->topic = j->topic;
  h->after = j->last_seq;
  h->until = j->synced.last_seq;
  h->epoch = j->synced.epoch;
  h->identity = c->identity;
  h->audience = c->audience();
  h->audience.identity = &h->identity;
  h->chunk_bytes = history_chunk_bytes(server_.options().max_unsent_bytes);
  return h;
}

void JoinTracker::finish_history(uint64_t id, HistoryRead &h) {
  auto [conn, pending] = take(id);
  if (pending == nullptr) return;  // gone meanwhile
  if (h.complete) {
    finish(conn, pending, true, std::move(h.chunks), h.messages);
  } else {
    finish(conn, pending, false);
  }
}

void JoinTracker::read_history(Connection *c, PendingJoin *j) {
  auto h = history_read(c, j);
  h->path = server_.options().log->path();
  const uint64_t id = wait_for(c, j);
  run_on_pool(
      loop_, [h] { h->complete = read_log_history(*h); },
      [this, h, id] { finish_history(id, *h); });
}

void JoinTracker::read_cluster_history(Connection *c, PendingJoin *j) {
  if (!post_) {
    finish(c, j, false);  // no way to hear back (a loop without a command queue)
    return;
  }
  auto h = history_read(c, j);
  const uint64_t id = wait_for(c, j);
  // The answer comes on the cluster thread: handed to this loop (which may have closed
  // meanwhile: then post refuses and nothing runs), the frames built on the pool.
  server_.options().cluster->read_history(
      h->topic, h->after, h->until, [h, post = post_, self = this, id](Result<HistoryRange> r) {
        if (r.ok()) {
          h->answered = true;
          h->range_epoch = r.value().epoch;
          h->entries = std::move(r.value().entries);
        } else {
          KLOG_WARN("event=recovery_failed topic=%s error=%s", log::q(h->topic).c_str(),
                    log::q(r.error().message).c_str());
        }
        post([self, h, id] {
          run_on_pool(
              self->loop_, [h] { h->complete = build_cluster_history(*h); },
              [self, h, id] { self->finish_history(id, *h); });
        });
      });
}

void JoinTracker::finish(Connection *c, PendingJoin *j, std::optional<bool> recovered,
                         std::vector<SharedFrame> history, uint64_t messages) {
  const SyncReply &r = j->synced;
  std::string response =
      "{\"epoch\":" + std::to_string(r.epoch) + ",\"last_seq\":" + std::to_string(r.last_seq);
  if (recovered.has_value()) {
    server_.bump(*recovered ? Counter::kRecoveries : Counter::kRecoveriesFailed);
    response += *recovered ? ",\"recovered\":true" : ",\"recovered\":false";
    // What a client that cannot recover starts again from: the reel's counters.
    if (!*recovered && server_.options().reels != nullptr) {
      if (auto snap = server_.options().reels->snapshot(j->topic, 0))
        response += ",\"state\":" + counters_json(snap->counters);
    }
  }
  response += '}';
  server_.send(c, text(phoenix::encode_reply(j->join_ref_json, j->ref_json, j->topic_json,
                                             phoenix::ReplyStatus::kOk, response)));
  join_presence(c, j->topic, j->join_ref_json, j->topic_json);
  j->answered = true;
  j->history = std::move(history);
  j->next = 0;
  server_.bump(Counter::kRecoveredMessages, messages);
  pump_history(c, j);
}

void JoinTracker::pump_history(Connection *c, PendingJoin *j) {
  // History may be far more than --max-unsent-bytes: it goes out as the socket drains,
  // half the bound at a time, the rest when libuv's write completes (resume_history).
  const std::size_t room = std::max<std::size_t>(server_.options().max_unsent_bytes / 2, 1);
  while (j->next < j->history.size()) {
    if (c->closing) return;
    if (c->out_bytes + c->tcp.write_queue_size >= room) {
      if (c->out_bytes > 0) server_.writes().flush(c);  // the kernel takes what it can
      if (c->closing || c->handle_closed) return;
      if (c->tcp.write_queue_size >= room) return;  // a write is in flight: resumed after it
      continue;
    }
    server_.send(c, j->history[j->next++]);
  }
  // Held live messages up to last_seq were numbered before the join was in force: the
  // client has them from history, or did not ask for them. Ephemeral ones (seq 0) go out.
  const uint64_t last = j->synced.last_seq;
  for (const MessagePtr &m : j->held) {
    if (m->seq() == 0 || m->seq() > last) server_.subscribers().deliver_to(c, *m);
  }
  std::erase_if(c->joining, [j](const auto &p) { return p.get() == j; });
}

void JoinTracker::resume_history(Connection *c) {
  std::vector<PendingJoin *> sending;
  for (auto &j : c->joining) {
    if (j->answered) sending.push_back(j.get());
  }
  for (PendingJoin *j : sending) pump_history(c, j);
}

void JoinTracker::drop(Connection *c, std::string_view topic) {
  if (PendingJoin *j = c->joining_on(topic)) {
    waits_.erase(j->wait_id);
    std::erase_if(c->joining, [j](const auto &p) { return p.get() == j; });
  }
}

void JoinTracker::forget(Connection *c) {
  for (const auto &j : c->joining) waits_.erase(j->wait_id);
  c->joining.clear();
}

void JoinTracker::join_presence(Connection *c, const std::string &topic,
                                std::string_view join_ref_json, std::string_view topic_json) {
  PresenceHub *presence = server_.options().presence;
  if (presence == nullptr || !topic.starts_with("reel:")) return;
  const bool tracked = std::any_of(c->presences.begin(), c->presences.end(),
                                   [&](const auto &p) { return p.first == topic; });
  if (c->identity.authenticated() && !tracked) {
    c->presences.emplace_back(
        topic, presence->track(topic, c->identity.user_id, realtime_ns() / 1'000'000));
  }
  // The state as of the last diff; this socket is subscribed already, so the next diff
  // (which carries this join) reaches it. Pushed with the join's join_ref, as Phoenix's
  // `push(socket, "presence_state", ...)` does, and as JSON text whatever the socket's format:
  // phoenix.js's Presence reads JSON.
  auto state = presence->state(topic);
  server_.send(c, text(phoenix::encode_push(join_ref_json, topic_json, "presence_state", *state)));
}

void JoinTracker::leave_presence(Connection *c, const std::string &topic) {
  PresenceHub *presence = server_.options().presence;
  if (presence == nullptr) return;
  for (auto it = c->presences.begin(); it != c->presences.end(); ++it) {
    if (it->first == topic) {
      presence->untrack(topic, c->identity.user_id, it->second);
      c->presences.erase(it);
      return;
    }
  }
}

}  // namespace kronop::daemon
