// The client port's one route table: every HTTP path kronopd serves, WebSocket upgrades
// included.
//
//   /ws/websocket, /ws/websocket/      Phoenix Channels V2 socket        (upgrade)
//   /ws/reel/:id, /ws/user/:id         plain JSON socket on that topic   (upgrade)
//   /ws/system                         plain JSON socket on `system`     (upgrade)
//   /api/v1/reels/:id/updates          GET, POST  (RestApi)
//   /api/v1/users/:id/presence         GET, POST  (RestApi)
//   /api/v1/system/{health,stats,performance}, /api/v1/connections/stats, /metrics
//                                      GET, HEAD  (SystemApi)
//
// match_route() only finds the route; a path that matches nothing is a 404 and a method a
// route does not allow a 405 with Allow (http_refusal). Upgrade routes check their method in
// the WebSocket handshake, which answers a refused upgrade itself.
//
// Answers may come later: a handler gets a Responder, which it may answer at once or keep
// (GET /api/v1/reels/:id/updates reads the durable log on libuv's thread pool). The
// Responder refers to the connection weakly: answering after the connection closed does
// nothing. It is used on the loop's thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kronop::daemon {

enum class RouteKind : uint8_t {
  kPhoenixSocket,
  kPlainSocket,   // param: the topic
  kReelUpdates,   // param: the reel id (not yet validated)
  kUserPresence,  // param: the user id (not yet validated)
  kSystem,        // param: none (SystemApi reads the path)
};

struct Route {
  RouteKind kind;
  std::string param;
  std::string_view allow;  // the methods allowed ("GET, POST"); empty: the handshake decides
  bool upgrade() const {
    return kind == RouteKind::kPhoenixSocket || kind == RouteKind::kPlainSocket;
  }
  bool allows(std::string_view method) const;
};

// The route for a path (no query); nullopt: no such endpoint.
std::optional<Route> match_route(std::string_view path);

// The complete error response for a path without a route (404) or a method the route does
// not allow (405 with Allow), or nullopt when the request may go on.
std::optional<std::string> http_refusal(const std::optional<Route> &route, std::string_view path,
                                        std::string_view method);

// Queues a function for a loop's thread from any thread (IoLoop's command queue); false once
// the loop is closing, and then the function never runs. How an answer made on another
// thread gets back to the loop whose Responder it is.
using LoopPost = std::function<bool(std::function<void()>)>;

// Where a request's response goes. Cheap to copy; answering twice sends the first only.
class Responder {
 public:
  using Sink = std::function<void(std::string response)>;
  Responder() = default;
  explicit Responder(std::weak_ptr<Sink> sink) : sink_(std::move(sink)) {}
  // On the loop's thread: the complete HTTP response; nothing if the connection is gone.
  void respond(std::string response) const {
    if (auto sink = sink_.lock()) {
      Sink take = std::move(*sink);
      *sink = nullptr;
      if (take) take(std::move(response));
    }
  }

 private:
  std::weak_ptr<Sink> sink_;
};

}  // namespace kronop::daemon
