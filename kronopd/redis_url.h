// Where kronopd reaches Redis: the value of --redis, parsed and checked before anything
// connects, so that a mistyped URL is a clear error at start rather than a link that never
// comes up.
//
//   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]   HOST: a name, an IPv4 address or [IPv6]
//   unix:///PATH[?db=DB]                          a Unix socket
//
// PORT defaults to 6379, DB to 0. USER and PASSWORD may be percent-encoded (a password with
// '@' or ':' in it); --redis-password-file, which keeps the password out of the command
// line and the process list, takes precedence over a password in the URL.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kronop/result.h"

namespace kronop::daemon {

struct RedisEndpoint {
  bool unix_socket = false;
  std::string host;  // a name or an address, without brackets (TCP)
  uint16_t port = 6379;
  std::string path;  // the socket (Unix)
  std::string user;  // empty: the default user (AUTH with the password only)
  std::string password;
  uint32_t db = 0;

  // For logs and kronopctl cluster: the URL without the password.
  std::string display() const;
};

// The endpoint `url` names, or an error that says what is wrong with it.
Result<RedisEndpoint> parse_redis_url(std::string_view url);

}  // namespace kronop::daemon
