// What kronopd answers on its control socket (control.h carries the bytes): stats, health,
// a user's presence, a reel's viewers, the connections. Runs on the main loop's thread.
//
// Lists in an answer are bounded: kronopctl refuses responses over kMaxControlMessage, so a
// list that would be larger (a reel with 100,000 viewers, as many connections) stops short,
// with its full count beside it. Connections are described by the I/O loops themselves,
// each asked at once and given two seconds to answer (a loop answers at its next turn,
// normally within a millisecond); the main loop waits meanwhile.
#pragma once

#include <memory>
#include <vector>

#include "io_loop.h"
#include "kronop/v1/control.pb.h"
#include "presence.h"
#include "stats.h"

namespace kronop::daemon {

class ControlAnswers {
 public:
  ControlAnswers(const Stats &stats, const PresenceHub &presence,
                 std::vector<std::unique_ptr<IoLoop>> &loops)
      : stats_(stats), presence_(presence), loops_(loops) {}

  void answer(const kronop::v1::ControlRequest &req, kronop::v1::ControlResponse &resp);

 private:
  void user_presence(const std::string &user, kronop::v1::ControlResponse &resp) const;
  void reel_presence(const std::string &reel_id, kronop::v1::ControlResponse &resp) const;
  void connections(const std::string &topic, kronop::v1::ControlResponse &resp);

  const Stats &stats_;
  const PresenceHub &presence_;
  std::vector<std::unique_ptr<IoLoop>> &loops_;
};

}  // namespace kronop::daemon
