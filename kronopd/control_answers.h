// What kronopd answers on its control socket (control.h carries the bytes): stats, health,
// a user's presence, a reel's viewers, the connections. Runs on the main loop's thread and
// never blocks it (the acceptor and the signals run there too). A user's presence is, in a
// cluster, read from Redis (RestApi::read_user): the answer comes back to the main loop
// through the same handover as the loops' parts.
//
// Lists in an answer are bounded: kronopctl refuses responses over kMaxControlMessage, so a
// list that would be larger (a reel with 100,000 viewers, as many connections) stops short,
// with its full count beside it.
//
// Connections are described by the I/O loops themselves: a request asks every loop at once
// (IoLoop::describe_connections); each loop hands its part over, from its own thread, under
// a lock, and wakes the main loop (an async handle), which answers once every part is in.
// A loop that has not answered within two seconds (a loop answers at its next turn,
// normally within a millisecond) makes the answer an error saying which loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "control.h"
#include "io_loop.h"
#include "kronop/v1/control.pb.h"
#include "presence.h"
#include "rest_api.h"
#include "stats.h"

namespace kronop::daemon {

class ControlAnswers {
 public:
  // `rest` reads a user's status (the cluster's, in a cluster: RestApi::read_user).
  ControlAnswers(uv_loop_t *loop, const Stats &stats, const PresenceHub &presence,
                 const RestApi &rest, std::vector<std::unique_ptr<IoLoop>> &loops);
  ControlAnswers(const ControlAnswers &) = delete;
  ControlAnswers &operator=(const ControlAnswers &) = delete;

  // The ControlResponder (control.h).
  void answer(const kronop::v1::ControlRequest &req, ControlReply reply);
  // Closes its handles (at the end of a drain); answers still gathering are dropped.
  void close();

 private:
  // Answered on the main loop once the status is read (from Redis, in a cluster).
  void user_presence(const std::string &user, ControlReply reply);
  void reel_presence(const std::string &reel_id, kronop::v1::ControlResponse &resp) const;
  void gather_connections(const std::string &topic, ControlReply reply);

  // One connections request while the loops' parts come in.
  struct Gathering {
    uint64_t id = 0;
    ControlReply reply;
    uint64_t deadline_ms = 0;
    std::vector<std::optional<std::vector<ClientServer::ConnectionInfo>>> parts;  // per loop
  };
  // What the loops hand over (any thread) and whether the main loop still takes it.
  struct Handover {
    std::mutex mutex;
    bool closed = false;  // guarded by mutex: the async handle is closed, nothing is sent
    uv_async_t async{};
    struct Part {
      uint64_t gathering = 0;
      std::size_t loop = 0;
      std::vector<ClientServer::ConnectionInfo> connections;
    };
    std::vector<Part> parts;                   // guarded by mutex
    std::vector<std::function<void()>> calls;  // guarded by mutex: run on the main loop
  };
  static void on_parts(uv_async_t *handle);
  static void on_deadline(uv_timer_t *timer);
  // Answers the gatherings that are complete, or past their deadline (`now_ms`).
  void settle(uint64_t now_ms);
  void finish(Gathering &g, std::optional<std::size_t> missing, bool shutting_down);

  const Stats &stats_;
  const PresenceHub &presence_;
  const RestApi &rest_;
  std::vector<std::unique_ptr<IoLoop>> &loops_;
  std::shared_ptr<Handover> handover_;
  uv_timer_t deadline_{};
  std::vector<Gathering> gatherings_;
  uint64_t next_id_ = 0;
};

}  // namespace kronop::daemon
