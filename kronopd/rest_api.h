// The REST API on the client port (docs/ARCHITECTURE.md, "Parts"), and the parsers of what
// clients and REST callers send about reels and users:
//
//   POST /api/v1/reels/:id/updates    publish a reel_update to reel:<id> (202)
//   GET  /api/v1/reels/:id/updates    the reel's counters and its reel_update messages from the
//                                     durable log: the newest ?limit=1..100 (default 50), or
//                                     those after ?since_seq=N, oldest first
//   POST /api/v1/users/:id/presence   set a user's status (online/away/offline, reel, activity)
//   GET  /api/v1/users/:id/presence   a user's status and last-seen time (404: never seen)
//
// Bodies are JSON (parsed with simdjson) or, with Content-Type: application/x-protobuf, the
// ReelUpdate / PresenceUpdate message. Published updates enter the rings through the
// daemon's own producer (Publisher), exactly like a producer's record.
//
// Who may call: writes need a bearer token (Authorization: Bearer <JWT>), an admin token
// for reel updates and the user's own (or an admin) token for a user's presence, unless the
// request comes from a loopback address and --trust-loopback is set (the development
// default). Reading a reel's updates follows the reel topics' rule (any valid token, or none
// with --allow-anonymous); reading a user's presence needs that user's or an admin token, or
// trusted loopback.
//
// Paths and methods are matched by the client port's route table (routes.h), which calls
// reel_updates() and user_presence(). GET /api/v1/reels/:id/updates reads the durable log on
// libuv's thread pool and answers through its Responder on the loop; in a cluster (--redis)
// /api/v1/users/:id/presence answers with the cluster's view of the user, read from Redis
// (cluster_users.h), once it comes; the rest answer at once.
//
// The bodies of status changes are parsed by client_pushes.h (shared with the user channel's
// update_presence push); its domain errors become HTTP statuses here (http_status).
//
// Errors: 400 (malformed body, bad field, bad id or query), 401 (no or invalid token, with
// WWW-Authenticate), 403 (token of someone else / not admin), 404 (unknown path or user),
// 405 (with Allow), 413 (body over the limit, refused by the HTTP parser before it is
// buffered), 415 (content type), 503 (the daemon's ring is full): each with the JSON body
// {"error":{"status":S,"message":"..."}}.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "auth.h"
#include "client_pushes.h"
#include "http.h"
#include "kronop/result.h"
#include "kronop/v1/api.pb.h"
#include "kronop/v1/envelope.pb.h"
#include "kronop/v1/presence.pb.h"
#include "kronop/v1/reel.pb.h"
#include "presence.h"
#include "publisher.h"
#include "reels.h"
#include "routes.h"

typedef struct uv_loop_s uv_loop_t;

namespace kronop::daemon {

// A refused body: the HTTP status and a message (plain text chosen by the daemon; never
// echoes the input).
struct BodyError {
  int status = 0;  // 0: no error
  std::string message;
  bool ok() const { return status == 0; }
};

// The body of POST /api/v1/reels/:id/updates as the Envelope to publish on `topic`
// (reel:<id>). JSON: {"update_data": {...any JSON values...}, "priority": "low"|"normal"|
// "high"|"critical", "target_users": ["u1",...], "id": "...", "timestamp": ms}; only
// update_data is required; unknown members are refused. Published as a JSON body (values
// keep their JSON types). Protobuf: a ReelUpdate whose reel_id is 0 or the path's id;
// published typed. `now_ns` stamps the update.
BodyError parse_reel_update(std::string_view topic, std::string_view content_type,
                            std::string_view body, uint64_t now_ns, kronop::v1::Envelope *out);

// The HTTP status for a refused body or push: 400, 413, 415, 401, 429 or 503.
int http_status(PushFault fault);

// A status change's body (POST /api/v1/users/:id/presence): read_status_change, with the
// Content-Type choosing JSON or protobuf (415 for others).
BodyError parse_status_change(std::string_view content_type, std::string_view body,
                              StatusChange *out);

struct RestOptions {
  bool trust_loopback = true;
  bool allow_anonymous = true;
  // The durable log GET /api/v1/reels/:id/updates reads history from (empty: memory only).
  std::string log_path;
};

// Who sent a REST request: the bearer token's verdict and the source address.
struct HttpCaller {
  bool loopback = false;
  bool has_token = false;
  TokenError token_error = TokenError::kNone;
  Identity identity;
};

// A user's status for the whole cluster (ClusterNode::read_user): `done` runs on any thread,
// with nullopt when the cluster has no record of the user, or an error when it cannot say.
using UserStatusReader = std::function<void(
    std::string user, std::function<void(Result<std::optional<PresenceHub::UserPresence>>)> done)>;

class RestApi {
 public:
  RestApi(RestOptions options, Publisher *publisher, ReelState *reels, PresenceHub *presence)
      : options_(options), publisher_(publisher), reels_(reels), presence_(presence) {}

  // Any I/O thread: counts a request to one of these paths (the route table calls it, 405s
  // included).
  void count_request() const { requests_.fetch_add(1, std::memory_order_relaxed); }
  // /api/v1/reels/:id/updates (GET or POST): `id` as in the path, not yet validated. A GET
  // that reads the log answers later, on `loop`, after a read on libuv's thread pool.
  void reel_updates(const std::string &id, const http::Request &req, const HttpCaller &caller,
                    Responder responder, uv_loop_t *loop) const;
  // /api/v1/users/:id/presence (GET or POST). In a cluster (set_user_reader) the answer is
  // the cluster's view, read from Redis and answered on the loop through `post`; this node's
  // own view when Redis cannot say (cut off) or there is no `post`.
  void user_presence(const std::string &id, const http::Request &req, const HttpCaller &caller,
                     Responder responder, const LoopPost &post) const;
  // Before serving, in a cluster: where a user's status for the whole cluster is read
  // (ClusterNode::read_user).
  void set_user_reader(UserStatusReader reader) { user_reader_ = std::move(reader); }
  // A user's status: the cluster's, or this node's (see user_presence); `done` gets nullopt
  // when no one has seen the user, and runs on any thread.
  void read_user(const std::string &user,
                 std::function<void(std::optional<PresenceHub::UserPresence>)> done) const;

  // A user's status change from any source: records it and publishes a presence_update on
  // user:<id>. The resulting presence as the API's JSON body.
  std::string apply_status(const std::string &user, const StatusChange &change) const;

  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

 private:
  std::string publish_reel_update(const http::Request &req, const HttpCaller &caller,
                                  const std::string &topic) const;

  RestOptions options_;
  Publisher *publisher_;
  ReelState *reels_;
  PresenceHub *presence_;
  UserStatusReader user_reader_;
  mutable std::atomic<uint64_t> requests_{0};
};

// The body of a user's presence (GET/POST /api/v1/users/:id/presence, kronopctl presence
// user), as a message and as JSON.
kronop::v1::UserPresenceBody user_presence_body(const PresenceHub::UserPresence &p);
std::string user_presence_json(const PresenceHub::UserPresence &p);

}  // namespace kronop::daemon
