// The durable log's write transaction (log_store.h): one batch of records grouped by topic,
// what was logged already turned away, each topic's messages into a block or, when only a
// few, into the transaction's journal row (common/log_journal.h); the journal's messages
// that are due moved into blocks; the writer's caches updated once committed.
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kronop/clock.h"
#include "log_block.h"
#include "log_journal.h"
#include "log_sql.h"
#include "log_statements.h"
#include "log_store.h"

namespace kronop::daemon {

using log_sql::as_i64;

bool LogStore::write(std::vector<StoredMessage> &records, bool flush) {
  const auto now = std::chrono::steady_clock::now();
  if (records.empty() && !(flush ? pending_topics_ > 0 : regroup_due(now))) return true;
  auto &s = *stmts_;
  if (!Statements::run(s.begin)) return false;
  auto fail = [&] {
    Statements::run(s.rollback);
    return false;
  };
  // The transaction's records by topic, in order (a batch keeps each topic's order), without
  // those logged already: a producer seq at or below the producer's last, a seq at or below
  // the topic's last. What changes in the caches is staged, applied once committed.
  struct Group {
    std::vector<StoredMessage *> records;
    std::size_t bytes = 0;
    Topics::value_type *topic = nullptr;  // none: new to the log
    uint64_t last_seq = 0;                // the topic's, before this transaction
    // The highest seq given, a duplicate's included (numbering resumes after it), and its
    // epoch.
    uint64_t given_seq = 0;
    uint64_t given_epoch = 0;
    TopicRow row;  // as committed
    // Journaled: where its messages' encoding is in journal_raw.
    std::size_t journal_raw = 0;
    std::size_t journal_raw_size = 0;
    bool journaled = false;
  };
  std::unordered_map<std::string_view, Group> groups;
  std::vector<std::pair<std::string_view, Group *>> order;  // in order of first appearance
  std::unordered_map<uint64_t, uint64_t> producer_last;
  uint64_t rows = 0, duplicates = 0, raw_bytes = 0, stored_bytes = 0, blocks = 0, journaled = 0;
  for (StoredMessage &r : records) {
    auto [g, fresh] = groups.try_emplace(r.topic);
    Group &group = g->second;
    if (fresh) {
      order.emplace_back(g->first, &group);
      auto known = topics_.find(r.topic);
      if (known != topics_.end()) {
        group.topic = &*known;
        group.last_seq = known->second.row.last_seq;
      }
    }
    if (r.seq > group.given_seq) {
      group.given_seq = r.seq;
      group.given_epoch = r.epoch;
    }
    if (r.producer_id != 0) {
      auto [it, first] = producer_last.try_emplace(r.producer_id, 0);
      if (first) {
        auto known = producer_seqs_.find(r.producer_id);
        it->second = known != producer_seqs_.end() ? known->second : 0;
      }
      if (r.producer_seq <= it->second) {
        ++duplicates;
        continue;
      }
      it->second = r.producer_seq;
    }
    const uint64_t last = group.records.empty() ? group.last_seq : group.records.back()->seq;
    if (r.seq <= last) {
      ++duplicates;
      continue;
    }
    group.records.push_back(&r);
    group.bytes += journal_weight(r);
    raw_bytes += r.body.size();
  }
  int64_t block_id = last_block_id_;
  const uint64_t now_ms = realtime_ns() / 1'000'000;
  // A topic's messages as blocks: those pending in the journal (if any) first, then
  // `messages` (in seq order); up to block_records messages each, ending once one passes
  // block_bytes.
  std::string block;
  auto write_blocks = [&](int64_t topic_id, const Pending *waiting,
                          std::span<StoredMessage *const> messages) {
    block.clear();
    BlockSpan span;
    std::size_t bytes = 0;
    if (waiting != nullptr) {
      block = waiting->raw;
      span = waiting->span;
      bytes = waiting->bytes;
    }
    auto emit = [&] {
      const auto encoded = codec_->compress(block);
      // The block's time: its newest publish time, not ahead of this clock, not behind the
      // block before.
      const uint64_t ms = std::min(span.max_time_ns / 1'000'000, now_ms);
      block_id = std::max(block_id + 1, static_cast<int64_t>(ms << kBlockIdTimeShift));
      if (!log_sql::insert_block(s.insert, block_id, topic_id, span, encoded)) return false;
      stored_bytes += encoded.data.size();
      ++blocks;
      block.clear();
      span = BlockSpan{};
      bytes = 0;
      return true;
    };
    for (StoredMessage *m : messages) {
      if ((span.count >= options_.block_records || bytes >= options_.block_bytes) && !emit()) {
        return false;
      }
      LogBlockCodec::append(*m, block);
      span.add(*m);
      bytes += journal_weight(*m);
    }
    return span.count == 0 || emit();
  };
  // The journal row this transaction adds (if a topic goes into it) and its messages
  // encoded for the topics' pending (journal_raw), and topics whose pending messages went
  // into blocks.
  std::vector<JournalFrame> frames;
  std::string journal_data, journal_raw;
  std::vector<Topics::value_type *> regrouped;
  // Rows of topics this transaction regrouped without records of theirs.
  std::vector<std::pair<Topics::value_type *, uint64_t>> blocked;
  const bool journal_on = options_.journal_records > 0;
  for (auto [topic, gp] : order) {
    if (cut_.load(std::memory_order_relaxed)) return fail();
    take_turn();
    Group &group = *gp;
    if (group.given_seq <= group.last_seq) continue;  // nothing new for this topic
    TopicRow &row = group.row;
    Pending *waiting = nullptr;
    if (group.topic != nullptr) {
      row = group.topic->second.row;
      waiting = group.topic->second.pending.get();
    }
    // Into the journal while the topic's messages waiting there and these stay few; into
    // blocks (with those waiting) once they add up.
    const std::size_t waiting_n = waiting != nullptr ? waiting->span.count : 0;
    const std::size_t waiting_bytes = waiting != nullptr ? waiting->bytes : 0;
    const bool young =
        waiting == nullptr || now - waiting->since < std::chrono::milliseconds(options_.journal_ms);
    group.journaled = journal_on && !flush && young && !group.records.empty() &&
                      waiting_n + group.records.size() < options_.journal_records &&
                      waiting_bytes + group.bytes < options_.journal_bytes;
    if (!group.journaled && !group.records.empty()) row.blocked_seq = group.records.back()->seq;
    if (group.topic == nullptr) {
      sqlite3_reset(s.topic_insert);
      sqlite3_bind_text(s.topic_insert, 1, topic.data(), static_cast<int>(topic.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(s.topic_insert, 2, as_i64(group.given_epoch));
      sqlite3_bind_int64(s.topic_insert, 3, as_i64(group.given_seq));
      sqlite3_bind_int64(s.topic_insert, 4, as_i64(row.blocked_seq));
      // Not RETURNING: its result table costs a page cache set up and torn down per row.
      if (sqlite3_step(s.topic_insert) != SQLITE_DONE) return fail();
      row.id = sqlite3_last_insert_rowid(db_);
    } else {
      sqlite3_reset(s.topic_update);
      sqlite3_bind_int64(s.topic_update, 1, row.id);
      sqlite3_bind_int64(s.topic_update, 2, as_i64(group.given_epoch));
      sqlite3_bind_int64(s.topic_update, 3, as_i64(group.given_seq));
      sqlite3_bind_int64(s.topic_update, 4, as_i64(row.blocked_seq));
      if (sqlite3_step(s.topic_update) != SQLITE_DONE) return fail();
    }
    row.last_seq = group.given_seq;
    row.epoch = group.given_epoch;
    if (group.records.empty()) continue;
    if (options_.cluster_outbox) {
      // The topic's first record in this transaction: a topic new to the outbox waits from
      // here.
      sqlite3_reset(s.outbox_open);
      sqlite3_bind_int64(s.outbox_open, 1, row.id);
      sqlite3_bind_int64(s.outbox_open, 2, as_i64(group.records.front()->seq - 1));
      if (sqlite3_step(s.outbox_open) != SQLITE_DONE) return fail();
    }
    rows += group.records.size();
    if (group.journaled) {
      const auto encoded = codec_->encode(
          std::span<const StoredMessage *const>(group.records.data(), group.records.size()));
      frames.push_back(JournalFrame{row.id, group.records.front()->seq, group.records.back()->seq,
                                    static_cast<uint32_t>(journal_data.size()),
                                    static_cast<uint32_t>(encoded.data.size()),
                                    static_cast<int>(encoded.format)});
      journal_data.append(encoded.data);
      group.journal_raw = journal_raw.size();
      group.journal_raw_size = encoded.raw.size();
      journal_raw.append(encoded.raw);
      journaled += group.records.size();
      continue;
    }
    if (!write_blocks(row.id, waiting, group.records)) return fail();
    if (waiting != nullptr) regrouped.push_back(group.topic);
  }
  // Topics whose journal messages are due for their age (or the journal's size), oldest
  // first; all of them when flushing.
  std::size_t due_bytes = pending_bytes_;
  std::size_t budget = flush ? pending_order_.size() : options_.journal_regroup_topics;
  for (std::size_t k = 0; k < pending_order_.size() && budget > 0; ++k) {
    const PendingEntry &entry = pending_order_[k];
    if (!flush && now - entry.since < std::chrono::milliseconds(options_.journal_ms) &&
        due_bytes <= options_.journal_max_bytes) {
      break;  // the rest are younger
    }
    TopicEntry &topic = entry.topic->second;
    const Pending *p = topic.pending.get();
    if (p == nullptr || p->generation != entry.generation) continue;  // stale
    if (groups.contains(entry.topic->first)) continue;  // this transaction has dealt with it
    if (cut_.load(std::memory_order_relaxed)) return fail();
    take_turn();
    if (!write_blocks(topic.row.id, p, {})) return fail();
    sqlite3_reset(s.topic_blocked);
    sqlite3_bind_int64(s.topic_blocked, 1, topic.row.id);
    sqlite3_bind_int64(s.topic_blocked, 2, as_i64(p->span.last_seq));
    if (sqlite3_step(s.topic_blocked) != SQLITE_DONE) return fail();
    blocked.emplace_back(entry.topic, p->span.last_seq);
    regrouped.push_back(entry.topic);
    due_bytes -= std::min(due_bytes, p->bytes);
    --budget;
  }
  // The journal rows left with no frame waiting go.
  std::map<int64_t, uint32_t> released;
  for (Topics::value_type *topic : regrouped) {
    for (int64_t id : topic->second.pending->rows) ++released[id];
  }
  for (auto [id, n] : released) {
    auto live = journal_live_.find(id);
    if (live == journal_live_.end() || live->second > n) continue;
    sqlite3_reset(s.journal_delete);
    sqlite3_bind_int64(s.journal_delete, 1, id);
    if (sqlite3_step(s.journal_delete) != SQLITE_DONE) return fail();
  }
  const int64_t journal_id = last_journal_id_ + 1;
  if (!frames.empty()) {
    const std::string index = JournalIndex::encode(frames);
    sqlite3_reset(s.journal_insert);
    sqlite3_bind_int64(s.journal_insert, 1, journal_id);
    sqlite3_bind_blob(s.journal_insert, 2, index.data(), static_cast<int>(index.size()),
                      SQLITE_STATIC);
    sqlite3_bind_blob(s.journal_insert, 3, journal_data.data(),
                      static_cast<int>(journal_data.size()), SQLITE_STATIC);
    if (sqlite3_step(s.journal_insert) != SQLITE_DONE) return fail();
  }
  for (auto [id, last] : producer_last) {
    auto known = producer_seqs_.find(id);
    if (known != producer_seqs_.end() && known->second == last) continue;
    sqlite3_reset(s.producer_upsert);
    sqlite3_bind_int64(s.producer_upsert, 1, as_i64(id));
    sqlite3_bind_int64(s.producer_upsert, 2, as_i64(last));
    if (sqlite3_step(s.producer_upsert) != SQLITE_DONE) return fail();
  }
  if (!Statements::run(s.commit)) return fail();

  // Committed: the caches follow.
  for (auto [topic, last] : blocked) topic->second.row.blocked_seq = last;
  for (Topics::value_type *topic : regrouped) {
    pending_bytes_ -= std::min(pending_bytes_, topic->second.pending->bytes);
    topic->second.pending.reset();
    --pending_topics_;
  }
  for (auto [id, last] : producer_last) producer_seqs_[id] = last;
  last_block_id_ = block_id;
  for (auto [id, n] : released) {
    auto live = journal_live_.find(id);
    if (live == journal_live_.end()) continue;
    if (live->second > n) {
      live->second -= n;
    } else {
      journal_live_.erase(live);
    }
  }
  if (!frames.empty()) {
    last_journal_id_ = journal_id;
    journal_live_[journal_id] = static_cast<uint32_t>(frames.size());
  }
  for (auto [topic, gp] : order) {
    Group &group = *gp;
    if (group.given_seq <= group.last_seq) continue;
    if (group.topic == nullptr) {
      group.topic = &*topics_.try_emplace(std::string(topic)).first;
    }
    group.topic->second.row = group.row;
    if (!group.journaled) continue;
    auto &pending = group.topic->second.pending;
    if (!pending) {
      pending = std::make_unique<Pending>();
      pending->since = now;
      pending->generation = ++pending_generation_;
      pending_order_.push_back(PendingEntry{now, pending->generation, group.topic});
      ++pending_topics_;
    }
    pending->raw.append(journal_raw, group.journal_raw, group.journal_raw_size);
    for (const StoredMessage *r : group.records) pending->span.add(*r);
    pending->rows.push_back(journal_id);
    pending->bytes += group.bytes;
    pending_bytes_ += group.bytes;
  }
  // Stale entries at the front go.
  while (!pending_order_.empty()) {
    const PendingEntry &front = pending_order_.front();
    const Pending *p = front.topic->second.pending.get();
    if (p != nullptr && p->generation == front.generation) break;
    pending_order_.pop_front();
  }
  restart_wal();
  counters_.rows.fetch_add(rows, std::memory_order_relaxed);
  counters_.blocks.fetch_add(blocks, std::memory_order_relaxed);
  counters_.journaled.fetch_add(journaled, std::memory_order_relaxed);
  counters_.duplicates.fetch_add(duplicates, std::memory_order_relaxed);
  counters_.transactions.fetch_add(1, std::memory_order_relaxed);
  counters_.payload_bytes.fetch_add(raw_bytes, std::memory_order_relaxed);
  counters_.compressed_bytes.fetch_add(stored_bytes, std::memory_order_relaxed);
  return true;
}

}  // namespace kronop::daemon
