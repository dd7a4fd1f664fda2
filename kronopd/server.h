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

  void subscribe(const std::string &topic, Connection *c);
  void unsubscribe(const std::string &topic, Connection *c);
  void forget(Connection *c);
  void write(Connection *c, SharedFrame frame);

  uv_loop_t *loop_;
  ServerOptions options_;
  uv_tcp_t listener_{};
  uv_timer_t sweep_{};
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
