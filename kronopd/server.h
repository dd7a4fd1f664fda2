// The client port: HTTP/1.1 on libuv, upgraded to WebSocket, speaking Phoenix Channels V2
// at /ws/websocket and plain JSON at /ws/reel/:id and /ws/system.
//
// One loop owns every connection, the subscriber table and the fan-out encoder. A
// connection keeps no read buffer while idle: reads land in one loop-wide buffer and only
// an incomplete frame's bytes are copied into the connection. Frames for many subscribers
// are shared (SharedFrame), never re-encoded per connection.
#pragma once

#include <uv.h>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "channels.h"
#include "fanout.h"
#include "kronop/result.h"
#include "phoenix.h"

namespace kronop::daemon {

struct ServerOptions {
  std::string bind = "127.0.0.1";
  int port = 4000;
  std::size_t max_message = 64 * 1024;
  uint64_t idle_timeout_ms = 60'000;
  std::size_t max_channels = 100;
  // Bytes a connection may have unsent (queued by us or by libuv) before low-priority
  // messages to it are dropped, and then, for anything else, it is closed with 1013.
  std::size_t max_unsent_bytes = std::size_t{1} << 20;
  std::vector<std::string> allowed_origins;
};

struct ServerCounters {
  uint64_t connections = 0;  // open now
  uint64_t connections_total = 0;
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t bytes_out = 0;
  uint64_t closed_idle = 0;
  uint64_t closed_protocol = 0;
  uint64_t messages_fanned_out = 0;
  uint64_t encode_failures = 0;
  uint64_t http_errors = 0;
  uint64_t dropped_low = 0;  // low-priority messages not sent to a slow client
  uint64_t closed_slow = 0;  // connections closed with 1013
  uint64_t writes = 0;       // uv_try_write + uv_write calls that carried the frames
  std::unordered_map<std::string, uint64_t> channels_by_kind;  // "reel", "user", "system"
};

class ClientServer {
 public:
  ClientServer(uv_loop_t *loop, ServerOptions options);
  ~ClientServer();
  ClientServer(const ClientServer &) = delete;
  ClientServer &operator=(const ClientServer &) = delete;

  Result<bool> listen();
  // Stops accepting and closes every connection (close code `code`).
  void close(uint16_t code = 1001, std::string_view reason = "server stopping");
  // Closes whatever is still open now, unsent bytes and all (the end of a shutdown).
  void force_close();

  // Loop thread: deliver a batch from the ingest thread.
  void fan_out(std::vector<OutboundMessage> &batch);
  ServerCounters counters() const;
  int port() const { return port_; }  // the bound port (--port 0: the kernel's choice)

  struct Connection;

 private:
  friend struct Connection;
  static void on_connection(uv_stream_t *server, int status);
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

  void subscribe(const std::string &topic, Connection *c);
  void unsubscribe(const std::string &topic, Connection *c);
  void forget(Connection *c);

  uv_loop_t *loop_;
  ServerOptions options_;
  uv_tcp_t listener_{};
  uv_timer_t sweep_{};
  uv_check_t flush_check_{};
  uv_prepare_t flush_prepare_{};
  bool flush_handles_open_ = false;
  std::vector<Connection *> dirty_;  // connections with queued frames
  std::vector<Connection *> flushing_;
  std::vector<uv_buf_t> bufs_;  // scratch for flush
  bool listening_ = false;
  int port_ = 0;
  std::list<Connection *> connections_;
  std::unordered_map<std::string, std::vector<Connection *>> subscribers_;
  MessageEncoder encoder_;
  phoenix::MessageParser parser_;
  RouteOutcome route_outcome_;  // reused by every message's routing
  std::vector<char> read_buffer_;
  ServerCounters counters_;
};

}  // namespace kronop::daemon
