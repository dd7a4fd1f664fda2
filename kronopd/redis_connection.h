// What the cluster's parts (cluster_node.h) need of Redis, whether it is one server or a
// Redis Cluster: a connection that sends commands and says whether it is up. Two kinds
// implement it:
//   - RedisLink (redis_link.h): one connection to one server;
//   - RedisClusterLink (redis_cluster_link.h): a link per master of a Redis Cluster, each
//     command sent to the master of its key's slot.
// Both come in the two kinds RedisLinkOptions::Kind names (commands, subscriber) and behave
// alike: a command sent while the connection is not up fails at once; the state callback
// hears each change; a subscriber's pushes go to the push callback.
//
// Threads: the loop the connection lives on, callbacks included.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kronop/result.h"

namespace kronop::daemon {

class RedisConnection {
 public:
  // `reply` is null and `error` set when the command failed without a reply (not up, timed
  // out, closed). A Redis error reply (-ERR ...) is a reply: reply->type is
  // REDIS_REPLY_ERROR.
  using ReplyFn = std::function<void(const redisReply *reply, const Error *error)>;
  // The connection came up (true) or went down (false, with the reason).
  using StateFn = std::function<void(bool up, const std::string &reason)>;
  // Subscriber connections: each pushed array (redis_reply.h's classify_push reads it).
  using PushFn = std::function<void(const redisReply &push)>;

  virtual ~RedisConnection() = default;

  virtual void on_state(StateFn fn) = 0;
  virtual void on_push(PushFn fn) = 0;
  // Connects (and keeps connecting, with backoff).
  virtual void start() = 0;
  // Closes every connection and handle; waiting commands fail. `done` runs on the loop once
  // the object may be destroyed.
  virtual void close(std::function<void()> done) = 0;
  virtual bool up() const = 0;
  // Why it was last down ("" once up).
  virtual const std::string &last_error() const = 0;
  // Commands: sends argv; `done` gets its reply (or the error) on the loop, at once when the
  // connection is not up. Subscribers: (S)SUBSCRIBE, (S)UNSUBSCRIBE and PING, `done` empty.
  virtual void send(const std::vector<std::string_view> &argv, ReplyFn done) = 0;
  // Handshakes completed (more than one: it came back after a loss).
  virtual uint64_t connects() const = 0;
};

}  // namespace kronop::daemon
