// Fan-out: from the ingest thread to the I/O loops that have subscribers, encoding each
// message once per wire format.
//
// The ingest thread owns the topic table: each topic's sequence number and the set of I/O
// loops with subscribers to it (its interest set, a bit per loop). For every valid record
// the Dispatcher gives the topic its next seq and, when some loop is interested, builds one
// immutable Message (the JSON text frame encoded once) and hands the same reference-counted
// object to each interested loop. Nothing on that path takes a lock: each loop has an inbox
// (a lock-free stack of batches, one push per loop per drain pass, then one coalesced
// uv_async_send), and loops report interest changes (a topic's first subscriber on the
// loop, or its last leaving) through another lock-free stack that the ingest thread reads
// before each record.
//
// Loops build the rarer formats (the plain endpoints' JSON, format=protobuf's binary frame)
// on first use, once per message whichever loop asks first (std::call_once).
#pragma once

#include <uv.h>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "envelope_validation.h"

namespace kronop::daemon {

// The bytes of one WebSocket frame (header included), shared by every connection it goes to.
using SharedFrame = std::shared_ptr<const std::string>;

// One message on its way to subscribers. Immutable once handed to the loops, except for the
// lazily built frames, which are built at most once (thread-safe).
//
// JSON clients get the payload object with "seq" first; typed bodies are converted to their
// JSON mapping (proto field names).
//
// Protobuf clients (format=protobuf) get a V2 kind-2 binary broadcast whose payload is a
// kronop.v1.Envelope: topic, event, publish_time_ns, priority, seq and the body. A typed body
// is carried as published. A JSON body on an event with a schema (reel_update -> ReelUpdate,
// interaction -> Interaction, user_activity -> UserActivity, presence_update ->
// PresenceUpdate, system_notice -> SystemNotice) is converted to that message when it maps
// onto it exactly (no unknown fields, right types); otherwise it stays JSON (Envelope.json),
// so nothing a producer sent is lost to either audience.
class Message {
 public:
  // Copies what it needs out of `view` (ring memory) and encodes the JSON payload and the
  // Phoenix text frame. nullptr when a typed body does not convert to JSON.
  static std::shared_ptr<const Message> make(const EnvelopeView &view, uint64_t seq);
  // A message the daemon makes itself and does not number or log (presence_diff): the
  // payload is sent as given (a JSON object the caller built), to every subscriber as JSON
  // text, protobuf sockets included, since phoenix.js's Presence reads JSON.
  static std::shared_ptr<const Message> make_ephemeral(std::string topic, std::string event,
                                                       std::string payload_json);

  const std::string &topic() const { return topic_; }
  const std::string &event() const { return event_; }
  uint64_t seq() const { return seq_; }
  int priority() const { return priority_; }
  uint64_t publish_time_ns() const { return publish_time_ns_; }
  BodyKind body_kind() const { return body_kind_; }
  const std::string &body() const { return body_; }
  const std::string &payload_json() const { return payload_json_; }
  // ReelUpdate.target_users: deliver only to these users' sockets when not empty.
  const std::vector<std::string> &target_users() const { return target_users_; }
  // JSON text to every socket (see make_ephemeral).
  bool json_only() const { return json_only_; }

  // [null,null,topic,event,payload] in a text frame.
  const SharedFrame &phoenix_text() const { return phoenix_text_; }
  // {"topic":..,"event":..,"payload":..} in a text frame (built on first use).
  const SharedFrame &plain_text() const;
  // The kind-2 binary broadcast of the Envelope (built on first use).
  const SharedFrame &phoenix_binary() const;

 private:
  Message() = default;

  std::string topic_;
  std::string event_;
  uint64_t seq_ = 0;
  int priority_ = 0;
  uint64_t publish_time_ns_ = 0;
  BodyKind body_kind_ = BodyKind::kNone;
  std::string body_;
  std::string payload_json_;
  std::vector<std::string> target_users_;
  bool json_only_ = false;
  SharedFrame phoenix_text_;
  mutable std::once_flag plain_once_;
  mutable std::once_flag binary_once_;
  mutable SharedFrame plain_text_;
  mutable SharedFrame phoenix_binary_;
};
using MessagePtr = std::shared_ptr<const Message>;

// The Envelope that protobuf clients receive for a message (see Message); exposed for the
// tests. Returns the serialized bytes.
std::string client_envelope(const Message &m);

// A lock-free stack of nodes with one consumer that takes them all at once (in the order
// they were pushed). Producers push with a CAS; the consumer swaps the head out. No ABA: a
// node is never popped singly.
template <typename Node>
class HandoffStack {
 public:
  HandoffStack() = default;
  ~HandoffStack() { delete_list(take_all()); }
  HandoffStack(const HandoffStack &) = delete;
  HandoffStack &operator=(const HandoffStack &) = delete;

  // Returns true when the stack was empty (the consumer may need a wake-up).
  bool push(Node *n) {
    Node *head = head_.load(std::memory_order_relaxed);
    do {
      n->next = head;
    } while (!head_.compare_exchange_weak(head, n, std::memory_order_release,
                                          std::memory_order_relaxed));
    return head == nullptr;
  }
  bool empty() const { return head_.load(std::memory_order_relaxed) == nullptr; }
  // Everything pushed so far, oldest first, as a list linked through `next`.
  Node *take_all() {
    Node *n = head_.exchange(nullptr, std::memory_order_acquire);
    Node *reversed = nullptr;
    while (n != nullptr) {
      Node *next = n->next;
      n->next = reversed;
      reversed = n;
      n = next;
    }
    return reversed;
  }
  static void delete_list(Node *n) {
    while (n != nullptr) {
      Node *next = n->next;
      delete n;
      n = next;
    }
  }

 private:
  std::atomic<Node *> head_{nullptr};
};

// The answer to a loop's sync request (Dispatcher::request_sync): where a topic's stream
// stood when the loop's interest in it was in force. Every message of the topic numbered
// after `last_seq` reaches the loop after this answer; those up to it reached it before (if
// it was interested then) and are readable from the durable log once its committed batch
// reaches `durable`.
struct SyncReply {
  uint64_t id = 0;
  uint64_t last_seq = 0;
  uint64_t epoch = 0;
  uint64_t durable = 0;
};

// Messages for one loop from one drain pass, then the sync answers of that pass.
struct MessageBatch {
  using Stack = HandoffStack<MessageBatch>;
  std::vector<MessagePtr> messages;
  std::vector<SyncReply> syncs;
  MessageBatch *next = nullptr;
};

// A loop's report that it gained its first subscriber of a topic, or lost its last; or,
// with a sync_id, its request for a SyncReply on the topic.
struct InterestChange {
  std::string topic;
  uint32_t loop = 0;
  bool interested = false;
  uint64_t sync_id = 0;
  InterestChange *next = nullptr;
};

// Where a loop receives its batches: the stack, and the async handle that wakes the loop.
struct LoopInbox {
  HandoffStack<MessageBatch> batches;
  uv_async_t *wake = nullptr;  // set by the loop before the ingest thread starts
};

struct DispatchCounters {
  std::atomic<uint64_t> messages{0};          // numbered
  std::atomic<uint64_t> without_audience{0};  // no loop interested: numbered, not encoded
  std::atomic<uint64_t> encode_failures{0};
  std::atomic<uint64_t> topics{0};  // in the topic table
};

class Dispatcher {
 public:
  static constexpr std::size_t kMaxLoops = 64;
  explicit Dispatcher(std::vector<LoopInbox *> inboxes);
  ~Dispatcher();
  Dispatcher(const Dispatcher &) = delete;
  Dispatcher &operator=(const Dispatcher &) = delete;

  // Ingest thread: numbers the record's topic and stages the message for interested loops.
  // Returns the seq it gave; *epoch (when given) is the topic's epoch.
  uint64_t on_record(const EnvelopeView &view, uint64_t *epoch = nullptr);
  // Before the ingest thread starts: a topic's numbering continues after `last_seq` in
  // stream `epoch` (from the durable log).
  void seed(const std::string &topic, uint64_t last_seq, uint64_t epoch);
  // Ingest thread: the topic's stream gets a new epoch (once per run): its history from
  // here on is not the one its clients may have seen (see IngestOptions::on_replayed).
  void renew_epoch(std::string_view topic);
  // Ingest thread: applies the loops' reports, answers their sync requests and hands each
  // loop its staged batch (after a drain pass, or when a request is waiting).
  void end_batch();
  // Whether loops have reports or requests waiting (the ingest thread checks when idle).
  bool has_requests() const { return !interest_.empty(); }

  // Loop threads: report a topic's first subscriber on `loop` (true) or its last (false).
  void report_interest(uint32_t loop, std::string topic, bool interested);
  // Loop threads: ask for a SyncReply `id` on `topic` (after reporting interest in it); it
  // comes in the loop's inbox, after every message numbered before it.
  void request_sync(uint32_t loop, std::string topic, uint64_t id);

  // Before the ingest thread starts: how to wake it for a sync request, and the durable
  // log's position (the id of the last batch submitted) for SyncReply::durable.
  void set_waker(std::function<void()> wake) { wake_ = std::move(wake); }
  void set_durable_position(std::function<uint64_t()> position) {
    durable_position_ = std::move(position);
  }

  // Ingest thread (or after it stopped): the last seq given on a topic, 0 if none.
  uint64_t last_seq(std::string_view topic) const;
  const DispatchCounters &counters() const { return counters_; }

 private:
  struct TopicState {
    uint64_t seq = 0;
    uint64_t epoch = 0;  // the stream's identity; a new one when its history is lost
    uint64_t loops = 0;  // bit i: loop i has subscribers
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  void apply_interest();
  using TopicMap = std::unordered_map<std::string, TopicState, Hash, std::equal_to<>>;
  // A topic seen for the first time: seq 0 and a new epoch.
  TopicMap::iterator add_topic(std::string_view name);
  static void bump(std::atomic<uint64_t> &c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::vector<LoopInbox *> inboxes_;
  TopicMap topics_;
  std::vector<std::vector<MessagePtr>> staged_;  // per loop
  HandoffStack<InterestChange> interest_;
  struct PendingSync {
    uint32_t loop;
    std::string topic;
    uint64_t id;
  };
  std::vector<PendingSync> pending_syncs_;
  std::unordered_set<std::string, Hash, std::equal_to<>>
      renewed_;  // renew_epoch's topics  // taken by apply_interest, answered by end_batch
  std::vector<std::vector<SyncReply>> staged_syncs_;  // per loop
  std::function<void()> wake_;
  std::function<uint64_t()> durable_position_;
  DispatchCounters counters_;
};

}  // namespace kronop::daemon
