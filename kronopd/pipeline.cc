// The ingest thread's loop; see pipeline.h for the path and the threads.
#include "pipeline.h"

#include <pthread.h>

#include <algorithm>

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
                   ReelState &reels, LogStore *log)
    : consumer_(std::move(consumer)),
      options_(options),
      sequencer_(std::move(sequencer)),
      dispatcher_(std::move(inboxes), *sequencer_),
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
}

Pipeline::~Pipeline() { stop(); }

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
  reels_.remember(v, seq);
}

uint64_t Pipeline::publish(const EnvelopeView &view) {
  const TopicKey topic(view.topic);
  const StreamPosition at = sequencer_->next(topic);
  dispatcher_.stage(view, topic, at.seq);
  if (log_ != nullptr) to_log_.push_back(StoredMessage::of(view, at.seq, at.epoch));
  return at.seq;
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
}

std::size_t Pipeline::drain_pass() {
  const std::size_t n = consumer_->drain(
      options_.batch_per_ring,
      [this](uint32_t ring, const ipc::RingRecord &record) { take(ring, record); });
  if (n > 0) end_pass();
  replay_.after_pass();
  release_.after_pass(n > 0);
  ingest_.note_corrupt_ranges();
  return n;
}

void Pipeline::run() {
  uint64_t next_housekeeping = monotonic_ms() + 100;
  bool had_records = true;
  while (!stopping_.load(std::memory_order_acquire)) {
    const std::size_t n = drain_pass();
    const uint64_t now = monotonic_ms();
    if (now >= next_housekeeping) {
      ingest_.housekeeping();
      next_housekeeping = now + 100;
    }
    if (n == 0) {
      // Nothing read: the loops' requests (joins waiting for a sync answer) are answered now.
      if (dispatcher_.has_requests())
        dispatcher_.end_batch(log_ != nullptr ? log_->submitted() : 0);
      ingest_.count_idle_wait();
      // Spin only right after records arrived: that is when the next one is likely to be
      // microseconds away. After an idle timeout nothing is coming, so sleep at once.
      // Positions waiting for the log's commit: look again soon, the producers want the room.
      consumer_->wait_for_records(had_records ? options_.spin_ns : 0,
                                  release_.waiting() ? 1 : options_.idle_timeout_ms);
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
