// The client port of one I/O loop: what ties its parts together (Redis' server.c).
//
// Each I/O loop has one ClientServer (the Acceptor hands accepted sockets to the loops in
// turn). It owns the loop's connections and composes, one file per concern:
//   connection.h     a connection and its read path (HTTP, upgrade, frames, Phoenix dispatch)
//   routes.h         the one route table for every HTTP path, WebSocket upgrades included
//   joins.h          joins and recovery from the durable log
//   subscribers.h    the subscriber table and fan-out
//   write_queue.h    corking, backpressure, droppable frames, flush
//   client_pushes.h  likes, comments, shares and status changes pushed by clients
// and keeps here what is about all connections: adopting sockets, the drain, the idle and
// linger sweep, limits (reconfigure), counters and the operator's view.
//
// Threads: everything here runs on the loop's thread, except counters() (atomics, any
// thread). The log's writer thread reaches a loop only through LoopPost (joins.h); libuv's
// pool threads run history reads that own copies of what they use (pool_work.h).
#pragma once

#include <uv.h>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "acceptor.h"
#include "channels.h"
#include "client_pushes.h"
#include "connection.h"
#include "fanout.h"
#include "http.h"
#include "joins.h"
#include "kronop/result.h"
#include "latency_histogram.h"
#include "log.h"
#include "phoenix.h"
#include "presence.h"
#include "publisher.h"
#include "rate_limit.h"
#include "rest_api.h"
#include "subscribers.h"
#include "write_queue.h"

namespace kronop::daemon {

class LogStore;
class ClusterNode;
class ReelState;
class SystemApi;

struct ServerOptions {
  std::size_t max_message = 64 * 1024;
  uint64_t idle_timeout_ms = 60'000;
  // A new connection's HTTP request must be complete, and a Phoenix socket's first join
  // accepted after its upgrade, within this long (connection.h: deadlines).
  uint64_t header_timeout_ms = 10'000;
  std::size_t max_channels = 100;
  // Bytes a connection may have unsent (queued by us or by libuv) before low-priority
  // messages to it are dropped, and then, for anything else, it is closed with 1013.
  std::size_t max_unsent_bytes = std::size_t{1} << 20;
  std::vector<std::string> allowed_origins;
  // JWT HS256 secret (--auth-secret-file); empty: every token is refused.
  std::string auth_secret;
  // Sockets without a token may connect (and join reel: topics).
  bool allow_anonymous = true;
  // Client frames (messages, pings, pongs, close and continuation frames) per second per
  // socket, with bursts of twice that; more closes the socket with 1008. 0: no limit.
  uint32_t max_client_messages_per_second = 100;
  // Connections per source address, admitted by the acceptor and released here; null: none.
  PeerLimit *peer_limit = nullptr;
  // Largest request body accepted (413 beyond, before it is buffered).
  std::size_t max_request_body = 64 * 1024;

  // Shared by every loop, owned by main; null: that feature is off.
  PresenceHub *presence = nullptr;  // Phoenix Presence on reel topics, users' status
  RestApi *rest = nullptr;          // /api/v1/reels/..., /api/v1/users/...; status pushes
  SystemApi *system = nullptr;      // /metrics, /api/v1/system/..., /api/v1/connections/stats
  Publisher *publisher = nullptr;   // where likes, comments and shares are published
  KeyedRateLimiter *interaction_limiter = nullptr;  // per user
  std::size_t max_comment_bytes = 1000;

  // Recovery: a join with {"last_seq": N, "epoch": E} gets the topic's messages after N
  // before live ones, read from the durable log (null: joins never recover), at most
  // max_recovery of them (more: {"recovered": false}). `reels` gives reel topics' counters,
  // the current state sent to a client that cannot recover.
  LogStore *log = nullptr;
  std::size_t max_recovery = 100'000;
  ReelState *reels = nullptr;
  // A cluster node (null: a single host): recovery reads the topic's history in Redis
  // instead of the local log, whose numbering is this host's own — except while the node
  // is cut off and answers joins with its own streams (SyncReply::local).
  ClusterNode *cluster = nullptr;
};

// What a loop counts. Each counter is written by its loop only (load + store, no RMW) and
// read by the control socket's thread, so reading costs the loop nothing.
enum class Counter : uint8_t {
  kConnections,       // open now
  kConnectionsTotal,  // accepted since start
  kFramesIn,
  kFramesOut,
  kBytesOut,
  kWrites,  // uv_try_write + uv_write calls that carried the frames
  kClosedIdle,
  kClosedProtocol,
  kClosedSlow,  // closed with 1013
  kDroppedLow,  // low-priority messages not sent to a slow client
  kHttpErrors,
  kAuthRejected,    // connections and joins refused for their token
  kRateLimited,     // sockets closed (1008) for sending messages too fast
  kJoinsOverLimit,  // joins refused for --max-channels
  kInteractions,    // likes, comments and shares accepted (published)
  kInteractionsInvalid,
  kInteractionsRateLimited,
  kRecoveries,         // joins with last_seq that recovered (recovered: true)
  kRecoveriesFailed,   // joins with last_seq that could not ({"recovered": false})
  kRecoveredMessages,  // messages sent to recovering joins from the log
  kMessages,           // messages the loop received from the dispatcher
  kChannelsReel,
  kChannelsUser,
  kChannelsSystem,
  kCount
};

// A snapshot of counters (of one loop, or summed over all).
struct ServerCounters {
  std::array<uint64_t, static_cast<std::size_t>(Counter::kCount)> values{};
  uint64_t operator[](Counter c) const { return values[static_cast<std::size_t>(c)]; }
  ServerCounters &operator+=(const ServerCounters &o) {
    for (std::size_t i = 0; i < values.size(); ++i) values[i] += o.values[i];
    return *this;
  }
};

// A client's fault, logged as a warning line: throttled per kind (log::Throttle), so that a
// misbehaving client cannot flood the journal; the counters count every one.
enum class Fault : uint8_t { kProtocol, kRateLimited, kAuth, kSlow, kHttp, kCount };

// The connections of one I/O loop. Everything here runs on that loop's thread, except
// counters(), which any thread may call.
class ClientServer {
 public:
  ClientServer(uv_loop_t *loop, ServerOptions options, InterestCallback interest = nullptr,
               SyncCallback sync = nullptr, LoopPost post = nullptr);
  ~ClientServer();
  ClientServer(const ClientServer &) = delete;
  ClientServer &operator=(const ClientServer &) = delete;

  // Starts the loop's timers and flush handles.
  void start();
  // Before start(): see ServerOptions::system.
  void set_system_api(SystemApi *system) { options_.system = system; }
  // Takes the limits SIGHUP may change from `options`: auth_secret, allowed_origins,
  // idle_timeout_ms, header_timeout_ms, max_unsent_bytes, max_request_body, max_comment_bytes and
  // max_recovery count at once for every connection; max_message, max_channels and
  // max_client_messages_per_second for connections accepted after it (a connection keeps the
  // limits it was accepted with). The other fields are ignored.
  void reconfigure(const ServerOptions &options);
  // Takes over an accepted, non-blocking socket.
  void adopt(int fd, const PeerLimit::Key &peer = {});
  // Closes every connection (close code `code`) and takes no more.
  void close(uint16_t code = 1001, std::string_view reason = "server stopping");
  // Closes whatever is still open now, unsent bytes and all (the end of a shutdown).
  void force_close();
  // The drain (SIGTERM): takes no more connections and tells every WebSocket client,
  // before anything else that follows, `notice_json` (a SystemNotice's JSON) as event
  // `system_notice`: a Phoenix socket on each topic it has joined (with that join's
  // join_ref), a plain socket as its plain frame. Then close_batch() closes the WebSocket
  // connections open at this moment a share at a time: after batch `done` of `batches`, at
  // most ceil(open * (batches - done) / batches) of them stay open. HTTP requests are left
  // to close().
  void begin_drain(std::string_view notice_json);
  void close_batch(unsigned done, unsigned batches, uint16_t code, std::string_view reason);

  // Writes each message to this loop's subscribers of its topic.
  void fan_out(const std::vector<MessagePtr> &messages) { subscribers_.fan_out(messages); }
  // The topic's stream changed (fanout.h, Dispatcher::reset): each Phoenix channel of it is
  // told so (phx_error, after which the client joins again and learns the new stream) and
  // left. Plain sockets have no stream position to lose: they stay.
  void reset_stream(const std::string &topic);
  // The answer to a sync request this server made for a join.
  void on_sync(const SyncReply &reply) { joins_.on_sync(reply); }
  ServerCounters counters() const;
  // Publish (the producer's clock) to the message's frames being queued to all of this
  // loop's subscribers of its topic, in nanoseconds; written by the loop only.
  const LatencyHistogram &delivery_latency() const { return delivery_ns_; }
  LatencyHistogram &delivery_latency() { return delivery_ns_; }

  // One open connection as the operator sees it (kronopctl connections).
  struct ConnectionInfo {
    std::string peer;                 // "address:port" ("[v6]:port"); empty if the socket has none
    std::string user_id;              // empty: anonymous
    const char *mode = "http";        // "http" (not upgraded), "phoenix" or "plain"
    bool protobuf = false;            // format=protobuf
    std::vector<std::string> topics;  // joined channels
    uint64_t unsent_bytes = 0;        // queued here and in libuv's write queue
    uint64_t accepted_ns = 0;         // monotonic_ns() at adopt()
  };
  // This loop's open connections (in no particular order); with a topic, only those joined
  // to it.
  // On the loop's thread (IoLoop::describe_connections gets there from others).
  std::vector<ConnectionInfo> describe_connections(const std::string &topic) const;

  // The parts, for one another (the loop's thread only).
  uv_loop_t *loop() const { return loop_; }
  const ServerOptions &options() const { return options_; }
  WriteQueue &writes() { return writes_; }
  SubscriberTable &subscribers() { return subscribers_; }
  JoinTracker &joins() { return joins_; }
  ClientPushes &pushes() { return pushes_; }
  const LoopPost &post() const { return post_; }  // null in tests without an IoLoop
  phoenix::MessageParser &parser() { return *parser_; }
  TokenVerifier &verifier() { return *verifier_; }
  RouteOutcome &route_outcome() { return route_outcome_; }  // reused by every message
  void send(Connection *c, SharedFrame frame, Send how = Send::kNormal) {
    writes_.send(c, std::move(frame), how);
  }
  void log_fault(const Connection *c, Fault kind, int code, std::string_view reason);
  void bump(Counter c, uint64_t n = 1) {
    auto &a = counters_[static_cast<std::size_t>(c)];
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void drop(Counter c) {
    auto &a = counters_[static_cast<std::size_t>(c)];
    a.store(a.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  // Connection's lifecycle hooks.
  void touched(Connection *c);  // a complete message: most recently active first
  // The connection enters a stage with a deadline (leaving the one it was in), or leaves it.
  void begin_stage(Connection *c, Connection::Stage stage);
  void end_stage(Connection *c);
  void lingering(Connection *c);  // shut down, waiting for the peer's close
  void forget(Connection *c);     // its handle is closed

 private:
  static void on_sweep(uv_timer_t *timer);
  void sweep_stages(uint64_t now);
  void release_handles();
  friend struct Connection;

  uv_loop_t *loop_;
  ServerOptions options_;
  WriteQueue writes_;
  SubscriberTable subscribers_;
  JoinTracker joins_;
  ClientPushes pushes_;
  LoopPost post_;
  uv_timer_t sweep_{};
  bool handles_open_ = false;
  bool accepting_ = false;
  std::size_t drain_open_ = 0;           // WebSocket connections open when the drain began
  std::list<Connection *> connections_;  // most recently active first
  // The connections in each deadline stage (Connection::Stage, kNone excluded), oldest
  // first: every stage has the same timeout, so the sweep stops at the first not due.
  std::array<std::list<Connection *>, 2> staged_;
  std::vector<Connection *> lingering_;             // shut down, waiting for the peer's close
  std::unique_ptr<phoenix::MessageParser> parser_;  // renewed by reconfigure()
  RouteOutcome route_outcome_;
  std::unique_ptr<TokenVerifier> verifier_;  // renewed by reconfigure()
  LatencyHistogram delivery_ns_;
  std::array<log::Throttle, static_cast<std::size_t>(Fault::kCount)> fault_log_;
  std::vector<char> read_buffer_;
  std::array<std::atomic<uint64_t>, static_cast<std::size_t>(Counter::kCount)> counters_{};
};

}  // namespace kronop::daemon
