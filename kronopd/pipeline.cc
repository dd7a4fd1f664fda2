// The ingest thread's loop; see pipeline.h for the path and the threads.
#include "pipeline.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "ingest_spin.h"
#include "kronop/clock.h"
#include "log.h"

namespace kronop::daemon {

namespace {
std::unordered_map<uint64_t, uint64_t> logged_producers(LogStore *log) {
  return log != nullptr ? log->producers() : std::unordered_map<uint64_t, uint64_t>{};
}

}  // namespace

PipelineOptions PipelineOptions::of(const Config &config, bool durable_log,
                                    bool after_unclean_stop) {
  PipelineOptions o;
  o.spin_ns = config.ingest_spin_us * 1000;
  // At a drain's end the ingest thread may read on for a tenth of --drain-ms (at most a
  // second): what it reads then goes to no client but into the log, where the clients'
  // rejoins find it. Without a log it stops at once, and what it has not read stays in the
  // rings for the next start to deliver.
  o.stop_drain_ms = durable_log ? std::min<uint64_t>(1000, config.drain_ms / 10) : 0;
  o.after_unclean_stop = after_unclean_stop;
  return o;
}

Pipeline::Pipeline(std::unique_ptr<ipc::Consumer> consumer, PipelineOptions options,
                   std::unique_ptr<Sequencer> sequencer, std::vector<LoopInbox *> inboxes,
                   ReelState &reels, LogStore *log, ClusterNode *cluster)
    : consumer_(std::move(consumer)),
      options_(options),
      sequencer_(std::move(sequencer)),
      cluster_(cluster),
      dispatcher_(std::move(inboxes),
                  cluster != nullptr ? static_cast<Sequencer &>(cluster_streams_) : *sequencer_),
      reels_(reels),
      log_(log),
      ingest_(*consumer_, logged_producers(log)),
      release_(*consumer_, log),
      replay_(*consumer_, *sequencer_, options.after_unclean_stop) {
  if (log_ != nullptr) {
    // Numbering continues where the log left it.
    for (const auto &[topic, state] : log_->topics()) {
      sequencer_->seed(topic, StreamPosition{state.last_seq, state.epoch});
    }
  }
  dispatcher_.set_waker([this] { consumer_->wake(); });
  // Ring space waiting for a commit is handed back as soon as the log commits.
  if (log_ != nullptr) log_->on_commit([this] { consumer_->wake(); });
  if (cluster_ != nullptr) {
    dispatcher_.on_interest([this](const std::string &topic, bool interested) {
      if (interested) {
        cluster_streams_.expect(topic);
      } else {
        cluster_streams_.forget_unnumbered(topic);  // also while the local streams are used
      }
      cluster_->want(topic, interested);
    });
    max_outstanding_ = std::max<uint64_t>(cluster_->options().max_queued / 2, 1);
    cluster_streams_.on_new_stream([this](const std::string &topic) { dispatcher_.reset(topic); });
    if (log_ != nullptr) {
      outbox_ = std::make_unique<ClusterOutbox>(*log_, max_outstanding_ / 2);
      outbox_->start_behind(log_->outbox());
    }
    cluster_->on_events([this] { consumer_->wake(); });
  }
}

Pipeline::~Pipeline() {
  stop();
  if (log_ != nullptr) log_->on_commit({});  // the log may outlive the consumer
}

void Pipeline::start() {
  replay_.start();
  ingest_.housekeeping();
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "kronop-ingest");
    run();
  });
}

void Pipeline::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_release);
  consumer_->wake_for_shutdown();
  thread_.join();
}

void Pipeline::take(uint32_t ring, const ipc::RingRecord &record) {
  EnvelopeView view;
  if (!ingest_.take(ring, record, view)) return;
  if (replay_.active()) replay_.see(ring, record.end_pos, view);
  // Interactions are counted here, where each passes once, and go out with the totals.
  EnvelopeView counted;
  const EnvelopeView &v =
      view.event == "interaction" && reels_.count_interaction(view, &counted) ? counted : view;
  const uint64_t seq = publish(v);
  // In a cluster: as Redis numbered it, unless cut off.
  if (cluster_ == nullptr || local_) reels_.remember(v, seq);
}

uint64_t Pipeline::publish(const EnvelopeView &view) {
  const TopicKey topic(view.topic);
  const StreamPosition at = sequencer_->next(topic);
  if (cluster_ != nullptr) {
    ForwardRecord record{std::string(view.topic), view.producer_id, view.producer_seq,
                         envelope_bytes(view),    at.seq,           counter_op(view)};
    // Past the bound in memory, or behind it already, a topic's records wait in the log.
    if (outbox_ &&
        (outbox_->behind(record.topic) || outstanding() + to_forward_.size() >= max_outstanding_)) {
      outbox_->keep(std::move(record));
    } else {
      to_forward_.push_back(std::move(record));
    }
    if (local_) dispatcher_.stage(view, topic, at.seq);
  } else {
    dispatcher_.stage(view, topic, at.seq);
  }
  if (log_ != nullptr) to_log_.push_back(StoredMessage::of(view, at.seq, at.epoch));
  return at.seq;
}

uint64_t Pipeline::outstanding() const {
  const ClusterCounters &c = cluster_->counters();
  const uint64_t taken = c.numbered.load(std::memory_order_relaxed) +
                         c.duplicates.load(std::memory_order_relaxed) +
                         c.refused.load(std::memory_order_relaxed);
  return forwarded_ > taken ? forwarded_ - taken : 0;
}

void Pipeline::deliver_cluster_message(const ClusterEvent &m) {
  // Outside input (Redis, or whoever can publish on its channels): checked as a ring
  // record is, and it must be of the channel's topic.
  EnvelopeView view;
  if (cluster_validator_.validate(m.envelope, view) != Reject::kNone || view.topic != m.topic) {
    return;
  }
  const TopicKey topic(view.topic);
  dispatcher_.stage(view, topic, m.seq);
  // The cluster's totals (counted by Redis): what the REST API and a cut-off node go on from.
  if (m.counted) reels_.set_counters(view.topic, m.totals);
  reels_.remember(view, m.seq);
}

bool Pipeline::take_cluster_events() {
  if (cluster_ == nullptr) return false;
  auto events = cluster_->take_events();
  if (events.head() == nullptr) return false;
  const auto deliver = [this](const ClusterEvent &m) { deliver_cluster_message(m); };
  for (ClusterEvent *e = events.head(); e != nullptr; e = e->next) {
    switch (e->kind) {
      case ClusterEvent::Kind::kMessage:
        cluster_streams_.on_message(std::move(*e), deliver);
        break;
      case ClusterEvent::Kind::kPosition:
        if (auto range = cluster_streams_.on_position(*e, deliver)) {
          cluster_->catch_up(e->topic, range->after, range->until);
        }
        break;
      case ClusterEvent::Kind::kCaughtUp:
        cluster_streams_.on_caught_up(e->topic, deliver);
        break;
      case ClusterEvent::Kind::kUp:
        KLOG_NOTICE("event=cluster_up consequence=\"%s\"",
                    local_ ? "clients join the cluster's streams again; what was published here "
                             "meanwhile is numbered by Redis"
                           : "what waited is numbered and delivered; subscriptions catch up");
        down_since_ms_ = 0;
        go_local(false);
        break;
      case ClusterEvent::Kind::kDown:
        KLOG_WARN(
            "event=cluster_down reason=%s consequence=\"delivery waits; after %llu ms this "
            "host's records reach its clients under its own numbering, other hosts' wait\"",
            log::q(e->reason).c_str(), static_cast<unsigned long long>(kGoLocalAfterMs));
        cluster_streams_.on_down();
        if (down_since_ms_ == 0) down_since_ms_ = std::max<uint64_t>(monotonic_ms(), 1);
        break;
    }
  }
  return true;
}

void Pipeline::go_local(bool local) {
  if (local == local_) return;
  local_ = local;
  if (local) {
    KLOG_WARN(
        "event=cluster_cut_off consequence=\"clients join this host's own streams again; what "
        "is published here is forwarded once Redis is back\"");
  }
  dispatcher_.use_sequencer(local ? *sequencer_ : static_cast<Sequencer &>(cluster_streams_),
                            local);
  dispatcher_.reset_all();
}

void Pipeline::end_pass() {
  reels_.flush_counter_updates([this](const EnvelopeView &v) { publish(v); });
  // Fan-out first: the log never delays delivery. The loops' sync answers name the log
  // batch that holds this pass's records, submitted next.
  const uint64_t batch = log_ != nullptr ? log_->submitted() + (to_log_.empty() ? 0 : 1) : 0;
  dispatcher_.end_batch(batch);
  if (!to_log_.empty()) {
    log_->submit(std::move(to_log_));
    to_log_.clear();
  }
  // After the log has them queued: Redis's acknowledgements (the outbox's marks) are then
  // written after the records they name.
  forward(std::move(to_forward_));
  to_forward_.clear();
}

void Pipeline::catch_up_outbox() {
  if (!outbox_ || !outbox_->behind() || !cluster_->up()) return;
  const uint64_t now = monotonic_ms(), waiting = outstanding();
  if (now < next_catch_up_ms_ || waiting >= max_outstanding_ / 2) return;
  std::vector<ForwardRecord> out;
  const std::size_t limit = max_outstanding_ - waiting;
  outbox_->catch_up(
      limit, [this](const std::string &topic) { return sequencer_->current(topic).seq; }, out);
  // A full round: more is waiting, the next one at once; otherwise the log is being
  // written, looked at again shortly.
  next_catch_up_ms_ = out.size() >= std::min(limit, ClusterOutbox::kMaxReadPerRound) ? 0 : now + 5;
  forward(std::move(out));
}

void Pipeline::forward(std::vector<ForwardRecord> records) {
  if (records.empty()) return;
  forwarded_ += records.size();
  cluster_->forward(std::move(records));
}

std::size_t Pipeline::drain_pass() {
  const bool events = take_cluster_events();
  if (down_since_ms_ != 0 && !local_ && monotonic_ms() - down_since_ms_ >= kGoLocalAfterMs) {
    go_local(true);
  }
  catch_up_outbox();
  // Redis slow or away, and no log to keep what waits: the rings keep it, not this process.
  paused_ = cluster_ != nullptr && !outbox_ && outstanding() >= max_outstanding_;
  const std::size_t n =
      paused_ ? 0
              : consumer_->drain(
                    options_.batch_per_ring,
                    [this](uint32_t ring, const ipc::RingRecord &record) { take(ring, record); });
  if (n > 0 || events) end_pass();
  replay_.after_pass();
  release_.after_pass(n > 0);
  ingest_.note_corrupt_ranges();
  return n;
}

void Pipeline::run() {
  uint64_t next_housekeeping = monotonic_ms() + 100;
  bool had_records = true;
  IngestSpin spin(options_.spin_ns);
  // The last wait, when it followed a pass with records: how long it lasted, and whether it
  // polled (judged by the pass after it).
  bool judge_wait = false;
  bool polled = false;
  uint64_t waited_ns = 0;
  while (!stopping_.load(std::memory_order_acquire)) {
    const std::size_t n = drain_pass();
    if (judge_wait) {
      spin.observe(n > 0, waited_ns);
      if (polled && n > 0 && waited_ns <= options_.spin_ns) ingest_.count_poll_caught();
      judge_wait = false;
    }
    const uint64_t now = monotonic_ms();
    if (now >= next_housekeeping) {
      ingest_.housekeeping();
      next_housekeeping = now + 100;
    }
    if (n == 0 && paused_) {
      // Waiting for Redis to take what was forwarded; its answers wake nothing here.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else if (n == 0) {
      // Nothing read: the loops' requests (joins waiting for a sync answer) are answered now.
      if (dispatcher_.has_requests())
        dispatcher_.end_batch(log_ != nullptr ? log_->submitted() : 0);
      // Poll only right after records arrived, and while the next one has lately come within
      // the poll (ingest_spin.h). After an idle timeout nothing is coming, so sleep at once.
      // Positions waiting for the log's commit need no poll: the log wakes this thread when it
      // commits (on_commit). The outbox's catch-up does, while topics are behind.
      const uint64_t poll_ns = had_records ? spin.next_ns() : 0;
      ingest_.count_idle_wait(poll_ns > 0);
      const uint64_t started = monotonic_ns();
      consumer_->wait_for_records(poll_ns,
                                  outbox_ && outbox_->behind() ? 1 : options_.idle_timeout_ms);
      judge_wait = had_records;
      polled = poll_ns > 0;
      waited_ns = monotonic_ns() - started;
    }
    had_records = n > 0;
  }
  // Read on what is already in the rings, so a clean stop leaves little for the next start;
  // bounded, since producers may keep publishing while we stop.
  const uint64_t give_up = monotonic_ms() + options_.stop_drain_ms;
  while (monotonic_ms() < give_up && drain_pass() > 0) {
  }
  // With a log, what it has not committed stays in the rings for the next start (the log
  // commits what was submitted when it stops, after this thread; then release_logged()).
}

void Pipeline::release_logged() {
  if (thread_.joinable() || log_ == nullptr) return;
  release_.after_pass(false);
}

}  // namespace kronop::daemon
