// Client pushes; see client_pushes.h.
#include "client_pushes.h"

#include <simdjson.h>

#include <charconv>
#include <cstdio>

#include "connection.h"
#include "kronop/clock.h"
#include "kronop/v1/presence.pb.h"
#include "kronop_ipc.h"
#include "rate_limit.h"
#include "reels.h"
#include "rest_api.h"
#include "server.h"

namespace kronop::daemon {
namespace {

constexpr std::size_t kMaxActivityBytes = 128;

PushError invalid(std::string reason) { return {PushFault::kInvalid, std::move(reason)}; }

SharedFrame text(std::string_view s) {
  return std::make_shared<const std::string>(ws::text_frame(s));
}

}  // namespace

std::string phoenix_reason(const PushError &e) { return R"({"reason":")" + e.reason + R"("})"; }

PushError read_json_object(std::string_view body, simdjson::dom::object *out) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body.data(), body.size(), true).get(root) != simdjson::SUCCESS) {
    return invalid("body is not valid JSON");
  }
  if (root.get_object().get(*out) != simdjson::SUCCESS) {
    return invalid("body must be a JSON object");
  }
  return {};
}

PushError read_status_change(bool protobuf, std::string_view body, StatusChange *out) {
  *out = StatusChange{};
  if (protobuf) {
    kronop::v1::PresenceUpdate p;
    if (!p.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      return invalid("body is not a kronop.v1.PresenceUpdate");
    }
    switch (p.status()) {
      case kronop::v1::PresenceUpdate::STATUS_ONLINE:
        out->status = PresenceHub::Status::kOnline;
        break;
      case kronop::v1::PresenceUpdate::STATUS_AWAY:
        out->status = PresenceHub::Status::kAway;
        break;
      case kronop::v1::PresenceUpdate::STATUS_OFFLINE:
        out->status = PresenceHub::Status::kOffline;
        break;
      default:
        return invalid("status is required (STATUS_ONLINE, STATUS_AWAY or STATUS_OFFLINE)");
    }
    if (p.current_reel() < 0) return invalid("current_reel must not be negative");
    if (p.activity().size() > kMaxActivityBytes) return invalid("activity is too long");
    out->current_reel = p.current_reel();
    out->activity = p.activity();
    return {};
  }
  simdjson::dom::object root;
  if (PushError e = read_json_object(body, &root); !e.ok()) return e;
  bool have_status = false;
  for (auto field : root) {
    const std::string_view key = field.key;
    if (key == "status") {
      std::string_view name;
      if (field.value.get_string().get(name) != simdjson::SUCCESS ||
          !PresenceHub::parse_status(name, &out->status)) {
        return invalid("status must be one of online, away, offline");
      }
      have_status = true;
    } else if (key == "current_reel") {
      int64_t reel = 0;
      std::string_view digits;
      if (field.value.get_int64().get(reel) == simdjson::SUCCESS) {
      } else if (field.value.get_string().get(digits) == simdjson::SUCCESS) {
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), reel);
        if (ec != std::errc() || end != digits.data() + digits.size()) reel = -1;
      } else if (field.value.is_null()) {
        reel = 0;
      } else {
        reel = -1;
      }
      if (reel < 0 || reel > INT32_MAX) {
        return invalid("current_reel must be a reel number (0 for none)");
      }
      out->current_reel = static_cast<int32_t>(reel);
    } else if (key == "activity") {
      std::string_view activity;
      if (field.value.get_string().get(activity) != simdjson::SUCCESS ||
          activity.size() > kMaxActivityBytes) {
        return invalid("activity must be a string of at most 128 bytes");
      }
      out->activity.assign(activity);
    } else {
      return invalid("unknown member in the body (allowed: status, current_reel, activity)");
    }
  }
  if (!have_status) return invalid("status is required (online, away or offline)");
  return {};
}

PushError read_interaction(std::string_view event, std::string_view payload,
                           std::size_t max_comment_bytes, kronop::v1::Interaction *out) {
  out->Clear();
  if (event == "like") {
    out->set_kind(kronop::v1::Interaction::KIND_LIKE);
  } else if (event == "comment") {
    out->set_kind(kronop::v1::Interaction::KIND_COMMENT);
  } else if (event == "share") {
    out->set_kind(kronop::v1::Interaction::KIND_SHARE);
  } else {
    return invalid("unhandled event");
  }
  simdjson::dom::object root;
  if (PushError e = read_json_object(payload, &root); !e.ok()) return e;
  for (auto field : root) {
    if (field.key != "text" || event != "comment") {
      return invalid(event == "comment" ? "a comment has only a text"
                                        : "a like or a share has no fields");
    }
    std::string_view body;
    if (field.value.get_string().get(body) != simdjson::SUCCESS) {
      return invalid("text must be a string");
    }
    if (body.empty()) return invalid("empty comment");
    if (body.size() > max_comment_bytes) return {PushFault::kTooLong, "comment too long"};
    out->set_text(std::string(body));
  }
  if (event == "comment" && out->text().empty()) return invalid("a comment needs a text");
  return {};
}

void ClientPushes::handle(Connection *c, const phoenix::ClientMessage &m) {
  auto reply = [&](phoenix::ReplyStatus st, std::string_view response) {
    server_.send(
        c, text(phoenix::encode_reply(m.join_ref.json, m.ref.json, m.topic_json, st, response)));
  };
  const ServerOptions &o = server_.options();
  if (m.topic.starts_with("reel:") &&
      (m.event == "like" || m.event == "comment" || m.event == "share") && o.publisher != nullptr) {
    std::string id;
    PushError e = interact(c, m, &id);
    if (e.fault == PushFault::kInvalid || e.fault == PushFault::kTooLong ||
        e.fault == PushFault::kUnauthenticated) {
      server_.bump(Counter::kInteractionsInvalid);
    } else if (e.fault == PushFault::kRateLimited) {
      server_.bump(Counter::kInteractionsRateLimited);
    } else if (e.ok()) {
      server_.bump(Counter::kInteractions);
    }
    if (!e.ok()) {
      reply(phoenix::ReplyStatus::kError, phoenix_reason(e));
    } else {
      reply(phoenix::ReplyStatus::kOk, R"({"id":")" + id + R"("})");
    }
    return;
  }
  if (m.topic.starts_with("user:") && m.event == "update_presence" && o.rest != nullptr) {
    // The user's own topic (only that user can have joined it).
    StatusChange change;
    PushError e = read_status_change(false, m.payload, &change);
    if (!e.ok()) {
      reply(phoenix::ReplyStatus::kError, phoenix_reason(e));
      return;
    }
    reply(phoenix::ReplyStatus::kOk, o.rest->apply_status(c->identity.user_id, change));
    return;
  }
  reply(phoenix::ReplyStatus::kError, R"({"reason":"unhandled event"})");
}

PushError ClientPushes::interact(Connection *c, const phoenix::ClientMessage &m,
                                 std::string *id_out) {
  const ServerOptions &o = server_.options();
  if (!c->identity.authenticated()) {
    return {PushFault::kUnauthenticated, "authentication required: connect with a token"};
  }
  kronop::v1::Envelope e;
  PushError error =
      read_interaction(m.event, m.payload, o.max_comment_bytes, e.mutable_interaction());
  if (!error.ok()) return error;
  if (o.interaction_limiter != nullptr &&
      !o.interaction_limiter->allow(c->identity.user_id, monotonic_ms())) {
    return {PushFault::kRateLimited, "rate limited: too many interactions"};
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
  if (o.publisher->publish(e) != KRONOP_OK) return {PushFault::kBusy, "busy: try again"};
  *id_out = id;
  return {};
}

}  // namespace kronop::daemon
