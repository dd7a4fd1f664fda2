// One client connection and its read path (Redis' networking.c).
//
// A connection starts as HTTP: the request is parsed (http.h) and looked up in the route
// table (routes.h). A WebSocket route upgrades it, after the handshake and the connect-time
// token, to a Phoenix socket (/ws/websocket) or a plain socket on one topic (/ws/reel/:id,
// /ws/user/:id, /ws/system); any other route is answered once (maybe later, through a
// Responder) and the connection is closed. Upgraded, its bytes are WebSocket frames
// (websocket.h); a Phoenix socket's messages are parsed (phoenix.h) and routed to channels
// (channels.h), joins (joins.h) and pushes (client_pushes.h).
//
// A connection keeps no read buffer while idle: reads land in one loop-wide buffer and only
// an incomplete frame's bytes are copied into `tail`.
//
// Deadlines (so that a peer trickling bytes cannot hold a descriptor; server.h runs them):
//  - the HTTP request must be complete within --header-timeout-ms of the accept (else 408
//    and close): Stage::kRequest;
//  - a Phoenix socket must have a join accepted within --header-timeout-ms of its upgrade
//    (else close 1008): Stage::kFirstJoin;
//  - after that, --idle-timeout-ms of no activity closes it, and only complete things are
//    activity (touch()): a complete HTTP request, a complete WebSocket message, a ping or a
//    pong between messages. Bytes of an incomplete request, frame or fragmented message
//    are not, so a peer cannot keep a socket open by sending one byte at a time.
// Every frame costs one token of --max-client-messages-per-second (on_frame): pongs,
// pings, close and continuation frames as well as whole messages.
//
// Ownership: the ClientServer creates a connection with std::make_unique and releases it into
// its uv_tcp_t's data; the handle's close callback re-owns it (std::unique_ptr) after the
// server has forgotten it. So a connection lives exactly as long as its libuv handle, and
// close_handle() is the only way it ends.
//
// Closing is a lingering close, so the peer gets our last frames: after the last write we
// send FIN and discard what still arrives until the peer's FIN (or 2 s, the server's sweep).
// Closing the socket at once would reset it while the peer is still sending, and the peer
// would see an abnormal closure (1006) instead of our close code.
#pragma once

#include <uv.h>

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "acceptor.h"
#include "auth.h"
#include "channels.h"
#include "fanout.h"
#include "http.h"
#include "joins.h"
#include "rate_limit.h"
#include "routes.h"
#include "subscribers.h"
#include "websocket.h"
#include "write_queue.h"

namespace kronop::daemon {

class ClientServer;
struct HttpCaller;

struct Connection final : ws::FrameSink {
  enum class Mode : uint8_t { kHttp, kPhoenix, kPlain };

  explicit Connection(ClientServer *s);
  ~Connection() override;

  uv_tcp_t tcp{};
  ClientServer *server = nullptr;
  std::list<Connection *>::iterator position;  // in the server's connections_
  Mode mode = Mode::kHttp;
  bool protobuf = false;  // format=protobuf: broadcasts as kind-2 binary frames
  Identity identity;      // from the connect-time token; anonymous without one
  PeerLimit::Key peer{};  // source address, for --max-connections-per-ip
  RateLimiter limiter;    // client frames per second (on_frame)
  std::unique_ptr<http::RequestParser> http_parser;
  ws::FrameReader reader;
  std::unique_ptr<std::string> assembly;  // a fragmented message in flight
  std::string tail;                       // bytes of an incomplete frame
  uint64_t last_activity_ms = 0;          // the last complete message (touch()), for the idle sweep
  uint64_t read_ms = 0;                   // when the bytes being processed were read
  // The stage whose deadline runs (see the top of this file), and its place in the
  // server's list for that stage.
  enum class Stage : uint8_t { kNone, kRequest, kFirstJoin };
  Stage stage = Stage::kNone;
  uint64_t stage_since_ms = 0;
  std::list<Connection *>::iterator stage_position;
  ChannelRouter router;
  // An HTTP request whose answer comes later: where the Responder delivers it (reset when
  // the connection goes, so a late answer finds nothing).
  std::shared_ptr<Responder::Sink> response_sink;
  bool awaiting_response = false;
  // Frames queued this loop turn, not yet handed to libuv (see write_queue.h).
  struct Outgoing {
    SharedFrame frame;
    bool droppable;
  };
  std::vector<Outgoing> out;
  std::size_t out_bytes = 0;
  bool dirty = false;  // in the write queue's dirty list
  bool closing = false;
  bool shutdown_sent = false;
  bool handle_closed = false;
  uint64_t closing_since_ms = 0;
  bool lingering = false;  // in the server's lingering_ list
  uint32_t writes_in_flight = 0;
  // Presence: whether this socket counts towards its user being online, and the phx_ref of
  // each reel channel it is tracked on.
  bool online = false;
  std::vector<std::pair<std::string, std::string>> presences;  // topic, phx_ref
  // Joins not answered yet (see joins.h).
  std::vector<std::unique_ptr<PendingJoin>> joining;
  uint64_t accepted_ns = 0;  // monotonic, for the operator's view of its age

  Audience audience() const { return {mode == Mode::kPlain, protobuf, &identity}; }
  PendingJoin *joining_on(std::string_view topic);
  uv_stream_t *stream() { return reinterpret_cast<uv_stream_t *>(&tcp); }

  // The read path: bytes from the socket (tail handling is the caller's).
  void process(std::span<char> data, std::size_t *used);

  // ws::FrameSink
  void on_frame(ws::Opcode opcode) override;
  void on_text(std::string_view message) override;
  void on_binary(std::string_view message) override;
  void on_ping(std::string_view payload) override;
  void on_pong(std::string_view payload) override;
  void on_close(uint16_t code, std::string_view) override;
  void on_protocol_error(uint16_t code, std::string_view reason) override;

  // Sends a close frame, then closes (lingering).
  void close_with(uint16_t code, std::string_view reason);
  // No more frames after what is queued; the next flush half-closes once all is written.
  void shut();
  void half_close();
  // Ends the connection: libuv closes the handle, then the server forgets it and it is freed.
  void close_handle();

 private:
  void handle_request();
  void upgrade(const http::Request &req, const Route &route);
  void answer_http(const http::Request &req, const Route &route);
  bool authenticate(const http::Request &req, const ws::HandshakeResult &hs, Mode want,
                    const std::string &plain_topic);
  // A REST request's bearer token and source address.
  HttpCaller caller(const http::Request &req);
  void handle_phoenix(const phoenix::ClientMessage &m);
  void handle_message(const phoenix::ClientMessage &m, phoenix::ParseError e);
  // Counts one client frame against --max-client-messages-per-second; over it, the
  // socket is closed with 1008 (policy violation).
  bool within_rate();
  // A complete message arrived: the idle timer starts again.
  void touch();
  void refuse_http(int status, std::string_view reason);
};

}  // namespace kronop::daemon
