// The per-loop composition; see server.h. The parts are in their own files; what is here
// concerns every connection at once: adopt, close, drain, the sweep and the operator's view.
#include "server.h"

#include <unistd.h>

#include <algorithm>

#include "kronop/clock.h"
#include "log.h"
#include "websocket.h"

namespace kronop::daemon {
namespace {
constexpr std::size_t kReadBuffer = 64 * 1024;

// The peer's address_name(); empty when the socket has no peer any more.
std::string peer_name(const uv_tcp_t *tcp) {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr *>(&addr), &len) != 0) return {};
  return address_name(addr);
}
}  // namespace

ClientServer::ClientServer(uv_loop_t *loop, ServerOptions options, InterestCallback interest,
                           SyncCallback sync, LoopPost post)
    : loop_(loop),
      options_(std::move(options)),
      writes_(*this),
      subscribers_(*this, std::move(interest)),
      joins_(*this, std::move(sync), post),
      pushes_(*this),
      post_(std::move(post)),
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
  options_.header_timeout_ms = options.header_timeout_ms;
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
  // It only serves the connections; it must not keep the loop alive by itself.
  uv_unref(reinterpret_cast<uv_handle_t *>(&sweep_));
  writes_.start(loop_);
  joins_.start(loop_);
  handles_open_ = true;
  accepting_ = true;
}

void ClientServer::release_handles() {
  if (!handles_open_) return;
  handles_open_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&sweep_), nullptr);
  writes_.stop();
  joins_.stop();
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
  if (connections_.empty()) release_handles();
}

void ClientServer::force_close() {
  accepting_ = false;
  for (Connection *c : std::list<Connection *>(connections_)) {
    c->closing = true;
    c->close_handle();
  }
  release_handles();
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
        send(c, std::make_shared<const std::string>(ws::text_frame(
                    "{\"topic\":" + topic_json + R"(,"event":"system_notice","payload":)" +
                    std::string(notice_json) + "}")));
      } else {
        send(c, std::make_shared<const std::string>(ws::text_frame(phoenix::encode_push(
                    ch.join_ref_json, topic_json, "system_notice", notice_json))));
      }
    }
  }
  if (connections_.empty()) release_handles();
}

void ClientServer::reset_stream(const std::string &topic) {
  const std::vector<Connection *> *of = subscribers_.of(topic);
  if (of == nullptr) return;
  const std::vector<Connection *> subscribers = *of;  // leaving edits the table
  const std::string topic_json = '"' + topic + '"';   // valid topics are json_safe
  for (Connection *c : subscribers) {
    if (c->mode != Connection::Mode::kPhoenix) continue;
    const std::optional<std::string> join_ref = c->router.drop(topic);
    if (!join_ref) continue;
    send(c, std::make_shared<const std::string>(
                ws::text_frame(phoenix::encode_error(*join_ref, topic_json))));
    joins_.drop(c, topic);
    subscribers_.unsubscribe(topic, c);
    joins_.leave_presence(c, topic);
  }
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
  auto owned = std::make_unique<Connection>(this);
  Connection *c = owned.get();
  c->peer = peer;
  c->accepted_ns = monotonic_ns();
  c->limiter.reset(options_.max_client_messages_per_second,
                   2 * options_.max_client_messages_per_second, monotonic_ms());
  uv_tcp_init(loop_, &c->tcp);
  // From here the handle owns the connection (see connection.h).
  c->tcp.data = owned.release();
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
  begin_stage(c, Connection::Stage::kRequest);
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
        // A request waiting for its answer reads nothing more (its response closes it).
        if (nread == 0 || conn->closing || conn->awaiting_response) return;
        // Not activity yet: only a complete request or message is (Connection::touch).
        conn->read_ms = monotonic_ms();
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

void ClientServer::touched(Connection *c) {
  // Most recently active first: the idle sweep looks only at the other end.
  connections_.splice(connections_.begin(), connections_, c->position);
}

void ClientServer::begin_stage(Connection *c, Connection::Stage stage) {
  end_stage(c);
  if (stage == Connection::Stage::kNone) return;
  auto &list = staged_[static_cast<std::size_t>(stage) - 1];
  c->stage = stage;
  c->stage_since_ms = monotonic_ms();
  c->stage_position = list.insert(list.end(), c);
}

void ClientServer::end_stage(Connection *c) {
  if (c->stage == Connection::Stage::kNone) return;
  staged_[static_cast<std::size_t>(c->stage) - 1].erase(c->stage_position);
  c->stage = Connection::Stage::kNone;
}

// Connections past their stage's deadline. A request that is not complete gets 408
// (RFC 9110 §15.5.9: the server would rather close an unused connection), whatever part of
// it is late: the header timeout covers the body too, which --max-request-body keeps small,
// so a slow body is the same attack as slow headers. A Phoenix socket with no join gets
// 1008: it holds a descriptor for nothing.
void ClientServer::sweep_stages(uint64_t now) {
  for (auto &list : staged_) {
    while (!list.empty()) {
      Connection *c = list.front();
      if (now - c->stage_since_ms < options_.header_timeout_ms) break;
      const Connection::Stage stage = c->stage;
      end_stage(c);
      if (c->closing) continue;
      if (stage == Connection::Stage::kRequest) {
        bump(Counter::kHttpErrors);
        log_fault(c, Fault::kHttp, 408, "request not complete within --header-timeout-ms");
        send(c,
             std::make_shared<const std::string>(http::error_response(
                 408, "request not complete within --header-timeout-ms", true)),
             Send::kClosing);
        c->shut();
      } else {
        bump(Counter::kClosedIdle);
        log_fault(c, Fault::kProtocol, ws::kClosePolicyViolation,
                  "no channel joined within --header-timeout-ms");
        c->close_with(ws::kClosePolicyViolation, "no channel joined within --header-timeout-ms");
      }
    }
  }
}

void ClientServer::lingering(Connection *c) { lingering_.push_back(c); }

void ClientServer::forget(Connection *c) {
  end_stage(c);
  joins_.forget(c);
  for (const auto &ch : c->router.channels()) subscribers_.unsubscribe(ch.topic, c);
  c->router.clear();
  if (options_.presence != nullptr) {
    for (const auto &[topic, ref] : c->presences) {
      options_.presence->untrack(topic, c->identity.user_id, ref);
    }
    c->presences.clear();
    if (c->online) options_.presence->disconnected(c->identity.user_id, realtime_ns() / 1'000'000);
  }
  writes_.forget(c);
  if (c->lingering) std::erase(lingering_, c);
  connections_.erase(c->position);
  if (options_.peer_limit != nullptr) options_.peer_limit->release(c->peer);
  drop(Counter::kConnections);
  if (!accepting_ && connections_.empty()) release_handles();
}

void ClientServer::on_sweep(uv_timer_t *timer) {
  auto *self = static_cast<ClientServer *>(timer->data);
  const uint64_t now = monotonic_ms();
  // Closing connections whose peer never closed its side: cut after 2 s.
  for (Connection *c : std::vector<Connection *>(self->lingering_)) {
    if (now - c->closing_since_ms >= 2000) c->close_handle();
  }
  self->sweep_stages(now);
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
