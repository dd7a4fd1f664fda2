// The Unix control socket kronopctl talks to (framing: control_protocol.h). Runs on the main
// libuv loop; a peer must be root, the daemon's user, or in the daemon's group
// (SO_PEERCRED), and the socket file is mode 0660.
#pragma once

#include <uv.h>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "control_protocol.h"
#include "kronop/result.h"
#include "kronop/v1/control.pb.h"

namespace kronop::daemon {

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
  static void on_connection(uv_stream_t *server, int status);
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
};

}  // namespace kronop::daemon
