// The client port; see server.h.
#include "server.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "envelope_validation.h"
#include "http.h"
#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "log.h"
#include "log_reader.h"
#include "log_store.h"
#include "rate_limit.h"
#include "reels.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {
// The peer's address_name(); empty when the socket has no peer any more.
std::string peer_name(const uv_tcp_t *tcp) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr *>(&addr), &len) != 0) return {};
  return address_name(addr);
}

constexpr std::size_t kReadBuffer = 64 * 1024;

SharedFrame shared(std::string bytes) {
  return std::make_shared<const std::string>(std::move(bytes));
}

SharedFrame text(std::string_view s) { return shared(ws::text_frame(s)); }

// How one subscriber receives messages: its format, and who it is (for target_users).
struct Audience {
  bool plain = false;     // the plain endpoints' {"topic","event","payload"} text
  bool protobuf = false;  // format=protobuf: the binary broadcast
  const Identity *identity = nullptr;
};

// The frame `a` gets for `m`, or null when target_users leaves it out (ReelUpdate's
// target_users: only those users' sockets; anonymous sockets are nobody's) or when the
// message has no frame in its format.
const SharedFrame *frame_for(const Message &m, const Audience &a) {
  const auto &targets = m.target_users();
  if (!targets.empty() &&
      (!a.identity->authenticated() ||
       std::find(targets.begin(), targets.end(), a.identity->user_id) == targets.end()))
    return nullptr;
  if (a.plain) return &m.plain_text();
  if (a.protobuf && !m.json_only()) {
    const SharedFrame &f = m.phoenix_binary();
    return f ? &f : nullptr;
  }
  return &m.phoenix_text();
}

// History goes out in chunks of frames: one allocation and one write each, rather than a
// message object and a frame per message. At most 64 KiB, and a quarter of
// --max-unsent-bytes, so that a chunk always fits next to what pump_history lets queue.
std::size_t history_chunk_bytes(std::size_t max_unsent_bytes) {
  return std::clamp<std::size_t>(max_unsent_bytes / 4, 1, 64 * 1024);
}

// A thread-pool thread: the frames `a` gets for the messages of `topic` numbered
// after..until in stream `epoch`, from the log once it has committed batch `durable` (which
// holds them), concatenated into chunks. True when all of them are there: a row missing
// (trimmed by retention) or of another epoch means the client cannot recover. Rows whose
// body does not convert are not sent, as live.
bool read_log_history(LogStore &log, const std::string &topic, uint64_t after, uint64_t until,
                      uint64_t epoch, uint64_t durable, const Audience &a, std::size_t chunk_bytes,
                      std::vector<SharedFrame> &chunks, uint64_t &messages) {
  const uint64_t give_up = monotonic_ms() + 10'000;
  while (log.committed() < durable) {
    if (monotonic_ms() > give_up) {
      KLOG_WARN("event=recovery_failed topic=%s error=\"log has not committed batch %llu in 10 s\"",
                log::q(topic).c_str(), static_cast<unsigned long long>(durable));
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  // One read-only connection per pool thread, kept.
  thread_local std::unique_ptr<LogReader> reader;
  thread_local std::string reader_path;
  if (!reader || reader_path != log.path()) {
    auto opened = LogReader::open(log.path());
    if (!opened.ok()) {
      KLOG_WARN("event=recovery_failed topic=%s error=%s", log::q(topic).c_str(),
                log::q(opened.error().message).c_str());
      return false;
    }
    reader = std::move(opened).value();
    reader_path = log.path();
  }
  LogQuery q;
  q.topic = topic;
  q.after_seq = after;
  q.until_seq = until;
  uint64_t expect = after + 1;
  std::string chunk;
  auto read = reader->read(q, [&](const LoggedMessage &row) {
    if (row.seq != expect || row.epoch != epoch) return false;
    ++expect;
    MessagePtr m = Message::make(row.view(), row.seq);
    const SharedFrame *f = m ? frame_for(*m, a) : nullptr;
    if (f == nullptr) return true;
    ++messages;
    if (!chunk.empty() && chunk.size() + (*f)->size() > chunk_bytes) {
      chunks.push_back(std::make_shared<const std::string>(std::move(chunk)));
      chunk.clear();
    }
    if (chunk.empty()) chunk.reserve(std::max(chunk_bytes, (*f)->size()));
    chunk += **f;
    if (chunk.size() >= chunk_bytes) {
      chunks.push_back(std::make_shared<const std::string>(std::move(chunk)));
      chunk.clear();
    }
    return true;
  });
  if (!chunk.empty()) chunks.push_back(std::make_shared<const std::string>(std::move(chunk)));
  if (!read.ok()) {
    KLOG_WARN("event=recovery_failed topic=%s error=%s", log::q(topic).c_str(),
              log::q(read.error().message).c_str());
    return false;
  }
  return expect == until + 1;
}

}  // namespace

struct ClientServer::PendingJoin {
  uint64_t sync_id = 0;  // the sync request or history read it waits for
  std::string topic;
  std::string join_ref_json;
  std::string ref_json;
  std::string topic_json;
  bool recover = false;  // the join gave last_seq
  uint64_t last_seq = 0;
  uint64_t epoch = 0;            // 0: not given
  uint64_t ahead_since_ms = 0;   // first found ahead of the stream (see on_sync)
  SyncReply synced;              // once answered
  std::vector<MessagePtr> held;  // the topic's live messages since the join
  // Once answered: the recovered messages' frames (in chunks), sent as the socket drains
  // (pump_history).
  bool answered = false;
  std::vector<SharedFrame> history;
  std::size_t next = 0;
};

struct ClientServer::HistoryRead {
  uv_work_t req{};
  ClientServer *server = nullptr;
  uint64_t sync_id = 0;
  LogStore *log = nullptr;
  std::string topic;
  uint64_t after = 0;
  uint64_t until = 0;
  uint64_t epoch = 0;
  uint64_t durable = 0;
  Identity identity;  // the reader's own copy: the connection may close meanwhile
  Audience audience;
  std::size_t chunk_bytes = 0;
  std::vector<SharedFrame> chunks;
  uint64_t messages = 0;
  bool complete = false;
};

struct ClientServer::Connection final : ws::FrameSink {
  using Send = ClientServer::Send;
  enum class Mode : uint8_t { kHttp, kPhoenix, kPlain };
  uv_tcp_t tcp{};
  ClientServer *server = nullptr;
  std::list<Connection *>::iterator position;
  Mode mode = Mode::kHttp;
  bool protobuf = false;  // format=protobuf: broadcasts as kind-2 binary frames
  Identity identity;      // from the connect-time token; anonymous without one
  PeerLimit::Key peer{};  // source address, for --max-connections-per-ip
  RateLimiter limiter;    // client messages per second
  std::unique_ptr<http::RequestParser> http_parser;
  ws::FrameReader reader;
  std::unique_ptr<std::string> assembly;  // a fragmented message in flight
  std::string tail;                       // bytes of an incomplete frame
  uint64_t last_activity_ms = 0;
  ChannelRouter router;
  // Frames queued this loop turn, not yet handed to libuv (see ClientServer::flush).
  struct Outgoing {
    SharedFrame frame;
    bool droppable;
  };
  std::vector<Outgoing> out;
  std::size_t out_bytes = 0;
  bool dirty = false;  // in the server's dirty_ list
  // Closing is a lingering close, so the peer gets our last frames: after the last write
  // we send FIN and discard what still arrives until the peer's FIN (or 2 s). Closing the
  // socket at once would reset it while the peer is still sending, and the peer would see
  // an abnormal closure (1006) instead of our close code.
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
  Audience audience() const { return {mode == Mode::kPlain, protobuf, &identity}; }
  // Joins not answered yet (see ClientServer::begin_join).
  std::vector<std::unique_ptr<PendingJoin>> joining;
  PendingJoin *joining_on(std::string_view topic) {
    for (auto &j : joining) {
      if (j->topic == topic) return j.get();
    }
    return nullptr;
  }
  uint64_t accepted_ns = 0;  // monotonic, for the operator's view of its age

  explicit Connection(ClientServer *s)
      : server(s),
        reader(static_cast<uint32_t>(s->options_.max_message)),
        router(s->options_.max_channels) {}

  uv_stream_t *stream() { return reinterpret_cast<uv_stream_t *>(&tcp); }

  // ws::FrameSink
  void on_text(std::string_view message) override;
  void on_binary(std::string_view message) override;
  void on_ping(std::string_view payload) override {
    if (!within_rate()) return;
    server->send(this, shared(ws::pong_frame(payload)));
  }
  // Counts one client message against --max-client-messages-per-second; over it, the
  // socket is closed with 1008 (policy violation).
  bool within_rate() {
    if (limiter.allow(last_activity_ms)) return true;
    server->bump(Counter::kRateLimited);
    server->log_fault(this, Fault::kRateLimited, ws::kClosePolicyViolation,
                      "message rate limit exceeded");
    close_with(ws::kClosePolicyViolation, "message rate limit exceeded");
    return false;
  }
  void on_close(uint16_t code, std::string_view) override {
    close_with(code == ws::kCloseNoStatus ? ws::kCloseNormal : code, "");
  }
  void on_protocol_error(uint16_t code, std::string_view reason) override {
    server->bump(Counter::kClosedProtocol);
    server->log_fault(this, Fault::kProtocol, code, reason);
    close_with(code, reason);
  }

  void process(std::span<char> data, std::size_t *used);
  void handle_request();
  bool authenticate(const http::Request &req, const ws::HandshakeResult &hs, Mode want,
                    const std::string &plain_topic);
  // A REST request's bearer token and source address.
  HttpCaller caller(const http::Request &req);
  void handle_phoenix(const phoenix::ClientMessage &m);
  void close_with(uint16_t code, std::string_view reason) {
    if (closing) return;
    reader.stop();
    server->send(this, shared(ws::close_frame(code, reason)), Send::kClosing);
    shut();
  }
  void refuse_http(int status, std::string_view reason) {
    server->bump(Counter::kHttpErrors);
    server->log_fault(this, status == 403 ? Fault::kAuth : Fault::kHttp, status, reason);
    server->send(this, shared(ws::http_error_response(status, reason)), Send::kClosing);
    shut();
  }
  // No more frames after what is queued; the next flush half-closes once all is written.
  void shut() {
    if (closing) return;
    closing = true;
    closing_since_ms = monotonic_ms();
    lingering = true;
    server->lingering_.push_back(this);
    server->mark_dirty(this);
  }
  void half_close() {
    if (shutdown_sent || handle_closed) return;
    shutdown_sent = true;
    auto *req = new uv_shutdown_t;
    if (uv_shutdown(req, stream(), [](uv_shutdown_t *r, int) { delete r; }) != 0) {
      delete req;
      close_handle();
    }
  }
  void close_handle() {
    if (handle_closed) return;
    handle_closed = true;
    uv_close(reinterpret_cast<uv_handle_t *>(&tcp), [](uv_handle_t *h) {
      auto *c = static_cast<Connection *>(h->data);
      c->server->forget(c);
      delete c;
    });
  }
};

ClientServer::ClientServer(uv_loop_t *loop, ServerOptions options, InterestCallback interest,
                           SyncCallback sync)
    : loop_(loop),
      options_(std::move(options)),
      interest_(std::move(interest)),
      sync_(std::move(sync)),
      parser_(std::make_unique<phoenix::MessageParser>(options_.max_message)),
      verifier_(std::make_unique<TokenVerifier>(options_.auth_secret)),
      read_buffer_(kReadBuffer) {}

ClientServer::~ClientServer() = default;

void ClientServer::log_fault(const Connection *c, Fault kind, int code, std::string_view reason) {
  static constexpr const char *kKinds[] = {"protocol", "rate_limited", "auth", "slow_consumer",
                                           "http"};
  uint64_t suppressed = 0;
  if (!log::enabled(log::Level::kWarning) ||
      !fault_log_[static_cast<std::size_t>(kind)].allow(monotonic_ms(), &suppressed)) {
    return;
  }
  KLOG_WARN("event=client_fault kind=%s peer=%s user=%s code=%d reason=%s suppressed=%llu",
            kKinds[static_cast<std::size_t>(kind)], log::q(peer_name(&c->tcp)).c_str(),
            log::q(c->identity.authenticated() ? c->identity.user_id : "-").c_str(), code,
            log::q(reason).c_str(), static_cast<unsigned long long>(suppressed));
}

void ClientServer::reconfigure(const ServerOptions &options) {
  if (options.max_message != options_.max_message) {
    parser_ = std::make_unique<phoenix::MessageParser>(options.max_message);
  }
  if (options.auth_secret != options_.auth_secret) {
    verifier_ = std::make_unique<TokenVerifier>(options.auth_secret);
  }
  options_.auth_secret = options.auth_secret;
  options_.allowed_origins = options.allowed_origins;
  options_.idle_timeout_ms = options.idle_timeout_ms;
  options_.max_unsent_bytes = options.max_unsent_bytes;
  options_.max_request_body = options.max_request_body;
  options_.max_comment_bytes = options.max_comment_bytes;
  options_.max_recovery = options.max_recovery;
  options_.max_message = options.max_message;
  options_.max_channels = options.max_channels;
  options_.max_client_messages_per_second = options.max_client_messages_per_second;
}

void ClientServer::start() {
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  uv_timer_start(&sweep_, on_sweep, 1000, 1000);
  uv_timer_init(loop_, &resync_);
  resync_.data = this;
  uv_check_init(loop_, &flush_check_);
  uv_prepare_init(loop_, &flush_prepare_);
  flush_check_.data = this;
  flush_prepare_.data = this;
  uv_check_start(&flush_check_,
                 [](uv_check_t *h) { static_cast<ClientServer *>(h->data)->flush_all(); });
  uv_prepare_start(&flush_prepare_,
                   [](uv_prepare_t *h) { static_cast<ClientServer *>(h->data)->flush_all(); });
  // These only serve the connections; they must not keep the loop alive by themselves.
  uv_unref(reinterpret_cast<uv_handle_t *>(&sweep_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&resync_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&flush_check_));
  uv_unref(reinterpret_cast<uv_handle_t *>(&flush_prepare_));
  flush_handles_open_ = true;
  started_ = true;
  accepting_ = true;
}

void ClientServer::close(uint16_t code, std::string_view reason) {
  accepting_ = false;
  for (Connection *c : std::list<Connection *>(connections_)) {
    if (c->mode == Connection::Mode::kHttp) {
      c->shut();
    } else {
      c->close_with(code, reason);
    }
  }
  if (connections_.empty()) release_flush_handles();
}

void ClientServer::force_close() {
  accepting_ = false;
  for (Connection *c : std::list<Connection *>(connections_)) {
    c->closing = true;
    c->close_handle();
  }
  release_flush_handles();
}

void ClientServer::begin_drain(std::string_view notice_json) {
  accepting_ = false;
  drain_open_ = 0;
  for (Connection *c : connections_) {
    if (c->closing || c->mode == Connection::Mode::kHttp) continue;
    ++drain_open_;
    for (const ChannelRouter::Channel &ch : c->router.channels()) {
      const std::string topic_json = '"' + ch.topic + '"';  // valid topics are json_safe
      if (c->mode == Connection::Mode::kPlain) {
        send(c, text("{\"topic\":" + topic_json + R"(,"event":"system_notice","payload":)" +
                     std::string(notice_json) + "}"));
      } else {
        send(c, text(phoenix::encode_push(ch.join_ref_json, topic_json, "system_notice",
                                          notice_json)));
      }
    }
  }
  if (connections_.empty()) release_flush_handles();
}

void ClientServer::close_batch(unsigned done, unsigned batches, uint16_t code,
                               std::string_view reason) {
  if (batches == 0) return;
  done = std::min(done, batches);
  const std::size_t keep = (drain_open_ * (batches - done) + batches - 1) / batches;
  std::size_t open = 0;
  for (const Connection *c : connections_) {
    open += !c->closing && c->mode != Connection::Mode::kHttp ? 1 : 0;
  }
  // The least recently active first (the back of the list).
  std::vector<Connection *> to_close;
  for (auto it = connections_.rbegin(); it != connections_.rend() && open > keep; ++it) {
    Connection *c = *it;
    if (c->closing || c->mode == Connection::Mode::kHttp) continue;
    to_close.push_back(c);
    --open;
  }
  for (Connection *c : to_close) c->close_with(code, reason);
}

ServerCounters ClientServer::counters() const {
  ServerCounters s;
  for (std::size_t i = 0; i < s.values.size(); ++i) {
    s.values[i] = counters_[i].load(std::memory_order_relaxed);
  }
  return s;
}

void ClientServer::adopt(int fd, const PeerLimit::Key &peer) {
  if (!accepting_) {
    if (options_.peer_limit != nullptr) options_.peer_limit->release(peer);
    ::close(fd);
    return;
  }
  auto *c = new Connection(this);
  c->peer = peer;
  c->accepted_ns = monotonic_ns();
  c->limiter.reset(options_.max_client_messages_per_second,
                   2 * options_.max_client_messages_per_second, monotonic_ms());
  uv_tcp_init(loop_, &c->tcp);
  c->tcp.data = c;
  connections_.push_front(c);
  c->position = connections_.begin();
  bump(Counter::kConnections);
  bump(Counter::kConnectionsTotal);
  if (int rc = uv_tcp_open(&c->tcp, fd); rc != 0) {
    KLOG_WARN("event=adopt_failed error=%s", log::q(uv_strerror(rc)).c_str());
    ::close(fd);
    c->closing = true;
    c->close_handle();
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http::Limits limits;
  limits.max_body = options_.max_request_body;
  c->http_parser = std::make_unique<http::RequestParser>(limits);
  c->last_activity_ms = monotonic_ms();
  uv_read_start(
      c->stream(),
      [](uv_handle_t *h, size_t, uv_buf_t *buf) {
        // One loop, one read at a time: every connection reads into the same buffer, so an
        // idle connection holds none.
        auto *conn = static_cast<Connection *>(h->data);
        buf->base = conn->server->read_buffer_.data();
        buf->len = conn->server->read_buffer_.size();
      },
      [](uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
        auto *conn = static_cast<Connection *>(s->data);
        if (nread < 0) {  // EOF or error: nothing more to say to this peer
          conn->closing = true;
          conn->close_handle();
          return;
        }
        if (nread == 0 || conn->closing) return;
        conn->last_activity_ms = monotonic_ms();
        // Most recently active first: the idle sweep looks only at the other end.
        conn->server->connections_.splice(conn->server->connections_.begin(),
                                          conn->server->connections_, conn->position);
        std::size_t used = 0;
        if (conn->tail.empty()) {
          std::span<char> data(buf->base, static_cast<std::size_t>(nread));
          conn->process(data, &used);
          if (!conn->closing && used < data.size())
            conn->tail.assign(data.data() + used, data.size() - used);
        } else {
          conn->tail.append(buf->base, static_cast<std::size_t>(nread));
          conn->process(std::span<char>(conn->tail.data(), conn->tail.size()), &used);
          conn->tail.erase(0, used);
          if (conn->tail.capacity() > 4096 && conn->tail.size() < 1024) conn->tail.shrink_to_fit();
        }
      });
}

void ClientServer::Connection::process(std::span<char> data, std::size_t *used) {
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
bool ClientServer::Connection::authenticate(const http::Request &req, const ws::HandshakeResult &hs,
                                            Mode want, const std::string &plain_topic) {
  std::string token;
  if (hs.auth_token) {
    token = *hs.auth_token;
  } else {
    req.query_param("token", &token);
  }
  if (!token.empty()) {
    const int64_t now = static_cast<int64_t>(realtime_ns() / 1'000'000'000ULL);
    const TokenError e = server->verifier_->verify(token, now, identity);
    if (e != TokenError::kNone) {
      server->bump(Counter::kAuthRejected);
      refuse_http(403, token_error_message(e));
      return false;
    }
  } else if (!server->options_.allow_anonymous) {
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

namespace {
bool is_loopback(const PeerLimit::Key &k) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(k.data(), kMapped, sizeof kMapped) == 0) return k[12] == 127;  // 127/8
  return std::memcmp(k.data(), kV6Loopback, sizeof kV6Loopback) == 0;
}
}  // namespace

HttpCaller ClientServer::Connection::caller(const http::Request &req) {
  HttpCaller who;
  who.loopback = is_loopback(peer);
  std::string_view auth = req.header("authorization");
  if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) {
    who.has_token = true;
    const int64_t now = static_cast<int64_t>(realtime_ns() / 1'000'000'000ULL);
    who.token_error = server->verifier_->verify(auth.substr(7), now, who.identity);
    if (who.token_error != TokenError::kNone) server->bump(Counter::kAuthRejected);
  } else if (!auth.empty()) {
    who.has_token = true;
    who.token_error = TokenError::kMalformed;
    server->bump(Counter::kAuthRejected);
  }
  return who;
}

void ClientServer::Connection::handle_request() {
  http::Request &req = http_parser->request();
  const std::string &path = req.path;
  Mode want = Mode::kHttp;
  std::string plain_topic;
  if (path == "/ws/websocket" || path == "/ws/websocket/") {
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
  } else if (path.rfind("/ws/reel/", 0) == 0) {
    plain_topic = "reel:" + path.substr(9);
    want = Mode::kPlain;
  } else if (path == "/ws/system") {
    plain_topic = "system";
    want = Mode::kPlain;
  } else if (path.rfind("/ws/user/", 0) == 0) {
    plain_topic = "user:" + path.substr(9);
    want = Mode::kPlain;
  } else {
    std::optional<std::string> routed;
    if (server->options_.rest) routed = server->options_.rest->handle(req, caller(req));
    if (!routed && server->options_.http_routes) routed = server->options_.http_routes(req);
    if (!routed) {
      server->bump(Counter::kHttpErrors);
      routed = http::error_response(404, "no such endpoint: " + path, true);
    }
    server->send(this, shared(std::move(*routed)), Send::kClosing);
    shut();
    return;
  }
  if (want == Mode::kPlain && !valid_topic(plain_topic)) {
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
  options.allowed_origins = server->options_.allowed_origins;
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
  if (identity.authenticated() && server->options_.presence != nullptr) {
    server->options_.presence->connected(identity.user_id, realtime_ns() / 1'000'000);
    online = true;
  }
  if (mode == Mode::kPlain) {
    router.add(plain_topic);
    server->subscribe(plain_topic, this);
  }
}

void ClientServer::Connection::on_text(std::string_view message) {
  server->bump(Counter::kFramesIn);
  if (!within_rate()) return;
  if (mode != Mode::kPhoenix) return;  // plain sockets only listen
  phoenix::ClientMessage m;
  phoenix::ParseError e = server->parser_->parse_text(message, m);
  if (e != phoenix::ParseError::kNone) {
    server->bump(Counter::kClosedProtocol);
    server->log_fault(this, Fault::kProtocol, ws::kCloseUnsupportedData,
                      phoenix::parse_error_message(e));
    close_with(ws::kCloseUnsupportedData, phoenix::parse_error_message(e));
    return;
  }
  handle_phoenix(m);
}

void ClientServer::Connection::on_binary(std::string_view message) {
  server->bump(Counter::kFramesIn);
  if (!within_rate()) return;
  if (mode != Mode::kPhoenix) return;
  phoenix::ClientMessage m;
  phoenix::ParseError e = server->parser_->parse_binary(message, m);
  if (e != phoenix::ParseError::kNone) {
    server->bump(Counter::kClosedProtocol);
    server->log_fault(this, Fault::kProtocol, ws::kCloseUnsupportedData,
                      phoenix::parse_error_message(e));
    close_with(ws::kCloseUnsupportedData, phoenix::parse_error_message(e));
    return;
  }
  handle_phoenix(m);
}

void ClientServer::Connection::handle_phoenix(const phoenix::ClientMessage &m) {
  if (m.event == "phx_join" && !server->check_join_params(this, m)) return;
  RouteOutcome &routed = server->route_outcome_;
  router.route(m, identity, routed);
  if (routed.unauthorized > 0) server->bump(Counter::kAuthRejected);
  if (routed.over_limit > 0) server->bump(Counter::kJoinsOverLimit);
  for (std::string &reply : routed.replies) server->send(this, text(reply));
  if (!routed.subscribe.empty()) server->subscribe(routed.subscribe, this);
  if (!routed.unsubscribe.empty()) {
    server->drop_pending_join(this, routed.unsubscribe);
    server->unsubscribe(routed.unsubscribe, this);
    server->leave_presence(this, routed.unsubscribe);
  }
  if (routed.joined) server->begin_join(this, m);
  if (routed.push) server->handle_push(this, m);
}

bool ClientServer::check_join_params(Connection *c, const phoenix::ClientMessage &m) {
  uint64_t v = 0;
  if (parser_->payload_uint("last_seq", v) == phoenix::Lookup::kWrongType) {
    reply_to(c, m, phoenix::ReplyStatus::kError,
             R"({"reason":"last_seq must be a non-negative integer"})");
    return false;
  }
  if (parser_->payload_uint("epoch", v) == phoenix::Lookup::kWrongType) {
    reply_to(c, m, phoenix::ReplyStatus::kError,
             R"({"reason":"epoch must be a non-negative integer"})");
    return false;
  }
  return true;
}

void ClientServer::begin_join(Connection *c, const phoenix::ClientMessage &m) {
  // A join of a topic whose earlier join is still waiting replaces it (the router has told
  // the earlier one it is closed); what was held is kept.
  PendingJoin *j = c->joining_on(m.topic);
  if (j != nullptr) {
    syncs_.erase(j->sync_id);
    j->answered = false;
    j->history.clear();
    j->next = 0;
  } else {
    c->joining.push_back(std::make_unique<PendingJoin>());
    j = c->joining.back().get();
    j->topic = std::string(m.topic);
  }
  j->join_ref_json = std::string(m.join_ref.json);
  j->ref_json = std::string(m.ref.json);
  j->topic_json = std::string(m.topic_json);
  uint64_t v = 0;
  j->recover = parser_->payload_uint("last_seq", v) == phoenix::Lookup::kFound;
  j->last_seq = j->recover ? v : 0;
  j->epoch = parser_->payload_uint("epoch", v) == phoenix::Lookup::kFound ? v : 0;
  j->sync_id = ++next_sync_id_;
  syncs_[j->sync_id] = c;
  if (sync_) {
    sync_(j->topic, j->sync_id);
  } else {
    on_sync(SyncReply{j->sync_id, 0, 0, 0});  // no dispatcher: an empty stream
  }
}

void ClientServer::on_sync(const SyncReply &r) {
  auto it = syncs_.find(r.id);
  if (it == syncs_.end()) return;  // the connection closed, left, or joined again since
  Connection *c = it->second;
  syncs_.erase(it);
  PendingJoin *j = nullptr;
  for (auto &p : c->joining) {
    if (p->sync_id == r.id) j = p.get();
  }
  if (j == nullptr) return;
  j->synced = r;
  if (!j->recover) {
    finish_join(c, j, std::nullopt);
    return;
  }
  // last_seq 0 (nothing received yet) is the start of whichever stream there is now.
  const uint64_t n = j->last_seq;
  const bool same_stream = n == 0 || j->epoch == 0 || j->epoch == r.epoch;
  if (same_stream && n > r.last_seq && r.epoch != 0) {
    // The client has seen more of this stream than kronopd has numbered: right after a
    // kronopd crash, the records it had fanned out but not logged are being read again, and
    // get the same seqs (where they could not, the topic has a new epoch). Ask again shortly,
    // for a few seconds, before telling the client it is ahead of the stream.
    const uint64_t now = monotonic_ms();
    if (j->ahead_since_ms == 0) j->ahead_since_ms = now;
    if (now - j->ahead_since_ms < 5000) {
      j->sync_id = ++next_sync_id_;
      syncs_[j->sync_id] = c;
      resyncs_.emplace_back(j->sync_id, j->topic);
      if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&resync_)))
        uv_timer_start(&resync_, on_resync, 20, 0);
      return;
    }
  }
  if (!same_stream || n > r.last_seq || r.last_seq - n > options_.max_recovery ||
      (n < r.last_seq && options_.log == nullptr)) {
    finish_join(c, j, false);
  } else if (n == r.last_seq) {
    finish_join(c, j, true);
  } else {
    read_history(c, j, r);
  }
}

void ClientServer::on_resync(uv_timer_t *timer) {
  auto *self = static_cast<ClientServer *>(timer->data);
  std::vector<std::pair<uint64_t, std::string>> due;
  due.swap(self->resyncs_);
  for (auto &[id, topic] : due) {
    if (!self->syncs_.contains(id)) continue;  // closed or left meanwhile
    if (self->sync_) {
      self->sync_(topic, id);
    } else {
      self->on_sync(SyncReply{id, 0, 0, 0});
    }
  }
}

void ClientServer::read_history(Connection *c, PendingJoin *j, const SyncReply &r) {
  auto *h = new HistoryRead;
  h->req.data = h;
  h->server = this;
  h->log = options_.log;
  h->topic = j->topic;
  h->after = j->last_seq;
  h->until = r.last_seq;
  h->epoch = r.epoch;
  h->durable = r.durable;
  h->identity = c->identity;
  h->audience = c->audience();
  h->audience.identity = &h->identity;
  h->chunk_bytes = history_chunk_bytes(options_.max_unsent_bytes);
  j->sync_id = h->sync_id = ++next_sync_id_;
  syncs_[j->sync_id] = c;
  uv_queue_work(
      loop_, &h->req,
      [](uv_work_t *req) {
        auto *read = static_cast<HistoryRead *>(req->data);
        read->complete = read_log_history(*read->log, read->topic, read->after, read->until,
                                          read->epoch, read->durable, read->audience,
                                          read->chunk_bytes, read->chunks, read->messages);
      },
      [](uv_work_t *req, int) {
        std::unique_ptr<HistoryRead> read(static_cast<HistoryRead *>(req->data));
        ClientServer *self = read->server;
        auto it = self->syncs_.find(read->sync_id);
        if (it == self->syncs_.end()) return;  // gone meanwhile
        Connection *conn = it->second;
        self->syncs_.erase(it);
        for (auto &p : conn->joining) {
          if (p->sync_id == read->sync_id) {
            if (read->complete) {
              self->finish_join(conn, p.get(), true, std::move(read->chunks), read->messages);
            } else {
              self->finish_join(conn, p.get(), false);
            }
            return;
          }
        }
      });
}

void ClientServer::finish_join(Connection *c, PendingJoin *j, std::optional<bool> recovered,
                               std::vector<SharedFrame> history, uint64_t messages) {
  const SyncReply &r = j->synced;
  std::string response =
      "{\"epoch\":" + std::to_string(r.epoch) + ",\"last_seq\":" + std::to_string(r.last_seq);
  if (recovered.has_value()) {
    bump(*recovered ? Counter::kRecoveries : Counter::kRecoveriesFailed);
    response += *recovered ? ",\"recovered\":true" : ",\"recovered\":false";
    // What a client that cannot recover starts again from: the reel's counters.
    if (!*recovered && options_.reels != nullptr) {
      if (auto snap = options_.reels->snapshot(j->topic, 0))
        response += ",\"state\":" + counters_json(snap->counters);
    }
  }
  response += '}';
  send(c, text(phoenix::encode_reply(j->join_ref_json, j->ref_json, j->topic_json,
                                     phoenix::ReplyStatus::kOk, response)));
  join_presence(c, j->topic, j->join_ref_json, j->topic_json);
  j->answered = true;
  j->history = std::move(history);
  j->next = 0;
  bump(Counter::kRecoveredMessages, messages);
  pump_history(c, j);
}

void ClientServer::pump_history(Connection *c, PendingJoin *j) {
  // History may be far more than --max-unsent-bytes: it goes out as the socket drains,
  // half the bound at a time, the rest when libuv's write completes (resume_history).
  const std::size_t room = std::max<std::size_t>(options_.max_unsent_bytes / 2, 1);
  while (j->next < j->history.size()) {
    if (c->closing) return;
    if (c->out_bytes + c->tcp.write_queue_size >= room) {
      if (c->out_bytes > 0) flush(c);  // the kernel takes what it can, libuv queues the rest
      if (c->closing || c->handle_closed) return;
      if (c->tcp.write_queue_size >= room) return;  // a write is in flight: resumed after it
      continue;
    }
    send(c, j->history[j->next++]);
  }
  // Held live messages up to last_seq were numbered before the join was in force: the
  // client has them from history, or did not ask for them. Ephemeral ones (seq 0) go out.
  const uint64_t last = j->synced.last_seq;
  for (const MessagePtr &m : j->held) {
    if (m->seq() == 0 || m->seq() > last) deliver_to(c, *m);
  }
  std::erase_if(c->joining, [j](const auto &p) { return p.get() == j; });
}

void ClientServer::resume_history(Connection *c) {
  std::vector<PendingJoin *> sending;
  for (auto &j : c->joining) {
    if (j->answered) sending.push_back(j.get());
  }
  for (PendingJoin *j : sending) pump_history(c, j);
}

void ClientServer::drop_pending_join(Connection *c, std::string_view topic) {
  if (PendingJoin *j = c->joining_on(topic)) {
    syncs_.erase(j->sync_id);
    std::erase_if(c->joining, [j](const auto &p) { return p.get() == j; });
  }
}

void ClientServer::join_presence(Connection *c, const std::string &topic,
                                 std::string_view join_ref_json, std::string_view topic_json) {
  if (options_.presence == nullptr || !topic.starts_with("reel:")) return;
  const bool tracked = std::any_of(c->presences.begin(), c->presences.end(),
                                   [&](const auto &p) { return p.first == topic; });
  if (c->identity.authenticated() && !tracked) {
    c->presences.emplace_back(
        topic, options_.presence->track(topic, c->identity.user_id, realtime_ns() / 1'000'000));
  }
  // The state as of the last diff; this socket is subscribed already, so the next diff
  // (which carries this join) reaches it. Pushed with the join's join_ref, as Phoenix's
  // `push(socket, "presence_state", ...)` does, and as JSON text whatever the socket's format:
  // phoenix.js's Presence reads JSON.
  auto state = options_.presence->state(topic);
  send(c, text(phoenix::encode_push(join_ref_json, topic_json, "presence_state", *state)));
}

void ClientServer::leave_presence(Connection *c, const std::string &topic) {
  if (options_.presence == nullptr) return;
  for (auto it = c->presences.begin(); it != c->presences.end(); ++it) {
    if (it->first == topic) {
      options_.presence->untrack(topic, c->identity.user_id, it->second);
      c->presences.erase(it);
      return;
    }
  }
}

void ClientServer::reply_to(Connection *c, const phoenix::ClientMessage &m,
                            phoenix::ReplyStatus status, std::string_view response) {
  send(c, text(phoenix::encode_reply(m.join_ref.json, m.ref.json, m.topic_json, status, response)));
}

void ClientServer::handle_push(Connection *c, const phoenix::ClientMessage &m) {
  auto reply = [&](phoenix::ReplyStatus st, std::string_view response) {
    reply_to(c, m, st, response);
  };
  if (m.topic.starts_with("reel:") &&
      (m.event == "like" || m.event == "comment" || m.event == "share")) {
    handle_interaction(c, m);
    return;
  }
  if (m.topic.starts_with("user:") && m.event == "update_presence" && options_.rest != nullptr) {
    // The user's own topic (only that user can have joined it).
    StatusChange change;
    BodyError e = parse_status_change("application/json", m.payload, &change);
    if (!e.ok()) {
      reply(phoenix::ReplyStatus::kError, R"({"reason":")" + e.message + R"("})");
      return;
    }
    reply(phoenix::ReplyStatus::kOk, options_.rest->apply_status(c->identity.user_id, change));
    return;
  }
  reply(phoenix::ReplyStatus::kError, R"({"reason":"unhandled event"})");
}

// A like, comment or share: checked, counted against the user's rate, and published into the
// rings through the daemon's producer, so it is numbered (and counted, see ReelState) like
// any record; the viewers, this socket included, get it as an `interaction` broadcast. The
// reply says it was accepted, with its id.
void ClientServer::handle_interaction(Connection *c, const phoenix::ClientMessage &m) {
  auto reply = [&](phoenix::ReplyStatus st, std::string_view response) {
    reply_to(c, m, st, response);
  };
  // Reasons are the daemon's own sentences (no quotes or backslashes): they go between quotes
  // as they are.
  auto refuse = [&](Counter counter, const std::string &reason) {
    bump(counter);
    reply(phoenix::ReplyStatus::kError, R"({"reason":")" + reason + R"("})");
  };
  if (options_.publisher == nullptr) {
    reply(phoenix::ReplyStatus::kError, R"({"reason":"unhandled event"})");
    return;
  }
  if (!c->identity.authenticated()) {
    refuse(Counter::kInteractionsInvalid, "authentication required: connect with a token");
    return;
  }
  kronop::v1::Envelope e;
  BodyError error =
      parse_interaction(m.event, m.payload, options_.max_comment_bytes, e.mutable_interaction());
  if (!error.ok()) {
    refuse(Counter::kInteractionsInvalid, error.message);
    return;
  }
  if (options_.interaction_limiter != nullptr &&
      !options_.interaction_limiter->allow(c->identity.user_id, monotonic_ms())) {
    refuse(Counter::kInteractionsRateLimited, "rate limited: too many interactions");
    return;
  }
  const uint64_t now_ns = realtime_ns();
  auto *in = e.mutable_interaction();
  char id[32];
  std::snprintf(id, sizeof id, "%016llx%04x", static_cast<unsigned long long>(now_ns),
                static_cast<unsigned>(++interaction_ids_ & 0xffff));
  in->set_id(id);
  in->set_reel_id(reel_number(m.topic));
  in->set_user_id(c->identity.user_id);
  in->set_timestamp(static_cast<int64_t>(now_ns / 1'000'000));
  e.set_topic(std::string(m.topic));
  e.set_event("interaction");
  e.set_publish_time_ns(now_ns);
  const int rc = options_.publisher->publish(e);
  if (rc != KRONOP_OK) {
    reply(phoenix::ReplyStatus::kError, R"({"reason":"busy: try again"})");
    return;
  }
  bump(Counter::kInteractions);
  reply(phoenix::ReplyStatus::kOk, std::string(R"({"id":")") + id + R"("})");
}

namespace {
Counter channel_counter(std::string_view topic) {
  if (topic.starts_with("reel:")) return Counter::kChannelsReel;
  if (topic.starts_with("user:")) return Counter::kChannelsUser;
  return Counter::kChannelsSystem;
}
}  // namespace

void ClientServer::subscribe(const std::string &topic, Connection *c) {
  auto &subs = subscribers_[topic];
  subs.push_back(c);
  bump(channel_counter(topic));
  if (subs.size() == 1 && interest_) interest_(topic, true);
}

void ClientServer::unsubscribe(const std::string &topic, Connection *c) {
  auto it = subscribers_.find(topic);
  if (it == subscribers_.end()) return;
  auto &v = it->second;
  auto pos = std::find(v.begin(), v.end(), c);
  if (pos != v.end()) {
    *pos = v.back();  // order among subscribers does not matter
    v.pop_back();
    drop(channel_counter(topic));
  }
  if (v.empty()) {
    subscribers_.erase(it);
    if (interest_) interest_(topic, false);
  }
}

void ClientServer::forget(Connection *c) {
  for (const auto &j : c->joining) syncs_.erase(j->sync_id);
  c->joining.clear();
  for (const auto &ch : c->router.channels()) unsubscribe(ch.topic, c);
  c->router.clear();
  if (options_.presence != nullptr) {
    for (const auto &[topic, ref] : c->presences) {
      options_.presence->untrack(topic, c->identity.user_id, ref);
    }
    c->presences.clear();
    if (c->online) options_.presence->disconnected(c->identity.user_id, realtime_ns() / 1'000'000);
  }
  if (c->dirty) std::erase(dirty_, c);
  if (c->lingering) std::erase(lingering_, c);
  connections_.erase(c->position);
  if (options_.peer_limit != nullptr) options_.peer_limit->release(c->peer);
  drop(Counter::kConnections);
  if (!accepting_ && connections_.empty()) release_flush_handles();
}

void ClientServer::mark_dirty(Connection *c) {
  if (c->dirty || c->handle_closed) return;
  c->dirty = true;
  dirty_.push_back(c);
}

void ClientServer::send(Connection *c, SharedFrame frame, Send how) {
  if (c->handle_closed || c->shutdown_sent) return;
  auto unsent = [&] { return c->out_bytes + c->tcp.write_queue_size + frame->size(); };
  if (how != Send::kClosing && unsent() > options_.max_unsent_bytes && c->out_bytes > 0) {
    // A burst within one loop turn: give the kernel what it takes before judging the client
    // by what is left.
    flush(c);
    if (c->handle_closed || c->shutdown_sent) return;
  }
  if (how != Send::kClosing && unsent() > options_.max_unsent_bytes) {
    if (how == Send::kDroppable) {
      bump(Counter::kDroppedLow);
      return;
    }
    // Make room by dropping the low-priority frames still queued here; what libuv already
    // holds is past recall.
    std::size_t dropped = 0;
    std::erase_if(c->out, [&](const Connection::Outgoing &o) {
      if (!o.droppable) return false;
      c->out_bytes -= o.frame->size();
      ++dropped;
      return true;
    });
    bump(Counter::kDroppedLow, dropped);
    if (unsent() > options_.max_unsent_bytes) {
      // The client does not keep up, and this message may not be lost silently: close.
      bump(Counter::kClosedSlow);
      log_fault(c, Fault::kSlow, ws::kCloseTryAgainLater, "slow consumer: too much unread data");
      c->out.clear();
      c->out_bytes = 0;
      c->close_with(ws::kCloseTryAgainLater, "slow consumer: too much unread data");
      return;
    }
  }
  c->out_bytes += frame->size();
  c->out.push_back({std::move(frame), how == Send::kDroppable});
  mark_dirty(c);
}

namespace {
// A uv_write of frames that uv_try_write could not finish: owns them until written.
struct WriteRequest {
  uv_write_t req{};
  std::vector<SharedFrame> frames;
};
}  // namespace

void ClientServer::flush(Connection *c) {
  if (c->handle_closed) {
    c->out.clear();
    c->out_bytes = 0;
    return;
  }
  const std::size_t n = c->out.size();
  if (n > 0 && !c->shutdown_sent) {
    bufs_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string &f = *c->out[i].frame;
      bufs_[i] = uv_buf_init(const_cast<char *>(f.data()), static_cast<unsigned>(f.size()));
    }
    bump(Counter::kFramesOut, n);
    bump(Counter::kBytesOut, c->out_bytes);
    std::size_t first = 0;
    bool failed = false;
    if (c->tcp.write_queue_size == 0) {
      // Straight into the socket while the kernel has room: no request, no copy.
      bump(Counter::kWrites);
      int written = uv_try_write(c->stream(), bufs_.data(), static_cast<unsigned>(n));
      if (written > 0) {
        auto left = static_cast<std::size_t>(written);
        while (first < n && left >= bufs_[first].len) left -= bufs_[first++].len;
        if (first < n && left > 0) {
          bufs_[first].base += left;
          bufs_[first].len -= left;
        }
      } else if (written != UV_EAGAIN) {
        failed = true;
      }
    }
    if (!failed && first < n) {
      auto *w = new WriteRequest;
      w->req.data = w;
      w->frames.reserve(n - first);
      for (std::size_t i = first; i < n; ++i) w->frames.push_back(std::move(c->out[i].frame));
      bump(Counter::kWrites);
      ++c->writes_in_flight;
      int rc =
          uv_write(&w->req, c->stream(), &bufs_[first], static_cast<unsigned>(n - first),
                   [](uv_write_t *req, int status) {
                     auto *wr = static_cast<WriteRequest *>(req->data);
                     auto *conn = static_cast<Connection *>(req->handle->data);
                     delete wr;
                     --conn->writes_in_flight;
                     if (status < 0) {
                       conn->closing = true;
                       conn->close_handle();
                     } else if (conn->closing && conn->writes_in_flight == 0 && conn->out.empty()) {
                       conn->half_close();
                     } else if (!conn->joining.empty()) {
                       conn->server->resume_history(conn);
                     }
                   });
      if (rc != 0) {
        --c->writes_in_flight;
        delete w;
        failed = true;
      }
    }
    c->out.clear();
    c->out_bytes = 0;
    if (c->out.capacity() > 64) c->out.shrink_to_fit();
    if (failed) {  // the peer is gone: nothing more can be said to it
      c->closing = true;
      c->close_handle();
      return;
    }
  }
  if (c->closing && c->writes_in_flight == 0) c->half_close();
}

void ClientServer::flush_all() {
  while (!dirty_.empty()) {
    flushing_.swap(dirty_);
    // A connection is in dirty_ exactly while its flag is set (forget() relies on it), even
    // after send() flushed it early.
    for (Connection *c : flushing_) {
      c->dirty = false;
      flush(c);
    }
    flushing_.clear();
  }
}

void ClientServer::release_flush_handles() {
  if (!flush_handles_open_) return;
  flush_handles_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&sweep_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&resync_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&flush_check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&flush_prepare_), nullptr);
}

void ClientServer::fan_out(const std::vector<MessagePtr> &messages) {
  bump(Counter::kMessages, messages.size());
  for (const MessagePtr &m : messages) {
    auto it = subscribers_.find(m->topic());
    if (it == subscribers_.end()) continue;  // the last subscriber left since
    // Sending never closes a handle at once (a slow consumer is shut, and closed later), so
    // the subscriber list stays as it is during this loop.
    for (Connection *c : it->second) {
      if (!c->joining.empty()) {
        if (PendingJoin *j = c->joining_on(m->topic())) {
          // Held until the join is answered; a join that waits while more arrive than a
          // recovery may send is given up on, as a slow consumer.
          if (j->held.size() >= options_.max_recovery && !c->closing) {
            bump(Counter::kClosedSlow);
            log_fault(c, Fault::kSlow, ws::kCloseTryAgainLater, "too far behind");
            c->close_with(ws::kCloseTryAgainLater, "too far behind");
          }
          j->held.push_back(m);
          continue;
        }
      }
      deliver_to(c, *m);
    }
    const uint64_t now = realtime_ns();
    delivery_ns_.record(now > m->publish_time_ns() ? now - m->publish_time_ns() : 0);
  }
}

void ClientServer::deliver_to(Connection *c, const Message &m) {
  if (c->closing) return;
  if (const SharedFrame *f = frame_for(m, c->audience())) {
    send(c, *f, m.priority() == KRONOP_PRIORITY_LOW ? Send::kDroppable : Send::kNormal);
  }
}

void ClientServer::on_sweep(uv_timer_t *timer) {
  auto *self = static_cast<ClientServer *>(timer->data);
  const uint64_t now = monotonic_ms();
  // Closing connections whose peer never closed its side: cut after 2 s.
  for (Connection *c : std::vector<Connection *>(self->lingering_)) {
    if (now - c->closing_since_ms >= 2000) c->close_handle();
  }
  // connections_ is ordered by last activity, most recent first: walk from the least recent
  // end and stop at the first connection still within the timeout, so an idle sweep costs
  // nothing per connection.
  for (auto it = self->connections_.end(); it != self->connections_.begin();) {
    Connection *c = *--it;
    if (now - c->last_activity_ms < self->options_.idle_timeout_ms) break;
    if (c->closing) continue;
    self->bump(Counter::kClosedIdle);
    if (c->mode == Connection::Mode::kHttp) {
      c->shut();
    } else {
      c->close_with(ws::kCloseNormal, "idle timeout");
    }
  }
}

std::vector<ClientServer::ConnectionInfo> ClientServer::describe_connections(
    const std::string &topic) const {
  std::vector<ClientServer::ConnectionInfo> out;
  for (const Connection *c : connections_) {
    if (c->handle_closed) continue;  // gone; forgotten when libuv has closed it
    const auto &channels = c->router.channels();
    if (!topic.empty() && std::none_of(channels.begin(), channels.end(),
                                       [&](const auto &ch) { return ch.topic == topic; })) {
      continue;
    }
    ConnectionInfo &i = out.emplace_back();
    i.peer = peer_name(&c->tcp);
    i.user_id = c->identity.user_id;
    switch (c->mode) {
      case Connection::Mode::kHttp:
        i.mode = "http";
        break;
      case Connection::Mode::kPhoenix:
        i.mode = "phoenix";
        break;
      case Connection::Mode::kPlain:
        i.mode = "plain";
        break;
    }
    i.protobuf = c->protobuf;
    for (const auto &ch : channels) i.topics.push_back(ch.topic);
    i.unsent_bytes = c->out_bytes + c->tcp.write_queue_size;
    i.accepted_ns = c->accepted_ns;
  }
  return out;
}

}  // namespace kronop::daemon
