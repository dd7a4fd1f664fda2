// The Unix control socket kronopctl talks to (framing: control_protocol.h). Runs on the main
// libuv loop; a peer must be root, the daemon's user, or in the daemon's group
// (SO_PEERCRED), and the socket file is mode 0660.
//
// Bounds, so that one connection costs a bounded amount of memory whatever its peer does
// (kronopd(8), "The control socket"):
//  - a request's length prefix is at most kMaxControlRequest (4 KiB): a larger one is
//    answered with an error and the connection closed, before its body is read;
//  - a connection's requests are answered one at a time, and none is read while one waits
//    for its answer;
//  - replies not yet taken by the peer: while a connection has kMaxControlUnsentBytes
//    (256 KiB) or kMaxControlUnsentReplies (64) of them queued, kronopd stops reading its
//    requests (backpressure) and reads again once the peer has taken them. So a connection
//    holds at most one read (64 KiB) and a partial request of received bytes, and at most
//    256 KiB plus one reply (1 MiB at most) of unsent ones. A peer that pipelines requests
//    and never reads stalls itself, not the daemon; a tail-like client that waits between
//    requests, or reads slowly, is served as it reads.
//  - a request must arrive whole within kControlRequestDeadlineMs (5 s) of its first byte
//    (counted while kronopd reads the connection): else the connection is closed. A
//    connection between two requests may stay open as long as it likes.
// Every log line a peer can cause is throttled (log::Throttle), per kind.
#pragma once

#include <uv.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "control_protocol.h"
#include "kronop/result.h"
#include "kronop/v1/control.pb.h"
#include "log.h"

namespace kronop::daemon {

inline constexpr uint64_t kControlRequestDeadlineMs = 5000;
inline constexpr std::size_t kMaxControlUnsentBytes = 256 * 1024;
inline constexpr std::size_t kMaxControlUnsentReplies = 64;

// One step of reading the control socket's framing: the first request in `in` (the bytes a
// connection has sent and kronopd has not consumed yet). The daemon and the fuzz target
// (tests/fuzz/control_fuzz.cc) both read requests with it.
struct ControlFrame {
  enum class Kind {
    kNeedMore,   // `in` holds no whole request yet; nothing is consumed
    kTooLarge,   // the length prefix is over kMaxControlRequest: refuse the connection
    kMalformed,  // a whole frame that is not a ControlRequest: consume `used`, answer an error
    kRequest,    // `request` is set: consume `used` and answer it
  };
  Kind kind = Kind::kNeedMore;
  std::size_t used = 0;  // bytes the frame takes from `in` (kMalformed, kRequest)
  uint32_t length = 0;   // the length prefix, once its 4 bytes are in
};
ControlFrame next_control_request(std::string_view in, kronop::v1::ControlRequest &request);

// Sends the response to one request; call it once, on the loop thread, now or later. Called
// after the client left, it does nothing.
using ControlReply = std::function<void(const kronop::v1::ControlResponse &)>;
// Answers one request; runs on the loop thread, and must not block it: an answer that needs
// other threads replies when they have answered. A client's next request is read once its
// previous one is answered.
using ControlResponder = std::function<void(const kronop::v1::ControlRequest &, ControlReply)>;

class ControlServer {
 public:
  ControlServer(uv_loop_t *loop, std::string path, ControlResponder responder);
  ~ControlServer();
  ControlServer(const ControlServer &) = delete;
  ControlServer &operator=(const ControlServer &) = delete;

  // Binds and listens; replaces a stale socket file left by a dead daemon, but refuses to
  // take over one a live daemon answers on.
  Result<bool> listen();
  // Stops accepting and closes every client; the loop finishes the closes.
  void close();

 private:
  struct Client;
  // The lines a peer can cause, each throttled on its own.
  enum class Fault { kAccept, kRefused, kTooLarge, kDeadline, kBackpressure, kCount };
  static void on_connection(uv_stream_t *server, int status);
  // Every second: closes the connections past their deadline (Client::deadline_ms).
  static void on_sweep(uv_timer_t *timer);
  // Whether a line of `kind` may be written now; `suppressed` counts those that were not.
  bool may_log(Fault kind, uint64_t *suppressed);
  // Starts or stops reading `c`'s requests, as its state asks (see control.h's bounds).
  void update_reading(Client *c);
  // Takes the whole requests `c` has received, one at a time: the next once the previous
  // is answered.
  void serve(Client *c);
  void serve_requests(Client *c);
  void send(Client *c, const kronop::v1::ControlResponse &response);

  uv_loop_t *loop_;
  std::string path_;
  ControlResponder responder_;
  uv_pipe_t pipe_{};
  bool listening_ = false;
  std::unordered_set<Client *> clients_;  // open connections, closed by close()
  // Open connections by id: a late reply finds its client, or that it is gone.
  std::unordered_map<uint64_t, Client *> by_id_;
  uint64_t next_id_ = 0;
  std::vector<char> read_buffer_ = std::vector<char>(64 * 1024);
  uv_timer_t sweep_{};
  log::Throttle fault_log_[static_cast<std::size_t>(Fault::kCount)];
};

}  // namespace kronop::daemon
