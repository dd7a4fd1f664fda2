// The dispatch from the ingest thread to the I/O loops; see fanout.h.
#include "fanout.h"

namespace kronop::daemon {

Dispatcher::Dispatcher(std::vector<LoopInbox *> inboxes, Sequencer &sequencer)
    : inboxes_(std::move(inboxes)),
      sequencer_(&sequencer),
      staged_(inboxes_.size()),
      staged_syncs_(inboxes_.size()) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::report_interest(uint32_t loop, std::string topic, bool interested) {
  interest_.push(
      std::make_unique<InterestChange>(InterestChange{std::move(topic), loop, interested, 0}));
}

void Dispatcher::request_sync(uint32_t loop, std::string topic, uint64_t id) {
  interest_.push(
      std::make_unique<InterestChange>(InterestChange{std::move(topic), loop, false, id}));
  if (wake_) wake_();
}

void Dispatcher::apply_interest() {
  const auto list = interest_.take_all();
  for (InterestChange *c = list.head(); c != nullptr; c = c->next) {
    if (c->sync_id != 0) {
      pending_syncs_.push_back({c->loop, std::move(c->topic), c->sync_id});
      continue;
    }
    const uint64_t bit = uint64_t{1} << c->loop;
    if (c->interested) {
      auto [it, added] = interest_sets_.try_emplace(c->topic, 0);
      it->second |= bit;
      if (added && on_interest_) on_interest_(c->topic, true);
      continue;
    }
    auto it = interest_sets_.find(c->topic);
    if (it == interest_sets_.end()) continue;
    it->second &= ~bit;
    if (it->second == 0) {
      interest_sets_.erase(it);
      sequencer_->forget_unnumbered(c->topic);
      if (on_interest_) on_interest_(c->topic, false);
    }
  }
}

void Dispatcher::stage(const EnvelopeView &view, const TopicKey &topic, uint64_t seq) {
  // Before each message: a join acknowledged before this message was numbered must see it.
  if (!interest_.empty()) apply_interest();
  bump_owned(counters_.messages);
  auto it = interest_sets_.find(topic);
  // Encoding happens only for an audience (numbering happened whatever the audience).
  if (it == interest_sets_.end()) {
    bump_owned(counters_.without_audience);
    return;
  }
  MessagePtr m = Message::make(view, seq);
  if (!m) {
    bump_owned(counters_.encode_failures);
    return;
  }
  for (uint64_t loops = it->second; loops != 0; loops &= loops - 1) {
    staged_[static_cast<std::size_t>(__builtin_ctzll(loops))].push_back(m);
  }
}

void Dispatcher::end_batch(uint64_t durable) {
  if (!interest_.empty()) apply_interest();
  if (!pending_syncs_.empty()) {
    // Every message of this pass is numbered (and, with a log, in batch `durable`): answer
    // with where each topic stands now.
    // A topic whose stream is not known yet (a cluster's, until its position is read) keeps
    // its requests for a later batch.
    std::size_t kept = 0;
    for (PendingSync &p : pending_syncs_) {
      if (!sequencer_->known(p.topic) && interest_sets_.contains(p.topic)) {
        if (&pending_syncs_[kept] != &p) pending_syncs_[kept] = std::move(p);
        ++kept;
        continue;
      }
      const StreamPosition at = sequencer_->current(p.topic);
      staged_syncs_[p.loop].push_back(SyncReply{p.id, at.seq, at.epoch, durable, local_});
      // Its subscriber already left: the question made a stream that no one will use.
      if (!interest_sets_.contains(p.topic)) sequencer_->forget_unnumbered(p.topic);
    }
    pending_syncs_.resize(kept);
  }
  for (std::size_t i = 0; i < staged_.size(); ++i) {
    if (staged_[i].empty() && staged_syncs_[i].empty()) continue;
    push_batch(i, {});
  }
}

void Dispatcher::reset(std::string_view topic) {
  auto it = interest_sets_.find(topic);
  if (it == interest_sets_.end()) return;
  bump_owned(counters_.resets);
  for (uint64_t loops = it->second; loops != 0; loops &= loops - 1) {
    push_batch(static_cast<std::size_t>(__builtin_ctzll(loops)), {std::string(topic)});
  }
}

void Dispatcher::reset_all() {
  std::vector<std::vector<std::string>> resets(inboxes_.size());
  for (const auto &[topic, set] : interest_sets_) {
    for (uint64_t loops = set; loops != 0; loops &= loops - 1) {
      resets[static_cast<std::size_t>(__builtin_ctzll(loops))].push_back(topic);
    }
  }
  bump_owned(counters_.resets, interest_sets_.size());
  for (std::size_t i = 0; i < resets.size(); ++i) {
    if (!resets[i].empty()) push_batch(i, std::move(resets[i]));
  }
}

void Dispatcher::push_batch(std::size_t i, std::vector<std::string> resets) {
  auto batch = std::make_unique<MessageBatch>();
  batch->messages.swap(staged_[i]);
  batch->resets = std::move(resets);
  batch->syncs.swap(staged_syncs_[i]);
  staged_[i].reserve(batch->messages.size());
  inboxes_[i]->batches.push(std::move(batch));
  // Coalesced by libuv: batches pushed before the loop runs cost one wake-up.
  uv_async_send(inboxes_[i]->wake);
}

}  // namespace kronop::daemon
