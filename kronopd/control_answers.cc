// The control socket's answers; see control_answers.h.
#include "control_answers.h"

#include <algorithm>
#include <optional>

#include "control.h"
#include "envelope_validation.h"
#include "kronop/clock.h"
#include "rest_api.h"
#include "system_api.h"

namespace kronop::daemon {
namespace {

constexpr uint64_t kLoopAnswerMs = 2000;
constexpr std::size_t kListBudget = kMaxControlMessage - 64 * 1024;

}  // namespace

ControlAnswers::ControlAnswers(uv_loop_t *loop, const Stats &stats, const PresenceHub &presence,
                               const RestApi &rest, std::vector<std::unique_ptr<IoLoop>> &loops)
    : stats_(stats),
      presence_(presence),
      rest_(rest),
      loops_(loops),
      handover_(std::make_shared<Handover>()) {
  uv_async_init(loop, &handover_->async, on_parts);
  handover_->async.data = this;
  uv_timer_init(loop, &deadline_);
  deadline_.data = this;
  // They serve the control socket's requests; they must not keep the loop alive.
  uv_unref(reinterpret_cast<uv_handle_t *>(&handover_->async));
  uv_unref(reinterpret_cast<uv_handle_t *>(&deadline_));
}

void ControlAnswers::close() {
  {
    std::lock_guard<std::mutex> lock(handover_->mutex);
    if (handover_->closed) return;
    handover_->closed = true;
  }
  // The handover outlives the handle's close (the lambdas of loops that answer late hold
  // it), and this object outlives the main loop.
  uv_close(reinterpret_cast<uv_handle_t *>(&handover_->async), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&deadline_), nullptr);
  gatherings_.clear();
}

void ControlAnswers::answer(const kronop::v1::ControlRequest &req, ControlReply reply) {
  if (req.has_connections()) {
    gather_connections(req.connections().topic(), std::move(reply));
    return;
  }
  if (req.has_user_presence()) {
    user_presence(req.user_presence().user_id(), std::move(reply));
    return;
  }
  kronop::v1::ControlResponse resp;
  if (req.has_stats()) {
    stats_.snapshot(*resp.mutable_stats());
  } else if (req.has_health()) {
    kronop::v1::DaemonStats s;
    stats_.snapshot(s);
    *resp.mutable_health() = assess_health(s);
  } else if (req.has_reel_presence()) {
    reel_presence(req.reel_presence().reel_id(), resp);
  } else {
    resp.set_error("unknown control request");
  }
  reply(resp);
}

void ControlAnswers::user_presence(const std::string &user, ControlReply reply) {
  rest_.read_user(user, [handover = handover_, user, reply = std::move(reply)](
                            std::optional<PresenceHub::UserPresence> p) mutable {
    kronop::v1::ControlResponse resp;
    if (p) {
      *resp.mutable_user_presence() = user_presence_body(*p);
    } else {
      resp.set_error("no presence for user " + user);
    }
    // On the main loop (this may run on the cluster thread).
    std::lock_guard<std::mutex> lock(handover->mutex);
    if (handover->closed) return;
    handover->calls.push_back([reply = std::move(reply), resp = std::move(resp)] { reply(resp); });
    uv_async_send(&handover->async);
  });
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

void ControlAnswers::gather_connections(const std::string &topic, ControlReply reply) {
  Gathering g;
  g.id = ++next_id_;
  g.reply = std::move(reply);
  g.deadline_ms = monotonic_ms() + kLoopAnswerMs;
  g.parts.resize(loops_.size());
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    const bool asked = loops_[i]->describe_connections(
        topic, [handover = handover_, id = g.id,
                i](std::vector<ClientServer::ConnectionInfo> connections) {
          // On loop i's thread.
          std::lock_guard<std::mutex> lock(handover->mutex);
          if (handover->closed) return;
          handover->parts.push_back({id, i, std::move(connections)});
          uv_async_send(&handover->async);
        });
    if (!asked) {
      finish(g, i, true);
      return;
    }
  }
  gatherings_.push_back(std::move(g));
  if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&deadline_))) {
    uv_timer_start(&deadline_, on_deadline, kLoopAnswerMs, 0);
  }
}

void ControlAnswers::on_parts(uv_async_t *handle) {
  auto *self = static_cast<ControlAnswers *>(handle->data);
  std::vector<Handover::Part> parts;
  std::vector<std::function<void()>> calls;
  {
    std::lock_guard<std::mutex> lock(self->handover_->mutex);
    parts.swap(self->handover_->parts);
    calls.swap(self->handover_->calls);
  }
  for (auto &call : calls) call();
  for (Handover::Part &p : parts) {
    for (Gathering &g : self->gatherings_) {
      if (g.id == p.gathering) g.parts[p.loop] = std::move(p.connections);
    }
  }
  self->settle(monotonic_ms());
}

void ControlAnswers::on_deadline(uv_timer_t *timer) {
  static_cast<ControlAnswers *>(timer->data)->settle(monotonic_ms());
}

void ControlAnswers::settle(uint64_t now_ms) {
  uint64_t next_deadline = 0;
  for (auto it = gatherings_.begin(); it != gatherings_.end();) {
    std::optional<std::size_t> missing;
    for (std::size_t i = 0; i < it->parts.size() && !missing; ++i) {
      if (!it->parts[i]) missing = i;
    }
    if (!missing || now_ms >= it->deadline_ms) {
      Gathering g = std::move(*it);
      it = gatherings_.erase(it);
      finish(g, missing, false);
      continue;
    }
    if (next_deadline == 0 || it->deadline_ms < next_deadline) next_deadline = it->deadline_ms;
    ++it;
  }
  if (next_deadline != 0) {
    uv_timer_start(&deadline_, on_deadline, next_deadline > now_ms ? next_deadline - now_ms : 0, 0);
  } else {
    uv_timer_stop(&deadline_);
  }
}

// Every loop's connections, oldest first; or the error naming the loop that did not answer.
void ControlAnswers::finish(Gathering &g, std::optional<std::size_t> missing, bool shutting_down) {
  kronop::v1::ControlResponse resp;
  if (missing) {
    resp.set_error("I/O loop " + std::to_string(*missing) +
                   (shutting_down ? " is shutting down" : " did not answer within 2 s"));
    g.reply(resp);
    return;
  }
  std::vector<std::pair<uint32_t, ClientServer::ConnectionInfo>> all;
  for (std::size_t i = 0; i < g.parts.size(); ++i) {
    for (ClientServer::ConnectionInfo &info : *g.parts[i]) {
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
  g.reply(resp);
}

}  // namespace kronop::daemon
