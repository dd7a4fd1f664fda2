// The client port: HTTP/1.1 on libuv, upgraded to WebSocket, speaking Phoenix Channels V2
// at /ws/websocket and plain JSON at /ws/reel/:id and /ws/system.
//
// Each I/O loop has one ClientServer, which owns that loop's connections and its
// subscriber table (the Acceptor hands accepted sockets to the loops in turn). A connection
// keeps no read buffer while idle: reads land in one loop-wide buffer and only an
// incomplete frame's bytes are copied into the connection. Frames for many subscribers are
// shared (SharedFrame), never re-encoded per connection, and a connection's frames of one
// loop turn go out in one write.
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
#include "fanout.h"
#include "http.h"
#include "kronop/result.h"
#include "latency_histogram.h"
#include "log.h"
#include "phoenix.h"
#include "presence.h"
#include "publisher.h"
#include "rate_limit.h"
#include "rest_api.h"

namespace kronop::daemon {

class LogStore;
class ReelState;

struct ServerOptions {
  std::size_t max_message = 64 * 1024;
  uint64_t idle_timeout_ms = 60'000;
  std::size_t max_channels = 100;
  // Bytes a connection may have unsent (queued by us or by libuv) before low-priority
  // messages to it are dropped, and then, for anything else, it is closed with 1013.
  std::size_t max_unsent_bytes = std::size_t{1} << 20;
  std::vector<std::string> allowed_origins;
  // JWT HS256 secret (--auth-secret-file); empty: every token is refused.
  std::string auth_secret;
  // Sockets without a token may connect (and join reel: topics).
  bool allow_anonymous = true;
  // Client messages (and pings) per second per socket, with bursts of twice that; more
  // closes the socket with 1008. 0: no limit.
  uint32_t max_client_messages_per_second = 100;
  // Connections per source address, admitted by the acceptor and released here; null: none.
  PeerLimit *peer_limit = nullptr;
  // Plain HTTP requests (not WebSocket upgrades): the complete response for the paths it
  // serves, nullopt for the others (404). Called on the loop's thread.
  std::function<std::optional<std::string>(const http::Request &)> http_routes;
  // Largest request body accepted (413 beyond, before it is buffered).
  std::size_t max_request_body = 64 * 1024;

  // Shared by every loop, owned by main; null: that feature is off.
  PresenceHub *presence = nullptr;  // Phoenix Presence on reel topics, users' status
  RestApi *rest = nullptr;          // /api/v1/reels/..., /api/v1/users/...; status pushes
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

// Called by a loop when it gains its first subscriber of a topic (true) or loses its last.
using InterestCallback = std::function<void(const std::string &topic, bool interested)>;
// Called by a loop to ask where a topic's stream stands (Dispatcher::request_sync); the
// answer comes to ClientServer::on_sync.
using SyncCallback = std::function<void(const std::string &topic, uint64_t id)>;

// The connections of one I/O loop. Everything here runs on that loop's thread, except
// counters(), which any thread may call.
class ClientServer {
 public:
  ClientServer(uv_loop_t *loop, ServerOptions options, InterestCallback interest = nullptr,
               SyncCallback sync = nullptr);
  ~ClientServer();
  ClientServer(const ClientServer &) = delete;
  ClientServer &operator=(const ClientServer &) = delete;

  // Starts the loop's timers and flush handles.
  void start();
  // Before start(): see ServerOptions::http_routes.
  void set_http_routes(std::function<std::optional<std::string>(const http::Request &)> routes) {
    options_.http_routes = std::move(routes);
  }
  // Takes the limits SIGHUP may change from `options`: auth_secret, allowed_origins,
  // idle_timeout_ms, max_unsent_bytes, max_request_body, max_comment_bytes and max_recovery
  // count at once for every connection; max_message, max_channels and
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
  void fan_out(const std::vector<MessagePtr> &messages);
  // The answer to a sync request this server made for a join (after the messages numbered
  // before it were fanned out).
  void on_sync(const SyncReply &reply);
  ServerCounters counters() const;
  // Publish (the producer's clock) to the message's frames being queued to all of this
  // loop's subscribers of its topic, in nanoseconds; written by the loop only.
  const LatencyHistogram &delivery_latency() const { return delivery_ns_; }

  struct Connection;

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

 private:
  friend struct Connection;
  static void on_sweep(uv_timer_t *timer);

  // How a frame is queued on a connection that has too much unsent.
  enum class Send : uint8_t {
    kNormal,     // over the bound: the connection is closed (1013)
    kDroppable,  // a low-priority message: over the bound it is dropped (counted)
    kClosing,    // the close frame: always queued
  };
  // Queues a frame; it goes out when the loop flushes (see flush_all).
  void send(Connection *c, SharedFrame frame, Send how = Send::kNormal);
  // Writes a connection's queued frames in one go: uv_try_write first, uv_write for the
  // rest. Runs once per loop turn for each connection that has frames (corking), from a
  // check handle (after the turn's I/O callbacks) and a prepare handle (before the loop
  // blocks, for what timers queued).
  void flush(Connection *c);
  void flush_all();
  void mark_dirty(Connection *c);
  void release_flush_handles();

  // A client event on a joined channel: likes, comments and shares on reel topics, status
  // changes on the user's own topic; anything else is answered "unhandled event".
  void handle_push(Connection *c, const phoenix::ClientMessage &m);
  void handle_interaction(Connection *c, const phoenix::ClientMessage &m);
  // The phx_reply to a client message.
  void reply_to(Connection *c, const phoenix::ClientMessage &m, phoenix::ReplyStatus status,
                std::string_view response);
  // Joins. An accepted join is answered once the loop knows where the topic's stream stands
  // (a sync request through the dispatcher): the ok reply says {"epoch","last_seq"} and,
  // for a join with last_seq, whether it "recovered"; then come the presence state, the
  // recovered messages (read from the log off the loop, on libuv's thread pool) and the
  // live messages that arrived meanwhile, which were held. So the client sees the reply,
  // then history, then live messages, with no gap and no duplicate.
  struct PendingJoin;
  struct HistoryRead;
  // false (and an error reply sent) when the join's recovery parameters are malformed.
  bool check_join_params(Connection *c, const phoenix::ClientMessage &m);
  void begin_join(Connection *c, const phoenix::ClientMessage &m);
  void read_history(Connection *c, PendingJoin *j, const SyncReply &r);
  // Sends the reply (recovered: nullopt when recovery was not asked for) and presence, then
  // the history and the held messages (pump_history), and makes the join live.
  void finish_join(Connection *c, PendingJoin *j, std::optional<bool> recovered,
                   std::vector<SharedFrame> history = {}, uint64_t messages = 0);
  // Sends what fits of an answered join's history; when all is sent, the held messages, and
  // the join is live. resume_history: after a write completed.
  void pump_history(Connection *c, PendingJoin *j);
  void resume_history(Connection *c);
  void drop_pending_join(Connection *c, std::string_view topic);
  // One message to one subscriber, in its format, unless target_users excludes it.
  void deliver_to(Connection *c, const Message &m);
  // After an accepted join of a reel topic: track the socket's user (once per channel) and
  // send the topic's presence_state with the join's join_ref.
  void join_presence(Connection *c, const std::string &topic, std::string_view join_ref_json,
                     std::string_view topic_json);
  void leave_presence(Connection *c, const std::string &topic);

  void subscribe(const std::string &topic, Connection *c);
  void unsubscribe(const std::string &topic, Connection *c);
  void forget(Connection *c);

  uv_loop_t *loop_;
  ServerOptions options_;
  InterestCallback interest_;
  SyncCallback sync_;
  uint64_t next_sync_id_ = 0;
  // Sync requests (and history reads) in flight: id -> the connection whose join waits.
  std::unordered_map<uint64_t, Connection *> syncs_;
  uv_timer_t sweep_{};
  // Joins asked again shortly (sync id, topic): see on_sync, a client ahead of the stream.
  uv_timer_t resync_{};
  std::vector<std::pair<uint64_t, std::string>> resyncs_;
  static void on_resync(uv_timer_t *timer);
  uv_check_t flush_check_{};
  uv_prepare_t flush_prepare_{};
  bool flush_handles_open_ = false;
  std::vector<Connection *> dirty_;  // connections with queued frames
  std::vector<Connection *> flushing_;
  std::vector<uv_buf_t> bufs_;  // scratch for flush
  bool started_ = false;
  bool accepting_ = false;
  std::size_t drain_open_ = 0;           // WebSocket connections open when the drain began
  std::list<Connection *> connections_;  // most recently active first
  std::vector<Connection *> lingering_;  // shut down, waiting for the peer's close
  std::unordered_map<std::string, std::vector<Connection *>> subscribers_;
  std::unique_ptr<phoenix::MessageParser> parser_;  // renewed by reconfigure()
  RouteOutcome route_outcome_;                      // reused by every message's routing
  std::unique_ptr<TokenVerifier> verifier_;         // renewed by reconfigure()
  LatencyHistogram delivery_ns_;
  // A client's fault, as a warning line: throttled per kind (log::Throttle), so that a
  // misbehaving client cannot flood the journal; the counters count every one.
  enum class Fault : uint8_t { kProtocol, kRateLimited, kAuth, kSlow, kHttp, kCount };
  void log_fault(const Connection *c, Fault kind, int code, std::string_view reason);
  std::array<log::Throttle, static_cast<std::size_t>(Fault::kCount)> fault_log_;
  uint32_t interaction_ids_ = 0;
  std::vector<char> read_buffer_;
  std::array<std::atomic<uint64_t>, static_cast<std::size_t>(Counter::kCount)> counters_{};
  void bump(Counter c, uint64_t n = 1) {
    auto &a = counters_[static_cast<std::size_t>(c)];
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void drop(Counter c) {
    auto &a = counters_[static_cast<std::size_t>(c)];
    a.store(a.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
};

}  // namespace kronop::daemon
