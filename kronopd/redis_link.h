// One connection to one Redis server, owned by a libuv loop: the cluster's wire (DESIGN.md
// §8, docs/ARCHITECTURE.md "The cluster (Redis)").
//
// Why not hiredis's async API: hiredis 0.14 (Debian 12) cannot put a connection in
// subscribed mode for SSUBSCRIBE, does not route `smessage` pushes, and knows nothing of a
// Redis Cluster. What it does well is independent of I/O, and that is what is used here:
// redisFormatCommandArgv writes each command's RESP, and a redisReader turns the bytes read
// into replies. The socket is libuv's (uv_tcp_t or uv_pipe_t), so the link lives on the
// loop that uses it, with no second I/O layer.
//
// A link is one of two kinds, as Redis itself makes them:
// - kCommands: request/response. Commands are pipelined: each send() appends its RESP to
//   the output, all of one loop turn go out in one write, and replies come back in order,
//   so each is matched to the oldest command waiting (a FIFO).
// - kSubscriber: after the handshake, the connection carries (S)SUBSCRIBE and
//   (S)UNSUBSCRIBE, whose confirmations and the messages pushed are not one reply per
//   command: everything read goes to the push callback (redis_reply.h classifies it).
//   Subscriptions end with the connection: the owner subscribes again when the state
//   callback says the link is up again.
//
// Every connection starts with a handshake (AUTH, SELECT, PING) and is up only after it.
// Commands sent while it is not up fail at once (the caller, which knows what may be sent
// again, keeps its own outbox). A connection that is lost, times out or answers what Redis
// never sends is closed: waiting commands fail with the reason, the state callback hears
// it once, and the link connects again after an exponential backoff with jitter.
//
// Bounds (Redis is outside the process): the output waiting to be written, the commands
// waiting for replies and the bytes of one reply are capped (a Redis that streams a reply
// without end, or a peer that is not Redis, cannot grow kronopd); every command has a
// deadline, and a subscriber link is pinged so that a silent peer is noticed.
//
// Threads: a link is used only on its loop's thread, callbacks included.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"
#include "redis_connection.h"
#include "redis_reply.h"
#include "redis_url.h"

namespace kronop::daemon {

struct RedisLinkOptions {
  enum class Kind { kCommands, kSubscriber };
  Kind kind = Kind::kCommands;
  RedisEndpoint endpoint;
  uint32_t connect_timeout_ms = 2000;        // TCP connect plus the handshake
  uint32_t command_timeout_ms = 5000;        // a command's reply, or a subscriber's PING answer
  uint32_t ping_interval_ms = 1000;          // subscriber links: how often a PING checks the peer
  uint32_t backoff_min_ms = 100;             // first wait before connecting again
  uint32_t backoff_max_ms = 5000;            // the longest
  std::size_t max_output_bytes = 64u << 20;  // RESP not yet written
  std::size_t max_waiting = 1u << 20;        // commands waiting for replies
  std::size_t max_reply_bytes = 64u << 20;   // one reply's bytes, read but not yet whole
  bool reconnect = true;  // false: a lost connection stays down (tests, a start-up check)
};

struct RedisLinkCounters {
  uint64_t connects = 0;     // handshakes completed
  uint64_t disconnects = 0;  // connections lost or closed after being up
  uint64_t failed_connects = 0;
  uint64_t commands = 0;
  uint64_t replies = 0;
  uint64_t timeouts = 0;
};

class RedisLink final : public RedisConnection {
 public:
  RedisLink(uv_loop_t *loop, RedisLinkOptions options);
  ~RedisLink() override;  // the link must be closed (close()) and the loop run until on_closed
  RedisLink(const RedisLink &) = delete;
  RedisLink &operator=(const RedisLink &) = delete;

  void on_state(StateFn fn) override { on_state_ = std::move(fn); }
  void on_push(PushFn fn) override { on_push_ = std::move(fn); }

  // Connects (and keeps connecting, with backoff, unless options.reconnect is false).
  void start() override;
  // Closes the connection and every handle; waiting commands fail. `done` runs on the loop
  // once the link may be destroyed.
  void close(std::function<void()> done) override;

  bool up() const override { return state_ == State::kUp; }
  // The reason the link was last down ("" once it is up).
  const std::string &last_error() const override { return last_error_; }

  // Commands links: sends argv, and calls `done` with its reply (or the error) on the loop.
  // Fails at once (done called before send returns) when the link is not up or a bound is
  // reached. Subscriber links: `done` must be empty (the answer comes as a push).
  void send(const std::vector<std::string_view> &argv, ReplyFn done) override;
  uint64_t connects() const override { return counters_.connects; }

  const RedisLinkCounters &counters() const { return counters_; }
  const RedisLinkOptions &options() const { return options_; }
  std::size_t waiting() const { return waiting_.size(); }

 private:
  enum class State { kIdle, kConnecting, kHandshake, kUp, kBackoff, kClosing, kClosed };
  struct Waiting {
    ReplyFn done;
    uint64_t deadline_ms = 0;
    bool handshake = false;
  };

  void connect();
  void on_connected(int status);
  void begin_handshake();
  void on_read(ssize_t n, const uv_buf_t *buf);
  void take_reply(const redisReply &reply);
  void write_pending();
  void on_written(int status);
  void on_tick();
  // Closes the socket, fails what waits with `reason`, and schedules the next connect.
  void lose(const std::string &reason);
  void append(const std::vector<std::string_view> &argv);
  void fail_waiting(const std::string &reason);

  uv_loop_t *loop_;
  RedisLinkOptions options_;
  State state_ = State::kIdle;
  // The socket: a TCP handle or a pipe; exactly one is used per connection.
  struct Socket;
  std::unique_ptr<Socket> socket_;
  uv_timer_t timer_{};  // deadlines, pings and the backoff
  bool timer_open_ = false;
  RedisReaderPtr reader_;
  std::size_t reply_bytes_ = 0;  // fed to the reader since its last whole reply
  std::string output_;           // RESP not yet handed to uv_write
  std::string writing_;          // RESP in the write in flight
  bool write_in_flight_ = false;
  std::deque<Waiting> waiting_;
  uint64_t connect_deadline_ms_ = 0;
  uint64_t next_connect_ms_ = 0;
  uint64_t next_ping_ms_ = 0;
  uint64_t pong_deadline_ms_ = 0;
  uint32_t backoff_ms_ = 0;
  std::string last_error_ = "not connected yet";
  StateFn on_state_;
  PushFn on_push_;
  std::function<void()> on_closed_;
  RedisLinkCounters counters_;
};

}  // namespace kronop::daemon
