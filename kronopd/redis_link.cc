// The link's life: kIdle -> kConnecting (resolve, connect) -> kHandshake (AUTH, SELECT,
// PING) -> kUp; any failure -> kBackoff -> kConnecting ...; close() -> kClosing -> kClosed.
// One repeating timer serves every deadline: the connect's, the oldest command's, the
// subscriber's PING, and the backoff's end.
#include "redis_link.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <random>

namespace kronop::daemon {

namespace {
constexpr uint64_t kTickMs = 50;
}  // namespace

// The connection's handles and requests, which must outlive every callback libuv still owes
// them: a lost connection's Socket is orphaned (link = nullptr) and freed in its close
// callback, after its cancelled requests have been called back.
struct RedisLink::Socket {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  };
  uv_getaddrinfo_t resolve{};
  uv_connect_t connect{};
  uv_write_t write{};
  RedisLink *link = nullptr;
  bool handle_open = false;
  bool resolving = false;
  std::string read_buffer;

  explicit Socket(RedisLink *owner) : link(owner) {
    std::memset(&tcp, 0, std::max(sizeof(tcp), sizeof(pipe)));
  }

  // Hands the socket to libuv to close and free.
  static void discard(std::unique_ptr<Socket> s) {
    Socket *raw = s.release();
    raw->link = nullptr;
    if (raw->resolving) uv_cancel(reinterpret_cast<uv_req_t *>(&raw->resolve));
    if (!raw->handle_open) {
      // Only a pending resolve may still call back; it frees the socket then.
      if (!raw->resolving) delete raw;
      return;
    }
    raw->handle.data = raw;
    uv_close(&raw->handle, [](uv_handle_t *h) { delete static_cast<Socket *>(h->data); });
  }
};

RedisLink::RedisLink(uv_loop_t *loop, RedisLinkOptions options)
    : loop_(loop), options_(std::move(options)) {}

RedisLink::~RedisLink() = default;

void RedisLink::start() {
  if (state_ != State::kIdle) return;
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  timer_open_ = true;
  uv_timer_start(
      &timer_, [](uv_timer_t *t) { static_cast<RedisLink *>(t->data)->on_tick(); }, kTickMs,
      kTickMs);
  connect();
}

void RedisLink::connect() {
  state_ = State::kConnecting;
  connect_deadline_ms_ = uv_now(loop_) + options_.connect_timeout_ms;
  reader_ = make_redis_reader();
  reply_bytes_ = 0;
  output_.clear();
  socket_ = std::make_unique<Socket>(this);
  Socket *s = socket_.get();
  s->connect.data = s;
  if (options_.endpoint.unix_socket) {
    uv_pipe_init(loop_, &s->pipe, 0);
    s->handle_open = true;
    uv_pipe_connect(&s->connect, &s->pipe, options_.endpoint.path.c_str(),
                    [](uv_connect_t *req, int status) {
                      auto *sock = static_cast<Socket *>(req->data);
                      if (sock->link != nullptr) sock->link->on_connected(status);
                    });
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  s->resolve.data = s;
  s->resolving = true;
  const std::string port = std::to_string(options_.endpoint.port);
  const int rc = uv_getaddrinfo(
      loop_, &s->resolve,
      [](uv_getaddrinfo_t *req, int status, addrinfo *res) {
        auto *sock = static_cast<Socket *>(req->data);
        sock->resolving = false;
        RedisLink *link = sock->link;
        if (link == nullptr) {
          uv_freeaddrinfo(res);
          if (!sock->handle_open) delete sock;
          return;
        }
        if (status < 0 || res == nullptr) {
          uv_freeaddrinfo(res);
          link->lose("cannot resolve " + link->options_.endpoint.host + ": " +
                     uv_strerror(status < 0 ? status : UV_EAI_NONAME));
          return;
        }
        uv_tcp_init(link->loop_, &sock->tcp);
        sock->handle_open = true;
        uv_tcp_nodelay(&sock->tcp, 1);
        const int c = uv_tcp_connect(&sock->connect, &sock->tcp, res->ai_addr,
                                     [](uv_connect_t *creq, int st) {
                                       auto *so = static_cast<Socket *>(creq->data);
                                       if (so->link != nullptr) so->link->on_connected(st);
                                     });
        uv_freeaddrinfo(res);
        if (c < 0) link->on_connected(c);
      },
      options_.endpoint.host.c_str(), port.c_str(), &hints);
  if (rc < 0) {
    s->resolving = false;
    lose("cannot resolve " + options_.endpoint.host + ": " + uv_strerror(rc));
  }
}

void RedisLink::on_connected(int status) {
  if (status < 0) {
    lose(std::string("cannot connect to ") + options_.endpoint.display() + ": " +
         uv_strerror(status));
    return;
  }
  socket_->stream.data = socket_.get();
  uv_read_start(
      &socket_->stream,
      [](uv_handle_t *h, std::size_t suggested, uv_buf_t *buf) {
        auto *sock = static_cast<Socket *>(h->data);
        sock->read_buffer.resize(std::max<std::size_t>(suggested, 64 * 1024));
        *buf = uv_buf_init(sock->read_buffer.data(), sock->read_buffer.size());
      },
      [](uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
        auto *sock = static_cast<Socket *>(st->data);
        if (sock->link != nullptr) sock->link->on_read(n, buf);
      });
  begin_handshake();
}

void RedisLink::begin_handshake() {
  state_ = State::kHandshake;
  const RedisEndpoint &e = options_.endpoint;
  auto step = [this](const char *what) {
    return [this, what](const redisReply *reply, const Error *error) {
      if (error != nullptr) return;  // the link is already being lost
      if (reply->type == REDIS_REPLY_ERROR) {
        lose(std::string(what) + " refused: " + describe_reply(*reply));
      }
    };
  };
  if (!e.password.empty()) {
    if (e.user.empty()) {
      append({"AUTH", e.password});
    } else {
      append({"AUTH", e.user, e.password});
    }
    waiting_.push_back({step("AUTH"), uv_now(loop_) + options_.connect_timeout_ms, true});
  }
  if (e.db != 0) {
    const std::string db = std::to_string(e.db);
    append({"SELECT", db});
    waiting_.push_back({step("SELECT"), uv_now(loop_) + options_.connect_timeout_ms, true});
  }
  append({"PING"});
  waiting_.push_back({[this](const redisReply *reply, const Error *error) {
                        if (error != nullptr) return;
                        if (reply->type == REDIS_REPLY_ERROR) {
                          lose("PING refused: " + describe_reply(*reply));
                          return;
                        }
                        if (!reply_is_status(*reply, "PONG")) {
                          lose("the peer is not a Redis server (PING answered " +
                               describe_reply(*reply) + ")");
                          return;
                        }
                        state_ = State::kUp;
                        backoff_ms_ = 0;
                        last_error_.clear();
                        ++counters_.connects;
                        next_ping_ms_ = uv_now(loop_) + options_.ping_interval_ms;
                        pong_deadline_ms_ = 0;
                        if (on_state_) on_state_(true, std::string());
                      },
                      uv_now(loop_) + options_.connect_timeout_ms, true});
  write_pending();
}

void RedisLink::append(const std::vector<std::string_view> &argv) {
  std::vector<const char *> args;
  std::vector<std::size_t> lens;
  args.reserve(argv.size());
  lens.reserve(argv.size());
  for (std::string_view a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  char *cmd = nullptr;
  const int len =
      redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), args.data(), lens.data());
  if (len < 0 || cmd == nullptr) throw std::bad_alloc();
  output_.append(cmd, static_cast<std::size_t>(len));
  redisFreeCommand(cmd);
  ++counters_.commands;
}

void RedisLink::send(const std::vector<std::string_view> &argv, ReplyFn done) {
  const bool subscriber = options_.kind == RedisLinkOptions::Kind::kSubscriber;
  Error refused;
  if (state_ != State::kUp) {
    refused = Error{-ENOTCONN, "Redis link down: " + last_error_};
  } else if (output_.size() > options_.max_output_bytes) {
    refused =
        Error{-ENOBUFS, "Redis link: more than " + std::to_string(options_.max_output_bytes >> 20) +
                            " MiB of commands not yet written"};
  } else if (!subscriber && waiting_.size() >= options_.max_waiting) {
    refused = Error{-ENOBUFS, "Redis link: " + std::to_string(options_.max_waiting) +
                                  " commands already wait for replies"};
  }
  if (refused.code != 0) {
    if (done) done(nullptr, &refused);
    return;
  }
  append(argv);
  if (!subscriber)
    waiting_.push_back({std::move(done), uv_now(loop_) + options_.command_timeout_ms});
  write_pending();
}

void RedisLink::write_pending() {
  if (write_in_flight_ || output_.empty() || socket_ == nullptr) return;
  if (state_ != State::kHandshake && state_ != State::kUp) return;
  writing_.swap(output_);
  output_.clear();
  write_in_flight_ = true;
  socket_->write.data = socket_.get();
  uv_buf_t buf = uv_buf_init(writing_.data(), writing_.size());
  const int rc = uv_write(&socket_->write, &socket_->stream, &buf, 1, [](uv_write_t *req, int st) {
    auto *sock = static_cast<Socket *>(req->data);
    if (sock->link != nullptr) sock->link->on_written(st);
  });
  if (rc < 0) {
    write_in_flight_ = false;
    lose(std::string("cannot write to Redis: ") + uv_strerror(rc));
  }
}

void RedisLink::on_written(int status) {
  write_in_flight_ = false;
  writing_.clear();
  if (status < 0) {
    lose(std::string("cannot write to Redis: ") + uv_strerror(status));
    return;
  }
  write_pending();
}

void RedisLink::on_read(ssize_t n, const uv_buf_t *buf) {
  if (n == 0) return;
  if (n < 0) {
    lose(n == UV_EOF ? "Redis closed the connection"
                     : std::string("cannot read from Redis: ") + uv_strerror(static_cast<int>(n)));
    return;
  }
  if (redisReaderFeed(reader_.get(), buf->base, static_cast<std::size_t>(n)) != REDIS_OK) {
    lose("cannot buffer what Redis sent");
    return;
  }
  reply_bytes_ += static_cast<std::size_t>(n);
  // Replies are taken while the link stays connected: a callback may lose or close it.
  Socket *current = socket_.get();
  while (socket_.get() == current && current != nullptr) {
    auto next = next_redis_reply(*reader_);
    if (!next.ok()) {
      lose(next.error().message + " (from " + options_.endpoint.display() + ")");
      return;
    }
    RedisReplyPtr reply = std::move(next).value();
    if (!reply) break;
    reply_bytes_ = 0;
    ++counters_.replies;
    take_reply(*reply);
  }
  if (socket_.get() == current && reply_bytes_ > options_.max_reply_bytes) {
    lose("a Redis reply longer than " + std::to_string(options_.max_reply_bytes >> 20) + " MiB");
  }
}

void RedisLink::take_reply(const redisReply &reply) {
  const bool subscriber = options_.kind == RedisLinkOptions::Kind::kSubscriber;
  if (!waiting_.empty() && (!subscriber || waiting_.front().handshake)) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    if (w.done) w.done(&reply, nullptr);
    return;
  }
  if (!subscriber) {
    lose("Redis sent a reply to no command (" + describe_reply(reply) + ")");
    return;
  }
  // Subscriber: PING's answer is +PONG while nothing is subscribed, a "pong" push after.
  const Push p = classify_push(reply);
  if (p.kind == PushKind::kPong || reply_is_status(reply, "PONG")) {
    pong_deadline_ms_ = 0;
    return;
  }
  if (on_push_) on_push_(reply);
}

void RedisLink::on_tick() {
  const uint64_t now = uv_now(loop_);
  switch (state_) {
    case State::kConnecting:
    case State::kHandshake:
      if (now >= connect_deadline_ms_) {
        lose("no connection to " + options_.endpoint.display() + " within " +
             std::to_string(options_.connect_timeout_ms) + " ms");
      }
      return;
    case State::kBackoff:
      if (now >= next_connect_ms_) connect();
      return;
    case State::kUp:
      if (!waiting_.empty() && now >= waiting_.front().deadline_ms) {
        ++counters_.timeouts;
        lose("no reply from Redis within " + std::to_string(options_.command_timeout_ms) + " ms");
        return;
      }
      if (options_.kind == RedisLinkOptions::Kind::kSubscriber) {
        if (pong_deadline_ms_ != 0 && now >= pong_deadline_ms_) {
          ++counters_.timeouts;
          lose("Redis did not answer PING within " + std::to_string(options_.command_timeout_ms) +
               " ms");
          return;
        }
        if (pong_deadline_ms_ == 0 && now >= next_ping_ms_) {
          append({"PING"});
          pong_deadline_ms_ = now + options_.command_timeout_ms;
          next_ping_ms_ = now + options_.ping_interval_ms;
          write_pending();
        }
      }
      return;
    default:
      return;
  }
}

void RedisLink::fail_waiting(const std::string &reason) {
  const Error error{-ENOTCONN, reason};
  std::deque<Waiting> failed;
  failed.swap(waiting_);
  for (auto &w : failed) {
    if (w.done) w.done(nullptr, &error);
  }
}

void RedisLink::lose(const std::string &reason) {
  if (state_ == State::kIdle || state_ == State::kClosing || state_ == State::kClosed ||
      state_ == State::kBackoff) {
    return;
  }
  const bool was_up = state_ == State::kUp;
  if (was_up) {
    ++counters_.disconnects;
  } else {
    ++counters_.failed_connects;
  }
  last_error_ = reason;
  if (socket_) Socket::discard(std::move(socket_));
  write_in_flight_ = false;
  writing_.clear();
  output_.clear();
  pong_deadline_ms_ = 0;
  if (!options_.reconnect) {
    state_ = State::kIdle;
  } else {
    state_ = State::kBackoff;
    // Exponential, half of it random: nodes that lost Redis together do not all come back
    // in the same millisecond.
    backoff_ms_ = backoff_ms_ == 0 ? options_.backoff_min_ms
                                   : std::min(options_.backoff_max_ms, backoff_ms_ * 2);
    static thread_local std::minstd_rand jitter(std::random_device{}());
    const uint32_t wait = backoff_ms_ / 2 + jitter() % (backoff_ms_ / 2 + 1);
    next_connect_ms_ = uv_now(loop_) + wait;
  }
  fail_waiting(reason);
  if (on_state_) on_state_(false, reason);
}

void RedisLink::close(std::function<void()> done) {
  if (state_ == State::kClosing || state_ == State::kClosed) return;
  on_closed_ = std::move(done);
  state_ = State::kClosing;
  if (socket_) Socket::discard(std::move(socket_));
  fail_waiting("the Redis link is closing");
  if (!timer_open_) {
    state_ = State::kClosed;
    if (on_closed_) on_closed_();
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t *>(&timer_), [](uv_handle_t *h) {
    auto *self = static_cast<RedisLink *>(h->data);
    self->timer_open_ = false;
    self->state_ = State::kClosed;
    if (self->on_closed_) self->on_closed_();
  });
}

}  // namespace kronop::daemon
