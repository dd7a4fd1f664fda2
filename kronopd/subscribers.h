// The subscriber table of one I/O loop, and fan-out to it (Redis' pubsub.c).
//
// topic -> the loop's connections joined to it. A message is encoded once per format
// (Message's shared frames) and the same bytes are queued to every subscriber in its format
// (plain / Phoenix JSON / Phoenix protobuf); target_users narrows it to those users' sockets.
// A subscriber whose join of the topic is not answered yet gets the message held on its
// pending join instead (joins.h), so history and live messages come in order.
//
// The dispatcher learns through InterestCallback when the loop gains its first subscriber of
// a topic or loses its last, so it sends a loop only the topics someone there wants.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth.h"
#include "fanout.h"

namespace kronop::daemon {

class ClientServer;
struct Connection;

// Called by a loop when it gains its first subscriber of a topic (true) or loses its last.
using InterestCallback = std::function<void(const std::string &topic, bool interested)>;

// How one subscriber receives messages: its format, and who it is (for target_users).
struct Audience {
  bool plain = false;     // the plain endpoints' {"topic","event","payload"} text
  bool protobuf = false;  // format=protobuf: the binary broadcast
  const Identity *identity = nullptr;
};

// The frame `a` gets for `m`, or null when target_users leaves it out (only those users'
// sockets; anonymous sockets are nobody's) or when the message has no frame in its format.
const SharedFrame *frame_for(const Message &m, const Audience &a);

class SubscriberTable {
 public:
  SubscriberTable(ClientServer &server, InterestCallback interest)
      : server_(server), interest_(std::move(interest)) {}

  void subscribe(const std::string &topic, Connection *c);
  void unsubscribe(const std::string &topic, Connection *c);
  // Writes each message to the loop's subscribers of its topic (held for pending joins).
  void fan_out(const std::vector<MessagePtr> &messages);
  // The loop's subscribers of `topic` (null: none).
  const std::vector<Connection *> *of(const std::string &topic) const {
    auto it = subscribers_.find(topic);
    return it == subscribers_.end() ? nullptr : &it->second;
  }
  // One message to one subscriber, in its format, unless target_users excludes it.
  void deliver_to(Connection *c, const Message &m);

 private:
  ClientServer &server_;
  InterestCallback interest_;
  std::unordered_map<std::string, std::vector<Connection *>> subscribers_;
};

}  // namespace kronop::daemon
