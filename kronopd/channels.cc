// A Phoenix socket's channels; see channels.h.
#include "channels.h"

#include <algorithm>

#include "envelope_validation.h"

namespace kronop::daemon {

JoinPolicy topic_policy(std::string_view topic, const Identity &who) {
  if (!valid_topic(topic)) return JoinPolicy::kUnmatched;
  if (topic.starts_with("user:")) {
    return who.authenticated() && topic.substr(5) == who.user_id ? JoinPolicy::kAllow
                                                                 : JoinPolicy::kUnauthorized;
  }
  if (topic == "system") return who.admin ? JoinPolicy::kAllow : JoinPolicy::kUnauthorized;
  return JoinPolicy::kAllow;
}

void ChannelRouter::route(const phoenix::ClientMessage &m, const Identity &who, RouteOutcome &out) {
  using phoenix::ReplyStatus;
  out.clear();
  auto reply = [&](std::string_view join_ref_json, ReplyStatus st, std::string_view response) {
    out.replies.push_back(
        phoenix::encode_reply(join_ref_json, m.ref.json, m.topic_json, st, response));
  };
  constexpr std::string_view kUnmatched = R"({"reason":"unmatched topic"})";

  if (m.topic == "phoenix") {
    if (m.event == "heartbeat") {
      reply("null", ReplyStatus::kOk, "{}");
    } else {
      reply("null", ReplyStatus::kError, kUnmatched);
    }
    return;
  }
  auto joined = std::find_if(channels_.begin(), channels_.end(),
                             [&](const Channel &ch) { return ch.topic == m.topic; });
  if (m.event == "phx_join") {
    switch (topic_policy(m.topic, who)) {
      case JoinPolicy::kAllow:
        break;
      case JoinPolicy::kUnmatched:
        reply("null", ReplyStatus::kError, kUnmatched);
        return;
      case JoinPolicy::kUnauthorized:
        ++out.unauthorized;
        reply(m.join_ref.json, ReplyStatus::kError, R"({"reason":"unauthorized"})");
        return;
    }
    if (joined == channels_.end() && channels_.size() >= max_channels_) {
      ++out.over_limit;
      reply(m.join_ref.json, ReplyStatus::kError, R"({"reason":"too many channels joined"})");
      return;
    }
    // The ok reply is the server's to send (see RouteOutcome::joined).
    out.joined = true;
    if (joined != channels_.end()) {
      // A second join of the same topic replaces the first, as in Phoenix: the old join is
      // told it is closed. The subscription stays.
      out.replies.push_back(phoenix::encode_close(joined->join_ref_json, m.topic_json));
      joined->join_ref_json = std::string(m.join_ref.json);
    } else {
      channels_.push_back({std::string(m.topic), std::string(m.join_ref.json)});
      out.subscribe = channels_.back().topic;
    }
    return;
  }
  if (m.event == "phx_leave") {
    if (joined == channels_.end()) {
      reply(m.join_ref.json, ReplyStatus::kOk, "{}");
      return;
    }
    if (joined->join_ref_json != m.join_ref.json) return;  // a leave of an earlier join
    reply(m.join_ref.json, ReplyStatus::kOk, "{}");
    out.replies.push_back(phoenix::encode_close(joined->join_ref_json, m.topic_json));
    out.unsubscribe = joined->topic;
    channels_.erase(joined);
    return;
  }
  if (joined == channels_.end()) {
    reply("null", ReplyStatus::kError, kUnmatched);
    return;
  }
  out.push = true;
}

std::optional<std::string> ChannelRouter::drop(std::string_view topic) {
  auto it = std::find_if(channels_.begin(), channels_.end(),
                         [topic](const Channel &c) { return c.topic == topic; });
  if (it == channels_.end()) return std::nullopt;
  std::string join_ref = std::move(it->join_ref_json);
  channels_.erase(it);
  return join_ref;
}

}  // namespace kronop::daemon
