// A connection and its read path; see connection.h.
#include "connection.h"

#include <cstring>

#include "kronop/clock.h"
#include "server.h"
#include "system_api.h"

namespace kronop::daemon {
namespace {
SharedFrame shared(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

bool is_loopback(const PeerLimit::Key &k) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(k.data(), kMapped, sizeof kMapped) == 0) return k[12] == 127;  // 127/8
  return std::memcmp(k.data(), kV6Loopback, sizeof kV6Loopback) == 0;
}
}  // namespace

Connection::Connection(ClientServer *s)
    : server(s),
      reader(static_cast<uint32_t>(s->options().max_message)),
      router(s->options().max_channels) {}

Connection::~Connection() = default;

PendingJoin *Connection::joining_on(std::string_view topic) {
  for (auto &j : joining) {
    if (j->topic == topic) return j.get();
  }
  return nullptr;
}

// Every frame, whatever it is, takes a token: a frame costs the loop its parsing whether or
// not it makes a message, so an unsolicited-pong flood or an endless message of empty
// continuation frames is refused like a message flood. Ordinary clients are far below the
// default (100 per second, bursts of 200): phoenix.js sends a heartbeat every 30 s, and a
// message is one frame unless the client fragments it.
void Connection::on_frame(ws::Opcode) { (void)within_rate(); }

void Connection::touch() {
  last_activity_ms = read_ms;
  server->touched(this);
}

// A ping or a pong between messages is a keep-alive (RFC 6455 §5.5.2), so it counts as
// activity; in the middle of a fragmented message it does not, or a peer could hold an
// unfinished message (and its assembly buffer) open for ever.
void Connection::on_ping(std::string_view payload) {
  if (!reader.message_in_flight()) touch();
  server->send(this, shared(ws::pong_frame(payload)));
}

void Connection::on_pong(std::string_view) {
  if (!reader.message_in_flight()) touch();
}

bool Connection::within_rate() {
  if (limiter.allow(read_ms)) return true;
  server->bump(Counter::kRateLimited);
  server->log_fault(this, Fault::kRateLimited, ws::kClosePolicyViolation,
                    "message rate limit exceeded");
  close_with(ws::kClosePolicyViolation, "message rate limit exceeded");
  return false;
}

void Connection::on_close(uint16_t code, std::string_view) {
  close_with(code == ws::kCloseNoStatus ? ws::kCloseNormal : code, "");
}

void Connection::on_protocol_error(uint16_t code, std::string_view reason) {
  server->bump(Counter::kClosedProtocol);
  server->log_fault(this, Fault::kProtocol, code, reason);
  close_with(code, reason);
}

void Connection::close_with(uint16_t code, std::string_view reason) {
  if (closing) return;
  reader.stop();
  server->send(this, shared(ws::close_frame(code, reason)), Send::kClosing);
  shut();
}

void Connection::refuse_http(int status, std::string_view reason) {
  server->bump(Counter::kHttpErrors);
  server->log_fault(this, status == 403 ? Fault::kAuth : Fault::kHttp, status, reason);
  server->send(this, shared(ws::http_error_response(status, reason)), Send::kClosing);
  shut();
}

void Connection::shut() {
  if (closing) return;
  closing = true;
  closing_since_ms = monotonic_ms();
  lingering = true;
  server->lingering(this);
  server->writes().mark_dirty(this);
}

void Connection::half_close() {
  if (shutdown_sent || handle_closed) return;
  shutdown_sent = true;
  // The request is owned like a uv_write's (write_queue.h): released into req->data.
  auto req = std::make_unique<uv_shutdown_t>();
  if (uv_shutdown(req.get(), stream(),
                  [](uv_shutdown_t *r, int) { std::unique_ptr<uv_shutdown_t> done(r); }) == 0) {
    (void)req.release();
  } else {
    close_handle();
  }
}

void Connection::close_handle() {
  if (handle_closed) return;
  handle_closed = true;
  response_sink.reset();  // a late answer to a request finds nothing
  uv_close(reinterpret_cast<uv_handle_t *>(&tcp), [](uv_handle_t *h) {
    std::unique_ptr<Connection> owned(static_cast<Connection *>(h->data));
    owned->server->forget(owned.get());
  });
}

void Connection::process(std::span<char> data, std::size_t *used) {
  *used = 0;
  if (mode == Mode::kHttp) {
    std::size_t n = 0;
    auto state = http_parser->feed(std::string_view(data.data(), data.size()), &n);
    *used = n;
    if (state == http::RequestParser::State::kError) {
      // Not yet known to be a WebSocket upgrade: the REST API's JSON error body.
      server->bump(Counter::kHttpErrors);
      server->log_fault(this, Fault::kHttp, http_parser->error_status(),
                        http_parser->error_reason());
      server->send(this,
                   shared(http::error_response(http_parser->error_status(),
                                               http_parser->error_reason(), true)),
                   Send::kClosing);
      shut();
      return;
    }
    if (state == http::RequestParser::State::kNeedMore) return;
    touch();
    server->end_stage(this);
    handle_request();
    if (closing || mode == Mode::kHttp) {
      *used = data.size();
      return;
    }
    data = data.subspan(n);
  }
  *used += reader.consume(data, assembly, *this);
}

// The connect-time token: the official client's authToken (Sec-WebSocket-Protocol
// "base64url.bearer.phx.<token>", decoded by the handshake) or the "token" query parameter.
// A token that does not verify is refused with 403 whatever --allow-anonymous says: a
// client that sent one means to be someone. A plain endpoint's topic is checked here too,
// since it is joined at connect.
bool Connection::authenticate(const http::Request &req, const ws::HandshakeResult &hs, Mode want,
                              const std::string &plain_topic) {
  std::string token;
  if (hs.auth_token) {
    token = *hs.auth_token;
  } else {
    req.query_param("token", &token);
  }
  if (!token.empty()) {
    const int64_t now = static_cast<int64_t>(realtime_ns() / 1'000'000'000ULL);
    const TokenError e = server->verifier().verify(token, now, identity);
    if (e != TokenError::kNone) {
      server->bump(Counter::kAuthRejected);
      refuse_http(403, token_error_message(e));
      return false;
    }
  } else if (!server->options().allow_anonymous) {
    server->bump(Counter::kAuthRejected);
    refuse_http(403, "authentication required: connect with a token");
    return false;
  }
  if (want == Mode::kPlain && topic_policy(plain_topic, identity) != JoinPolicy::kAllow) {
    server->bump(Counter::kAuthRejected);
    refuse_http(403, plain_topic.starts_with("user:")
                         ? "only that user may subscribe to a user topic"
                         : "the system topic needs an admin token");
    return false;
  }
  return true;
}

HttpCaller Connection::caller(const http::Request &req) {
  HttpCaller who;
  who.loopback = is_loopback(peer);
  std::string_view auth = req.header("authorization");
  if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) {
    who.has_token = true;
    const int64_t now = static_cast<int64_t>(realtime_ns() / 1'000'000'000ULL);
    who.token_error = server->verifier().verify(auth.substr(7), now, who.identity);
    if (who.token_error != TokenError::kNone) server->bump(Counter::kAuthRejected);
  } else if (!auth.empty()) {
    who.has_token = true;
    who.token_error = TokenError::kMalformed;
    server->bump(Counter::kAuthRejected);
  }
  return who;
}

void Connection::handle_request() {
  http::Request &req = http_parser->request();
  std::optional<Route> route = match_route(req.path);
  const ServerOptions &o = server->options();
  if (route && route->upgrade()) {
    upgrade(req, *route);
    return;
  }
  const bool rest_route =
      route && (route->kind == RouteKind::kReelUpdates || route->kind == RouteKind::kUserPresence);
  // A route whose API is off in this daemon is no endpoint.
  if ((rest_route && o.rest == nullptr) ||
      (route && route->kind == RouteKind::kSystem && o.system == nullptr)) {
    route.reset();
  }
  if (rest_route && o.rest != nullptr) o.rest->count_request();
  if (auto refused = http_refusal(route, req.path, req.method)) {
    if (!route) server->bump(Counter::kHttpErrors);
    server->send(this, shared(std::move(*refused)), Send::kClosing);
    shut();
    return;
  }
  // Answered now or later (a log read); either way the response closes the connection.
  response_sink = std::make_shared<Responder::Sink>([this](std::string response) {
    awaiting_response = false;
    server->send(this, shared(std::move(response)), Send::kClosing);
    shut();
  });
  awaiting_response = true;
  Responder responder(response_sink);
  switch (route->kind) {
    case RouteKind::kReelUpdates:
      o.rest->reel_updates(route->param, req, caller(req), responder, server->loop());
      break;
    case RouteKind::kUserPresence:
      o.rest->user_presence(route->param, req, caller(req), responder, server->post());
      break;
    case RouteKind::kSystem:
      responder.respond(o.system->respond(req));
      break;
    case RouteKind::kPhoenixSocket:
    case RouteKind::kPlainSocket:
      break;  // upgraded above
  }
}

void Connection::upgrade(const http::Request &req, const Route &route) {
  Mode want = Mode::kPlain;
  const std::string &plain_topic = route.param;
  if (route.kind == RouteKind::kPhoenixSocket) {
    std::string vsn;
    if (req.query_param("vsn", &vsn) && vsn != "2.0.0") {
      refuse_http(403, "unsupported serializer version (this server speaks vsn=2.0.0)");
      return;
    }
    std::string format;
    if (req.query_param("format", &format) && format != "json" && format != "protobuf") {
      refuse_http(400, "unsupported format (json or protobuf)");
      return;
    }
    protobuf = format == "protobuf";
    want = Mode::kPhoenix;
  } else if (!valid_topic(plain_topic)) {
    refuse_http(400, "invalid topic id");
    return;
  }
  ws::HandshakeRequest hs;
  hs.method = req.method;
  hs.http_major = req.http_major;
  hs.http_minor = req.http_minor;
  hs.upgrade = req.header("upgrade");
  hs.connection = req.header("connection");
  hs.version = req.header("sec-websocket-version");
  hs.key = req.header("sec-websocket-key");
  hs.origin = req.header("origin");
  hs.protocol = req.header("sec-websocket-protocol");
  ws::HandshakeOptions options;
  options.allowed_origins = server->options().allowed_origins;
  ws::HandshakeResult result = ws::accept_handshake(hs, options);
  if (result.accepted() && !authenticate(req, result, want, plain_topic)) return;
  server->send(this, shared(std::move(result.response)),
               result.accepted() ? Send::kNormal : Send::kClosing);
  if (!result.accepted()) {
    server->bump(Counter::kHttpErrors);
    shut();
    return;
  }
  mode = want;
  http_parser.reset();  // no HTTP state for the rest of the connection's life
  if (mode == Mode::kPhoenix) server->begin_stage(this, Stage::kFirstJoin);
  PresenceHub *presence = server->options().presence;
  if (identity.authenticated() && presence != nullptr) {
    presence->connected(identity.user_id, realtime_ns() / 1'000'000);
    online = true;
  }
  if (mode == Mode::kPlain) {
    router.add(plain_topic);
    server->subscribers().subscribe(plain_topic, this);
  }
}

void Connection::on_text(std::string_view message) {
  server->bump(Counter::kFramesIn);
  touch();
  if (mode != Mode::kPhoenix) return;  // plain sockets only listen
  phoenix::ClientMessage m;
  handle_message(m, server->parser().parse_text(message, m));
}

void Connection::on_binary(std::string_view message) {
  server->bump(Counter::kFramesIn);
  touch();
  if (mode != Mode::kPhoenix) return;
  phoenix::ClientMessage m;
  handle_message(m, server->parser().parse_binary(message, m));
}

// A message that breaks the protocol closes the socket, as Phoenix's own socket process
// does. A ref over phoenix::kMaxRef closes it too (1008: our limit, not a malformed
// message), rather than getting a phx_reply error: a reply would have to echo the very ref
// it refuses; phoenix.js matches replies by ref and would just rejoin after a join error,
// while it never sends such a ref (its refs are short counters), so whoever does is no
// Phoenix client a reply could help. A close costs nothing and nothing of the ref is kept.
void Connection::handle_message(const phoenix::ClientMessage &m, phoenix::ParseError e) {
  if (e != phoenix::ParseError::kNone) {
    const uint16_t code = e == phoenix::ParseError::kRefTooLong ? ws::kClosePolicyViolation
                                                                : ws::kCloseUnsupportedData;
    server->bump(Counter::kClosedProtocol);
    server->log_fault(this, Fault::kProtocol, code, phoenix::parse_error_message(e));
    close_with(code, phoenix::parse_error_message(e));
    return;
  }
  handle_phoenix(m);
}

void Connection::handle_phoenix(const phoenix::ClientMessage &m) {
  JoinTracker &joins = server->joins();
  if (m.event == "phx_join" && !joins.check_params(this, m)) return;
  RouteOutcome &routed = server->route_outcome();
  router.route(m, identity, routed);
  if (routed.unauthorized > 0) server->bump(Counter::kAuthRejected);
  if (routed.over_limit > 0) server->bump(Counter::kJoinsOverLimit);
  for (std::string &reply : routed.replies) server->send(this, shared(ws::text_frame(reply)));
  if (!routed.subscribe.empty()) server->subscribers().subscribe(routed.subscribe, this);
  if (!routed.unsubscribe.empty()) {
    joins.drop(this, routed.unsubscribe);
    server->subscribers().unsubscribe(routed.unsubscribe, this);
    joins.leave_presence(this, routed.unsubscribe);
  }
  if (routed.joined) {
    if (stage == Stage::kFirstJoin) server->end_stage(this);
    joins.begin(this, m);
  }
  if (routed.push) server->pushes().handle(this, m);
}

}  // namespace kronop::daemon
