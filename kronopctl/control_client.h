// kronopctl's side of the control socket: one blocking request/response exchange.
#pragma once

#include <string>

#include "kronop/result.h"
#include "kronop/v1/control.pb.h"

namespace kronop::ctl {

// Sends `request` to the daemon at `socket_path` and waits (at most timeout_ms) for the
// response. Errors say whether the daemon is down, the socket refused us, or it timed out.
Result<kronop::v1::ControlResponse> call_daemon(const std::string &socket_path,
                                                const kronop::v1::ControlRequest &request,
                                                int timeout_ms = 5000);

}  // namespace kronop::ctl
