// A real Redis for the cluster's tests: Debian's redis-server, started on a free loopback
// port with a directory of its own, killed when the test ends. Tests talk to it through
// hiredis's blocking API (command()) to check what kronopd did there.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <memory>

#include <string>
#include <vector>

#include "test_support.h"

namespace kronop::test {

class RedisServer {
 public:
  struct Options {
    std::string password;      // requirepass, when not empty
    bool append_only = false;  // AOF on (appendfsync everysec), for restarts that keep data
    // A Redis Cluster node (redis_cluster.h joins them): its nodes.conf in its directory, a
    // node timeout of 2 s, and its cluster bus on a second free port (Redis's default, the
    // port plus 10000, may be taken or above 65535).
    bool cluster = false;
  };
  explicit RedisServer(Options options);
  RedisServer() : RedisServer(Options{}) {}
  ~RedisServer();  // SIGKILL, and its directory removed
  RedisServer(const RedisServer &) = delete;
  RedisServer &operator=(const RedisServer &) = delete;

  // Starts it (again: the same port and directory) and waits until it answers PING; false
  // (with the reason in error()) when it does not within 10 s.
  bool start();
  // Stops it with `sig` (SIGTERM: Redis saves and exits) and waits for it.
  void stop(int sig);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  int port() const { return port_; }
  int bus_port() const { return bus_port_; }  // cluster nodes
  const std::string &dir() const { return dir_.path; }
  // redis://[:PASSWORD@]127.0.0.1:PORT
  std::string url() const;
  const std::string &error() const { return error_; }

  // One command through a fresh connection; the reply as text: a string or status as is,
  // an integer in decimal, an error as "ERR ...", nil as "(nil)", an array as its elements
  // joined by '\n'. "" with error() set when it could not be sent.
  std::string command(const std::vector<std::string> &argv);
  // The same, the reply as hiredis read it (null with error() set when none came).
  using Reply = std::unique_ptr<redisReply, void (*)(void *)>;
  Reply reply(const std::vector<std::string> &argv);

 private:
  Options options_;
  TempDir dir_;
  int port_ = 0;
  int bus_port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace kronop::test
