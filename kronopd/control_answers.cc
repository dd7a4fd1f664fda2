// The control socket's answers; see control_answers.h.
#include "control_answers.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>

#include "control.h"
#include "envelope_validation.h"
#include "kronop/clock.h"
#include "rest_api.h"
#include "system_api.h"

namespace kronop::daemon {
namespace {

constexpr auto kLoopAnswerTimeout = std::chrono::seconds(2);
constexpr std::size_t kListBudget = kMaxControlMessage - 64 * 1024;

}  // namespace

void ControlAnswers::answer(const kronop::v1::ControlRequest &req,
                            kronop::v1::ControlResponse &resp) {
  if (req.has_stats()) {
    stats_.snapshot(*resp.mutable_stats());
  } else if (req.has_health()) {
    kronop::v1::DaemonStats s;
    stats_.snapshot(s);
    *resp.mutable_health() = assess_health(s);
  } else if (req.has_user_presence()) {
    user_presence(req.user_presence().user_id(), resp);
  } else if (req.has_reel_presence()) {
    reel_presence(req.reel_presence().reel_id(), resp);
  } else if (req.has_connections()) {
    connections(req.connections().topic(), resp);
  } else {
    resp.set_error("unknown control request");
  }
}

void ControlAnswers::user_presence(const std::string &user,
                                   kronop::v1::ControlResponse &resp) const {
  auto p = presence_.user(user, realtime_ns() / 1'000'000);
  if (!p) {
    resp.set_error("no presence for user " + user);
    return;
  }
  *resp.mutable_user_presence() = user_presence_body(*p);
}

void ControlAnswers::reel_presence(const std::string &reel_id,
                                   kronop::v1::ControlResponse &resp) const {
  const std::string topic = "reel:" + reel_id;
  if (!valid_topic(topic)) {
    resp.set_error("invalid reel id '" + reel_id + "'");
    return;
  }
  auto *r = resp.mutable_reel_presence();
  r->set_topic(topic);
  const auto present = presence_.present(topic);
  uint32_t metas = 0;
  std::size_t listed_bytes = 0;
  for (const PresenceHub::Present &p : present) {
    metas += static_cast<uint32_t>(p.metas);
    listed_bytes += p.user_id.size() + 16;  // the id, its tags and lengths, the count
    if (listed_bytes > kListBudget) continue;
    auto *u = r->add_users();
    u->set_user_id(p.user_id);
    u->set_metas(static_cast<uint32_t>(p.metas));
  }
  r->set_users_count(static_cast<uint32_t>(present.size()));
  r->set_metas_count(metas);
}

// Asks every loop at once, then collects the answers: all connections, oldest first.
void ControlAnswers::connections(const std::string &topic, kronop::v1::ControlResponse &resp) {
  std::vector<std::optional<std::future<std::vector<ClientServer::ConnectionInfo>>>> answers;
  answers.reserve(loops_.size());
  for (auto &l : loops_) answers.push_back(l->describe_connections(topic));
  const auto deadline = std::chrono::steady_clock::now() + kLoopAnswerTimeout;
  std::vector<std::pair<uint32_t, ClientServer::ConnectionInfo>> all;
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    auto &answer = answers[i];
    const bool ready = answer && answer->wait_until(deadline) == std::future_status::ready;
    if (!ready) {
      resp.clear_result();
      resp.set_error("I/O loop " + std::to_string(i) +
                     (answer ? " did not answer within 2 s" : " is shutting down"));
      return;
    }
    for (ClientServer::ConnectionInfo &info : answer->get()) {
      all.emplace_back(loops_[i]->index(), std::move(info));
    }
  }
  std::sort(all.begin(), all.end(), [](const auto &a, const auto &b) {
    return a.second.accepted_ns < b.second.accepted_ns;
  });
  const uint64_t now = monotonic_ns();
  auto *out = resp.mutable_connections();
  out->set_total(static_cast<uint32_t>(all.size()));
  std::size_t listed_bytes = 0;
  for (const auto &[loop, info] : all) {
    kronop::v1::ClientConnection c;
    c.set_loop(loop);
    c.set_peer(info.peer);
    c.set_user_id(info.user_id);
    c.set_mode(info.mode);
    c.set_format(info.protobuf ? "protobuf" : "json");
    for (const std::string &t : info.topics) c.add_topics(t);
    c.set_unsent_bytes(info.unsent_bytes);
    c.set_age_seconds(static_cast<double>(now - info.accepted_ns) / 1e9);
    listed_bytes += c.ByteSizeLong() + 8;  // and its tag and length
    if (listed_bytes > kListBudget) break;
    *out->add_connections() = std::move(c);
  }
}

}  // namespace kronop::daemon
