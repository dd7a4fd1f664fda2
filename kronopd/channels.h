// The router of one Phoenix socket: which channels it has joined, and what each client
// message (join, leave, heartbeat, push) does to them. Pure: it decides the replies and the
// subscription changes, and the server carries them out (writes the frames, edits the
// subscriber table), so the protocol's rules are unit-tested without sockets
// (tests/kronopd/channels_test.cc).
//
// The rules, as a Phoenix 1.7 server applies them (as captured from a real server and the
// official client; tests/kronopd/phoenix_test.cc holds those frames):
//  - topic "phoenix", event "heartbeat": reply ok with join_ref null;
//  - phx_join of a topic the policy refuses (topic_policy): error reply ("unmatched topic"
//    with join_ref null; "unauthorized" with the join's join_ref);
//  - phx_join beyond the socket's channel limit: error "too many channels joined";
//  - phx_join: accepted (RouteOutcome::joined) with a subscription; the server sends the ok
//    reply, whose response says where the topic's stream stands (and recovers what the
//    client missed), once it knows; a second join of a joined topic replaces the first:
//    phx_close to the old join_ref, and no new subscription;
//  - phx_leave of the current join: ok reply, phx_close, unsubscribe; of a topic not joined:
//    ok reply; of an earlier, replaced join: ignored;
//  - any other event on a topic not joined: error "unmatched topic" (join_ref null); on a
//    joined topic: a push, handed to the server (RouteOutcome::push), which handles the
//    events it knows (likes, comments, shares, status) and answers the others with error
//    "unhandled event".
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth.h"
#include "phoenix.h"

namespace kronop::daemon {

// Whether a socket may join a topic.
enum class JoinPolicy : uint8_t {
  kAllow,
  kUnmatched,     // not a topic this server has ({"reason":"unmatched topic"})
  kUnauthorized,  // a topic the socket may not join ({"reason":"unauthorized"})
};

// Who may join what: reel:<id> any socket (a socket exists only with a valid token, or
// anonymously when --allow-anonymous); user:<id> only the socket of user <id>; system only
// a socket whose token has the admin claim; anything else is unmatched.
JoinPolicy topic_policy(std::string_view topic, const Identity &who);

// What handling one message asks of the server, in order: send `replies` (JSON text
// messages), then subscribe to / unsubscribe from the topics named (empty: none).
struct RouteOutcome {
  std::vector<std::string> replies;
  std::string subscribe;
  std::string unsubscribe;
  int unauthorized = 0;  // joins refused by the policy (counted by the server)
  int over_limit = 0;    // joins refused for the socket's channel limit (counted too)
  // A join was accepted (a first one, or one that replaced another): the server owes the
  // client its ok reply.
  bool joined = false;
  bool push = false;  // a client event on a joined topic, for the server to handle
  void clear() {
    replies.clear();
    subscribe.clear();
    unsubscribe.clear();
    unauthorized = 0;
    over_limit = 0;
    joined = false;
    push = false;
  }
};

class ChannelRouter {
 public:
  struct Channel {
    std::string topic;
    std::string join_ref_json;  // as the client sent it (JSON text), echoed in phx_close
  };

  explicit ChannelRouter(std::size_t max_channels) : max_channels_(max_channels) {}

  // `who`: the socket's identity (from its connect-time token).
  void route(const phoenix::ClientMessage &m, const Identity &who, RouteOutcome &out);

  // A channel the socket has from the start (the plain endpoints' single topic).
  void add(std::string topic) { channels_.push_back({std::move(topic), "null"}); }
  const std::vector<Channel> &channels() const { return channels_; }
  // The server closes the channel of `topic` (its stream changed): its join_ref (JSON), or
  // nothing when the socket has no such channel.
  std::optional<std::string> drop(std::string_view topic);
  void clear() { channels_.clear(); }

 private:
  std::size_t max_channels_;
  std::vector<Channel> channels_;
};

}  // namespace kronop::daemon
