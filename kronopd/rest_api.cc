// The REST API and the reel / user body parsers; see rest_api.h.
#include "rest_api.h"

#include <simdjson.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <random>

#include "envelope_validation.h"
#include "kronop/clock.h"
#include "kronop/v1/api.pb.h"
#include "kronop_ipc.h"
#include "log_reader.h"
#include "payload_codec.h"
#include "pool_work.h"
#include "time_format.h"

namespace kronop::daemon {
namespace {

constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxTargetUsers = 1000;

enum class BodyType : uint8_t { kJson, kProtobuf, kUnsupported };

// The media type of a Content-Type header, without parameters; none means JSON (what the
// API documents), so `curl -d` with a JSON body and no header is still understood.
BodyType body_type(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  auto iequals = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      char c = a[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != b[i]) return false;
    }
    return true;
  };
  if (t.empty() || iequals(t, "application/json")) return BodyType::kJson;
  if (iequals(t, "application/x-protobuf") || iequals(t, "application/protobuf"))
    return BodyType::kProtobuf;
  return BodyType::kUnsupported;
}

BodyError fail(int status, std::string message) { return BodyError{status, std::move(message)}; }

const BodyError kUnsupportedType{
    415, "unsupported Content-Type: send application/json or application/x-protobuf"};

// The body as a JSON object (client_pushes.h's reader, its errors as HTTP statuses).
BodyError parse_object(std::string_view body, simdjson::dom::object *out) {
  if (PushError e = read_json_object(body, out); !e.ok()) return fail(400, e.reason);
  return {};
}

bool parse_priority(std::string_view name, kronop::v1::Priority *out) {
  // The words ("low") or the proto names ("PRIORITY_LOW"), as every JSON enum.
  const auto *v = enum_value_of(*kronop::v1::Priority_descriptor(), name);
  if (v == nullptr) return false;
  *out = static_cast<kronop::v1::Priority>(v->number());
  return true;
}

bool valid_user_id(std::string_view id) { return valid_topic("user:" + std::string(id)); }

std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

std::string with_header(std::string response, std::string_view header) {
  response.insert(response.find("\r\n") + 2, std::string(header) + "\r\n");
  return response;
}

std::string error(int status, std::string_view message) {
  std::string r = http::error_response(status, message, true);
  if (status == 401) r = with_header(std::move(r), "WWW-Authenticate: Bearer realm=\"kronop\"");
  if (status == 503) r = with_header(std::move(r), "Retry-After: 1");
  return r;
}

std::string json_response(int status, std::string_view body) {
  return http::response(status, "application/json", body, {}, true);
}

// reel:<id>'s id as JSON: a number when it is one (ReelUpdate.reel_id), otherwise the id
// as a string (a valid topic id: safe characters, no escaping needed).
std::string reel_id_json(std::string_view topic_id) {
  const int32_t n = reel_number("reel:" + std::string(topic_id));
  return n > 0 ? std::to_string(n) : "\"" + std::string(topic_id) + "\"";
}

}  // namespace

BodyError parse_reel_update(std::string_view topic, std::string_view content_type,
                            std::string_view body, uint64_t now_ns, kronop::v1::Envelope *out) {
  const int32_t reel = reel_number(topic);
  const std::string_view reel_id = topic.substr(topic.find(':') + 1);
  out->Clear();
  out->set_topic(std::string(topic));
  out->set_event("reel_update");
  out->set_publish_time_ns(now_ns);
  const int64_t now_ms = static_cast<int64_t>(now_ns / 1'000'000);
  switch (body_type(content_type)) {
    case BodyType::kUnsupported:
      return kUnsupportedType;
    case BodyType::kProtobuf: {
      kronop::v1::ReelUpdate *u = out->mutable_reel_update();
      if (!u->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        return fail(400, "body is not a kronop.v1.ReelUpdate");
      }
      if (u->reel_id() != 0 && u->reel_id() != reel) {
        return fail(400, "reel_id in the body differs from the reel in the path");
      }
      if (u->update_data().empty()) return fail(400, "update_data is required");
      for (const std::string &user : u->target_users()) {
        if (!valid_user_id(user)) return fail(400, "target_users holds an invalid user id");
      }
      if (!kronop::v1::Priority_IsValid(u->priority())) return fail(400, "unknown priority");
      u->set_reel_id(reel);
      if (u->id().empty()) u->set_id(random_id());
      if (u->timestamp() == 0) u->set_timestamp(now_ms);
      out->set_priority(u->priority());
      return {};
    }
    case BodyType::kJson:
      break;
  }
  simdjson::dom::object root;
  if (BodyError e = parse_object(body, &root); !e.ok()) return e;
  std::string id_json, data_json, targets_json;
  int64_t timestamp = now_ms;
  kronop::v1::Priority priority = kronop::v1::PRIORITY_NORMAL;
  for (auto field : root) {
    const std::string_view key = field.key;
    if (key == "update_data") {
      if (!field.value.is_object()) return fail(400, "update_data must be a JSON object");
      data_json = simdjson::to_string(field.value);
    } else if (key == "priority") {
      std::string_view name;
      if (field.value.get_string().get(name) != simdjson::SUCCESS ||
          !parse_priority(name, &priority)) {
        return fail(400, "priority must be one of low, normal, high, critical");
      }
    } else if (key == "target_users") {
      simdjson::dom::array users;
      if (field.value.get_array().get(users) != simdjson::SUCCESS) {
        return fail(400, "target_users must be an array of user ids");
      }
      if (users.size() > kMaxTargetUsers) return fail(400, "too many target_users (max 1000)");
      targets_json = "[";
      for (simdjson::dom::element u : users) {
        std::string_view name;
        if (u.get_string().get(name) != simdjson::SUCCESS || !valid_user_id(name)) {
          return fail(400, "target_users holds an invalid user id");
        }
        if (targets_json.size() > 1) targets_json += ',';
        // A valid user id is a valid topic id: safe characters only, no escaping needed.
        targets_json += '"';
        targets_json += name;
        targets_json += '"';
      }
      targets_json += ']';
    } else if (key == "id") {
      std::string_view id;
      if (field.value.get_string().get(id) != simdjson::SUCCESS || id.empty() ||
          id.size() > kMaxIdBytes) {
        return fail(400, "id must be a string of 1 to 64 bytes");
      }
      id_json = simdjson::to_string(field.value);  // escaped by the library
    } else if (key == "timestamp") {
      if (field.value.get_int64().get(timestamp) != simdjson::SUCCESS || timestamp < 0) {
        return fail(400, "timestamp must be a non-negative integer (Unix milliseconds)");
      }
    } else {
      return fail(400,
                  "unknown member in the body (allowed: update_data, priority, "
                  "target_users, id, timestamp)");
    }
  }
  if (data_json.empty()) return fail(400, "update_data is required");
  // The published object: every piece is JSON the library produced, or a number, or an id
  // made of safe characters.
  std::string json = "{\"id\":";
  json += id_json.empty() ? "\"" + random_id() + "\"" : id_json;
  json += ",\"reel_id\":";
  json += reel_id_json(reel_id);
  json += ",\"update_data\":";
  json += data_json;
  if (!targets_json.empty()) {
    json += ",\"target_users\":";
    json += targets_json;
  }
  json += ",\"timestamp\":";
  json += std::to_string(timestamp);
  json += '}';
  out->set_priority(priority);
  out->set_json(std::move(json));
  return {};
}

int http_status(PushFault fault) {
  switch (fault) {
    case PushFault::kNone:
      return 0;
    case PushFault::kInvalid:
      return 400;
    case PushFault::kTooLong:
      return 413;
    case PushFault::kUnsupportedType:
      return 415;
    case PushFault::kUnauthenticated:
      return 401;
    case PushFault::kRateLimited:
      return 429;
    case PushFault::kBusy:
      return 503;
  }
  return 400;
}

BodyError parse_status_change(std::string_view content_type, std::string_view body,
                              StatusChange *out) {
  const BodyType type = body_type(content_type);
  if (type == BodyType::kUnsupported) {
    *out = StatusChange{};
    return kUnsupportedType;
  }
  PushError e = read_status_change(type == BodyType::kProtobuf, body, out);
  if (!e.ok()) return fail(http_status(e.fault), std::move(e.reason));
  return {};
}

kronop::v1::UserPresenceBody user_presence_body(const PresenceHub::UserPresence &p) {
  kronop::v1::UserPresenceBody b;
  b.set_user_id(p.user_id);
  b.set_status(PresenceHub::status_name(p.status));
  b.set_current_reel(p.current_reel);
  b.set_activity(p.activity);
  b.set_last_seen(rfc3339_ms(p.last_seen_ms));
  b.set_connections(p.sockets);
  return b;
}

std::string user_presence_json(const PresenceHub::UserPresence &p) {
  return to_json(user_presence_body(p));
}

namespace {

// nullopt when the caller may go on; otherwise the refusal. `user`: the user whose data it
// is (empty: none); `admin`: an admin token is needed (a user's own token is not enough).
std::optional<std::string> authorize(const HttpCaller &caller, bool trust_loopback,
                                     bool anonymous_ok, const std::string &user, bool admin) {
  if (caller.loopback && trust_loopback) return std::nullopt;
  if (caller.has_token && caller.token_error != TokenError::kNone) {
    return error(401, token_error_message(caller.token_error));
  }
  if (!caller.has_token) {
    if (anonymous_ok) return std::nullopt;
    return error(401, "authentication required: send Authorization: Bearer <token>");
  }
  if (caller.identity.admin) return std::nullopt;
  if (admin) return error(403, "this needs an admin token");
  if (!user.empty() && caller.identity.user_id != user) {
    return error(403, "only that user (or an admin) may do this");
  }
  return std::nullopt;
}

}  // namespace

namespace {
// A GET of a reel's updates: what the log read needs (its own copies: it runs on a pool
// thread) and what it found.
struct ReelHistory {
  std::string log_path;
  std::string id;
  std::string topic;
  std::size_t limit = 50;
  bool since = false;
  uint64_t since_seq = 0;
  std::vector<std::pair<uint64_t, std::string>> updates;
  bool read_failed = false;
};

// A pool thread: the reel's reel_update messages from the durable log.
void read_reel_history(ReelHistory &h) {
  if (h.log_path.empty()) return;
  thread_local std::unique_ptr<LogReader> reader;
  thread_local std::string reader_path;
  if (!reader || reader_path != h.log_path) {
    auto opened = LogReader::open(h.log_path);
    if (!opened.ok()) return;  // no log file yet: memory only
    reader = std::move(opened).value();
    reader_path = h.log_path;
  }
  LogQuery q;
  q.topic = h.topic;
  q.event = "reel_update";
  q.after_seq = h.since_seq;
  q.limit = h.limit;
  q.newest_first = !h.since;
  auto read = reader->read(q, [&](const StoredMessage &m) {
    h.updates.emplace_back(m.seq, m.payload_json());
    return true;
  });
  if (!read.ok()) h.read_failed = true;
}

// The loop again: the log's part, the last few milliseconds' updates (not committed yet) from
// memory, and the counters, as the response.
std::string reel_history_response(ReelHistory &h, ReelState &reels) {
  if (h.read_failed) return error(503, "the durable log cannot be read now, retry");
  auto &updates = h.updates;
  auto snap = reels.snapshot(h.topic, 100);
  ReelCounters counters = snap ? snap->counters : ReelCounters{};
  if (snap) {
    uint64_t last = updates.empty() ? h.since_seq : std::max(h.since_seq, updates.back().first);
    for (auto &u : snap->updates) {
      if (u.first > last) updates.push_back(std::move(u));
    }
  }
  // Oldest first: after since_seq the first `limit`, otherwise the last `limit`.
  if (updates.size() > h.limit) {
    if (h.since) {
      updates.resize(h.limit);
    } else {
      updates.erase(updates.begin(),
                    updates.begin() + static_cast<std::ptrdiff_t>(updates.size() - h.limit));
    }
  }
  // The id is a valid topic id (safe characters); the updates are the payloads as sent.
  std::string body = "{\"reel_id\":" + reel_id_json(h.id) +
                     ",\"counters\":" + counters_json(counters) + ",\"updates\":[";
  for (std::size_t i = 0; i < updates.size(); ++i) {
    if (i > 0) body += ',';
    body += updates[i].second;
  }
  body += "]}";
  return json_response(200, body);
}
}  // namespace

void RestApi::reel_updates(const std::string &id, const http::Request &req,
                           const HttpCaller &caller, Responder responder, uv_loop_t *loop) const {
  if (!valid_topic("reel:" + id)) return responder.respond(error(400, "invalid reel id"));
  const std::string topic = "reel:" + id;
  if (req.method != "GET") return responder.respond(publish_reel_update(req, caller, topic));
  if (auto refused =
          authorize(caller, options_.trust_loopback, options_.allow_anonymous, {}, false)) {
    return responder.respond(std::move(*refused));
  }
  auto h = std::make_shared<ReelHistory>();
  h->log_path = options_.log_path;
  h->id = id;
  h->topic = topic;
  std::string text;
  if (req.query_param("limit", &text)) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n < 1 || n > 100) {
      return responder.respond(error(400, "limit must be a number from 1 to 100"));
    }
    h->limit = n;
  }
  h->since = req.query_param("since_seq", &text);
  if (h->since) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), h->since_seq);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return responder.respond(error(400, "since_seq must be a sequence number"));
    }
  }
  if (h->log_path.empty()) return responder.respond(reel_history_response(*h, *reels_));
  // SQLite off the loop; the answer on it (the Responder is the loop's only).
  run_on_pool(
      loop, [h] { read_reel_history(*h); },
      [h, responder, reels = reels_] { responder.respond(reel_history_response(*h, *reels)); });
}

std::string RestApi::publish_reel_update(const http::Request &req, const HttpCaller &caller,
                                         const std::string &topic) const {
  if (auto refused = authorize(caller, options_.trust_loopback, false, {}, true)) return *refused;
  kronop::v1::Envelope envelope;
  BodyError e =
      parse_reel_update(topic, req.header("content-type"), req.body, realtime_ns(), &envelope);
  if (!e.ok()) return error(e.status, e.message);
  const int rc = publisher_->publish(envelope);
  if (rc == KRONOP_ETOOBIG) return error(413, "update too large for the ring");
  if (rc == KRONOP_EFULL) return error(503, "kronopd is busy: its ring is full, retry");
  if (rc != KRONOP_OK) {
    return error(503,
                 "kronopd cannot publish now: its shared-memory segment is unusable (see "
                 "kronopctl health), retry");
  }
  kronop::v1::AcceptedBody b;
  b.set_status("accepted");
  b.set_topic(topic);
  if (envelope.has_reel_update()) {
    b.set_id(envelope.reel_update().id());
  } else {
    // The id is the first member of the object built by parse_reel_update.
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view id_value;
    if (parser.parse(envelope.json()).get(root) == simdjson::SUCCESS &&
        root["id"].get_string().get(id_value) == simdjson::SUCCESS) {
      b.set_id(std::string(id_value));
    }
  }
  return json_response(202, to_json(b));
}

std::string RestApi::apply_status(const std::string &user, const StatusChange &change) const {
  const uint64_t now_ns = realtime_ns();
  PresenceHub::UserPresence p = presence_->set_status(user, change.status, change.current_reel,
                                                      change.activity, now_ns / 1'000'000);
  kronop::v1::Envelope e;
  e.set_topic("user:" + user);
  e.set_event("presence_update");
  e.set_publish_time_ns(now_ns);
  auto *u = e.mutable_presence();
  u->set_user_id(user);
  switch (p.status) {
    case PresenceHub::Status::kOnline:
      u->set_status(kronop::v1::PresenceUpdate::STATUS_ONLINE);
      break;
    case PresenceHub::Status::kAway:
      u->set_status(kronop::v1::PresenceUpdate::STATUS_AWAY);
      break;
    case PresenceHub::Status::kOffline:
      u->set_status(kronop::v1::PresenceUpdate::STATUS_OFFLINE);
      break;
  }
  u->set_current_reel(p.current_reel);
  u->set_activity(p.activity);
  u->set_timestamp(static_cast<int64_t>(now_ns / 1'000'000));
  // The user's other sockets learn of it on user:<id>. The status is recorded even when the
  // ring is full: the state is what the caller asked for, and GET shows it.
  (void)publisher_->publish(e);
  return user_presence_json(p);
}

void RestApi::read_user(const std::string &user,
                        std::function<void(std::optional<PresenceHub::UserPresence>)> done) const {
  auto own_view = [presence = presence_, user] {
    return presence->user(user, realtime_ns() / 1'000'000);
  };
  if (!user_reader_) return done(own_view());
  user_reader_(
      user, [done = std::move(done), own_view](Result<std::optional<PresenceHub::UserPresence>> r) {
        // Cut off from Redis, or the cluster has no record yet (this node's count not written
        // yet): this node's own view.
        if (!r.ok() || !r.value()) return done(own_view());
        done(std::move(r).value());
      });
}

void RestApi::user_presence(const std::string &id, const http::Request &req,
                            const HttpCaller &caller, Responder responder,
                            const LoopPost &post) const {
  if (!valid_topic("user:" + id)) return responder.respond(error(400, "invalid user id"));
  if (auto refused = authorize(caller, options_.trust_loopback, false, id, false)) {
    return responder.respond(std::move(*refused));
  }
  std::string posted;  // a POST's answer without the cluster
  if (req.method != "GET") {
    StatusChange change;
    BodyError e = parse_status_change(req.header("content-type"), req.body, &change);
    if (!e.ok()) return responder.respond(error(e.status, e.message));
    posted = apply_status(id, change);
  }
  auto answer = [posted](const std::optional<PresenceHub::UserPresence> &p) {
    if (!posted.empty() && !p) return json_response(200, posted);
    if (!p) return error(404, "no presence known for this user");
    return json_response(200, user_presence_json(*p));
  };
  if (!user_reader_ || !post) {
    if (!posted.empty()) return responder.respond(json_response(200, posted));
    return responder.respond(answer(presence_->user(id, realtime_ns() / 1'000'000)));
  }
  // The cluster's view, read after this node's write of a POST's status (one Redis link,
  // in order); answered on the loop.
  read_user(id, [responder, post, answer](std::optional<PresenceHub::UserPresence> p) {
    post([responder, response = answer(p)]() mutable { responder.respond(std::move(response)); });
  });
}

}  // namespace kronop::daemon
