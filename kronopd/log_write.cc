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
using log_sql::exec;

bool LogStore::write(std::vector<StoredMessage> &records, bool flush) {
  const auto now = std::chrono::steady_clock::now();
  if (records.empty() && !(flush ? !pending_.empty() : regroup_due(now))) return true;
  auto &s = *stmts_;
  if (!exec(db_, "BEGIN IMMEDIATE")) return false;
  auto fail = [&] {
    exec(db_, "ROLLBACK");
    return false;
  };
  // The transaction's records by topic, in order (a batch keeps each topic's order), without
  // those logged already: a producer seq at or below the producer's last, a seq at or below
  // the topic's last. What changes in the caches is staged, applied once committed.
  struct Group {
    std::vector<StoredMessage *> records;
    std::size_t bytes = 0;
    uint64_t last_seq = 0;  // the topic's, before this transaction
    // The highest seq given, a duplicate's included (numbering resumes after it), and its
    // epoch.
    uint64_t given_seq = 0;
    uint64_t given_epoch = 0;
  };
  std::unordered_map<std::string_view, Group> groups;
  std::vector<std::string_view> order;  // topics in order of first appearance
  std::unordered_map<uint64_t, uint64_t> producer_last;
  uint64_t rows = 0, duplicates = 0, raw_bytes = 0, stored_bytes = 0, blocks = 0, journaled = 0;
  for (StoredMessage &r : records) {
    auto [g, fresh] = groups.try_emplace(r.topic);
    Group &group = g->second;
    if (fresh) {
      order.push_back(r.topic);
      auto known = topic_rows_.find(r.topic);
      group.last_seq = known != topic_rows_.end() ? known->second.last_seq : 0;
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
    group.bytes += r.body.size() + r.event.size() + 32;
    raw_bytes += r.body.size();
  }
  std::vector<std::pair<std::string, TopicRow>> topic_changes;
  std::vector<const StoredMessage *> block;
  int64_t block_id = last_block_id_;
  const uint64_t now_ms = realtime_ns() / 1'000'000;
  // `messages` (one topic's, in seq order) as blocks: up to block_records messages each,
  // ending once one passes block_bytes.
  auto write_blocks = [&](int64_t topic_id, const std::vector<const StoredMessage *> &messages) {
    for (std::size_t i = 0; i < messages.size();) {
      block.clear();
      std::size_t bytes = 0;
      while (i < messages.size() && block.size() < options_.block_records &&
             bytes < options_.block_bytes) {
        const StoredMessage &r = *messages[i++];
        block.push_back(&r);
        bytes += r.body.size() + r.event.size() + 32;
      }
      const auto encoded = codec_->encode(block);
      // The block's time: its newest publish time, not ahead of this clock, not behind the
      // block before.
      const uint64_t ms = std::min(log_sql::time_span(block).max / 1'000'000, now_ms);
      block_id = std::max(block_id + 1, static_cast<int64_t>(ms << kBlockIdTimeShift));
      if (!log_sql::insert_block(s.insert, block_id, topic_id, block, encoded)) return false;
      stored_bytes += encoded.data.size();
      ++blocks;
    }
    return true;
  };
  // The journal row this transaction adds (if a topic goes into it), topics whose pending
  // messages went into blocks, and topics whose records went into the row.
  std::vector<JournalFrame> frames;
  std::string journal_data;
  std::vector<std::string> regrouped;
  std::vector<std::pair<std::string, Group *>> journaled_groups;
  std::vector<const StoredMessage *> messages;
  const bool journal_on = options_.journal_records > 0;
  for (std::string_view topic : order) {
    if (cut_.load(std::memory_order_relaxed)) return fail();
    Group &group = groups[topic];
    if (group.given_seq <= group.last_seq) continue;  // nothing new for this topic
    auto known = topic_rows_.find(topic);
    TopicRow row = known != topic_rows_.end() ? known->second : TopicRow{};
    // Into the journal while the topic's messages waiting there and these stay few; into
    // blocks (with those waiting) once they add up.
    const auto waiting = pending_.find(topic);
    const std::size_t waiting_n = waiting != pending_.end() ? waiting->second.records.size() : 0;
    const std::size_t waiting_bytes = waiting != pending_.end() ? waiting->second.bytes : 0;
    const bool young = waiting == pending_.end() ||
                       now - waiting->second.since < std::chrono::milliseconds(options_.journal_ms);
    const bool to_journal = journal_on && !flush && young && !group.records.empty() &&
                            waiting_n + group.records.size() < options_.journal_records &&
                            waiting_bytes + group.bytes < options_.journal_bytes;
    if (!to_journal && !group.records.empty()) row.blocked_seq = group.records.back()->seq;
    if (known == topic_rows_.end()) {
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
    topic_changes.emplace_back(std::string(topic), row);
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
    if (to_journal) {
      const auto encoded = codec_->encode(
          std::span<const StoredMessage *const>(group.records.data(), group.records.size()));
      frames.push_back(JournalFrame{row.id, group.records.front()->seq, group.records.back()->seq,
                                    static_cast<uint32_t>(journal_data.size()),
                                    static_cast<uint32_t>(encoded.data.size()),
                                    static_cast<int>(encoded.format)});
      journal_data.append(encoded.data);
      journaled += group.records.size();
      journaled_groups.emplace_back(std::string(topic), &group);
      continue;
    }
    messages.clear();
    if (waiting != pending_.end()) {
      for (const StoredMessage &r : waiting->second.records) messages.push_back(&r);
      regrouped.push_back(waiting->first);
    }
    messages.insert(messages.end(), group.records.begin(), group.records.end());
    if (!write_blocks(row.id, messages)) return fail();
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
    const std::string &topic = entry.topic;
    auto p = pending_.find(topic);
    if (p == pending_.end() || p->second.generation != entry.generation) continue;  // stale
    if (groups.contains(topic)) continue;  // this transaction has dealt with it
    if (cut_.load(std::memory_order_relaxed)) return fail();
    auto known = topic_rows_.find(topic);
    if (known == topic_rows_.end()) continue;  // cannot be: its records made its row
    messages.clear();
    for (const StoredMessage &r : p->second.records) messages.push_back(&r);
    if (!write_blocks(known->second.id, messages)) return fail();
    sqlite3_reset(s.topic_blocked);
    sqlite3_bind_int64(s.topic_blocked, 1, known->second.id);
    sqlite3_bind_int64(s.topic_blocked, 2, as_i64(messages.back()->seq));
    if (sqlite3_step(s.topic_blocked) != SQLITE_DONE) return fail();
    TopicRow row = known->second;
    row.blocked_seq = messages.back()->seq;
    topic_changes.emplace_back(topic, row);
    regrouped.push_back(topic);
    due_bytes -= std::min(due_bytes, p->second.bytes);
    --budget;
  }
  // The journal rows left with no frame waiting go.
  std::map<int64_t, uint32_t> released;
  for (const std::string &topic : regrouped) {
    for (int64_t id : pending_.at(topic).rows) ++released[id];
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
  if (!exec(db_, "COMMIT")) return fail();
  for (auto &[topic, row] : topic_changes) topic_rows_[topic] = row;
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
  for (const std::string &topic : regrouped) {
    auto p = pending_.find(topic);
    pending_bytes_ -= std::min(pending_bytes_, p->second.bytes);
    pending_.erase(p);
  }
  if (!frames.empty()) {
    last_journal_id_ = journal_id;
    journal_live_[journal_id] = static_cast<uint32_t>(frames.size());
    for (auto &[topic, group] : journaled_groups) {
      auto [p, fresh] = pending_.try_emplace(topic);
      if (fresh) {
        p->second.since = now;
        p->second.generation = ++pending_generation_;
        pending_order_.push_back(PendingEntry{now, p->second.generation, topic});
      }
      for (StoredMessage *r : group->records) p->second.records.push_back(std::move(*r));
      p->second.rows.push_back(journal_id);
      p->second.bytes += group->bytes;
      pending_bytes_ += group->bytes;
    }
  }
  // Stale entries at the front go.
  while (!pending_order_.empty()) {
    auto p = pending_.find(pending_order_.front().topic);
    if (p != pending_.end() && p->second.generation == pending_order_.front().generation) break;
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
