#include "redis_cluster.h"

#include <hiredis/hiredis.h>

#include <thread>

#include "redis_slots.h"

namespace kronop::test {

RedisCluster::RedisCluster(int masters) {
  for (int i = 0; i < masters; ++i) {
    RedisServer::Options options;
    options.cluster = true;
    nodes_.push_back(std::make_unique<RedisServer>(options));
  }
}

RedisCluster::~RedisCluster() = default;  // each RedisServer kills its node

std::vector<int> RedisCluster::ports() const {
  std::vector<int> out;
  for (const auto &n : nodes_) out.push_back(n->port());
  return out;
}

std::vector<std::string> RedisCluster::urls() const {
  std::vector<std::string> out;
  for (const auto &n : nodes_) out.push_back(n->url());
  return out;
}

std::pair<uint16_t, uint16_t> RedisCluster::slots(int index) const {
  const int n = size();
  return {static_cast<uint16_t>(index * daemon::kClusterSlots / n),
          static_cast<uint16_t>((index + 1) * daemon::kClusterSlots / n - 1)};
}

std::string RedisCluster::command(int index, const std::vector<std::string> &argv) {
  return node(index).command(argv);
}

RedisServer::Reply RedisCluster::reply(int index, const std::vector<std::string> &argv) {
  return node(index).reply(argv);
}

bool RedisCluster::start() {
  error_.clear();
  if (nodes_.empty()) {
    error_ = "a cluster of no masters";
    return false;
  }
  auto ok = [this](int index, const std::vector<std::string> &argv) {
    const std::string answer = command(index, argv);
    if (answer == "OK") return true;
    error_ = "node " + std::to_string(index) + ": " + argv[0] + " " + argv[1] + " answered \"" +
             answer + "\" " + node(index).error();
    return false;
  };
  for (int i = 0; i < size(); ++i) {
    if (!node(i).start()) {
      error_ = "node " + std::to_string(i) + ": " + node(i).error();
      return false;
    }
    // Distinct epochs before the nodes meet, as redis-cli gives them.
    const auto [first, last] = slots(i);
    if (!ok(i, {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)}) ||
        !ok(i, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)})) {
      return false;
    }
  }
  for (int i = 1; i < size(); ++i) {
    if (!ok(0, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(node(i).port()),
                std::to_string(node(i).bus_port())})) {
      return false;
    }
  }
  return wait_until_ok();
}

void RedisCluster::stop(int index, int sig) { node(index).stop(sig); }

bool RedisCluster::start(int index) {
  error_.clear();
  if (!node(index).start()) {
    error_ = "node " + std::to_string(index) + ": " + node(index).error();
    return false;
  }
  return wait_until_ok();
}

bool RedisCluster::wait_until_ok(std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  std::string waiting;
  for (;;) {
    waiting.clear();
    for (int i = 0; i < size() && waiting.empty(); ++i) {
      if (!node(i).running()) continue;
      if (command(i, {"CLUSTER", "INFO"}).find("cluster_state:ok\r\n") == std::string::npos) {
        waiting = "node " + std::to_string(i) + " to say cluster_state:ok";
        break;
      }
      RedisServer::Reply r = reply(i, {"CLUSTER", "SLOTS"});
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != nodes_.size()) {
        waiting = "node " + std::to_string(i) + " to list " + std::to_string(size()) +
                  " ranges in CLUSTER SLOTS";
      }
    }
    if (waiting.empty()) return true;
    if (std::chrono::steady_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error_ = "timed out waiting for " + waiting;
  return false;
}

}  // namespace kronop::test
