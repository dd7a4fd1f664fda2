// A real Redis Cluster for the tests of sharded pub/sub: N masters (no replicas), each a
// RedisServer (redis_server.h) with cluster mode on, a directory and ports of its own.
//
// They are joined as redis-cli --cluster create would, without redis-cli: each master is
// given an even, contiguous share of the 16384 slots (CLUSTER ADDSLOTSRANGE, Redis 7) and a
// config epoch of its own (so that no epoch collision has to be resolved), then the first
// meets the others (CLUSTER MEET with the bus port). The cluster is up once every node says
// cluster_state:ok and lists N ranges in CLUSTER SLOTS: gossip has told each of them the
// others' slots.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "redis_server.h"

namespace kronop::test {

class RedisCluster {
 public:
  explicit RedisCluster(int masters = 3);
  ~RedisCluster();  // every node SIGKILLed, and their directories removed
  RedisCluster(const RedisCluster &) = delete;
  RedisCluster &operator=(const RedisCluster &) = delete;

  // Starts the nodes, joins them and waits until the cluster is up (at most 15 s); false,
  // with the reason in error(), when it is not.
  bool start();
  // Stops node `index` with `sig` (it keeps its port, directory and nodes.conf).
  void stop(int index, int sig);
  // Starts node `index` again (it rejoins with its nodes.conf) and waits until every
  // running node says cluster_state:ok again (at most 15 s).
  bool start(int index);
  // Every running node says cluster_state:ok and lists all the masters' ranges, within
  // `timeout`.
  bool wait_until_ok(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  int size() const { return static_cast<int>(nodes_.size()); }
  std::vector<int> ports() const;
  std::vector<std::string> urls() const;  // redis://127.0.0.1:PORT
  // The slots given to node `index` at start, first and last.
  std::pair<uint16_t, uint16_t> slots(int index) const;
  RedisServer &node(int index) { return *nodes_.at(static_cast<std::size_t>(index)); }
  const std::string &error() const { return error_; }

  // One command to node `index`, as RedisServer::command and RedisServer::reply.
  std::string command(int index, const std::vector<std::string> &argv);
  RedisServer::Reply reply(int index, const std::vector<std::string> &argv);

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::string error_;
};

}  // namespace kronop::test
