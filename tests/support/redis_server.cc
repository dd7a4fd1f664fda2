#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace kronop::test {

namespace {

// A port the kernel says is free now (bound, read, closed): Redis binds it right after.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// Debian's redis-server (or the one KRONOP_REDIS_SERVER names).
std::string redis_server_binary() {
  const char *env = std::getenv("KRONOP_REDIS_SERVER");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/redis-server";
}

std::string text_of(const redisReply *r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (std::size_t i = 0; i < r->elements; ++i) {
        if (i > 0) out += '\n';
        out += text_of(r->element[i]);
      }
      return out;
    }
    default:
      return "?";
  }
}

}  // namespace

RedisServer::RedisServer(Options options) : options_(std::move(options)) {}

RedisServer::~RedisServer() {
  if (pid_ > 0) stop(SIGKILL);
}

std::string RedisServer::url() const {
  return "redis://" + (options_.password.empty() ? "" : ":" + options_.password + "@") +
         "127.0.0.1:" + std::to_string(port_);
}

bool RedisServer::start() {
  error_.clear();
  // A restart keeps the port: the tests' kronopd have the URL.
  const bool restart = port_ != 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!restart) {
      port_ = free_port();
      // Should the kernel hand out the same port twice, Redis exits: another attempt.
      bus_port_ = options_.cluster ? free_port() : 0;
    }
    std::vector<std::string> argv = {redis_server_binary(),
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_.path,
                                     "--logfile",
                                     dir_.path + "/redis.log",
                                     "--save",
                                     "",
                                     "--daemonize",
                                     "no",
                                     "--protected-mode",
                                     "no",
                                     "--appendonly",
                                     options_.append_only ? "yes" : "no"};
    if (options_.cluster) {
      argv.insert(argv.end(),
                  {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", "2000", "--cluster-port", std::to_string(bus_port_)});
    }
    if (!options_.password.empty()) {
      argv.push_back("--requirepass");
      argv.push_back(options_.password);
    }
    pid_ = spawn(argv, dir_.path + "/redis.out");
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < give_up) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;  // it exited (the port was taken meanwhile?): another port
      }
      const std::string pong = command({"PING"});
      if (pong == "PONG" || pong.rfind("NOAUTH", 0) == 0) {
        error_.clear();
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) stop(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  error_ = "redis-server did not start (see " + dir_.path + "/redis.log)";
  return false;
}

void RedisServer::stop(int sig) {
  if (pid_ <= 0) return;
  ::kill(pid_, sig);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

RedisServer::Reply RedisServer::reply(const std::vector<std::string> &argv) {
  Reply none(nullptr, freeReplyObject);
  timeval timeout{2, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", port_, timeout);
  if (c == nullptr || c->err != 0) {
    error_ = c != nullptr ? c->errstr : "cannot connect";
    if (c != nullptr) redisFree(c);
    return none;
  }
  redisSetTimeout(c, timeout);
  auto send = [&](const std::vector<std::string> &args) -> Reply {
    std::vector<const char *> ptrs;
    std::vector<std::size_t> lens;
    for (const auto &a : args) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    Reply r(static_cast<redisReply *>(
                redisCommandArgv(c, static_cast<int>(ptrs.size()), ptrs.data(), lens.data())),
            freeReplyObject);
    if (!r) error_ = c->errstr;
    return r;
  };
  if (!options_.password.empty() && !(argv.size() == 1 && argv[0] == "PING")) {
    send({"AUTH", options_.password});
  }
  Reply out = send(argv);
  redisFree(c);
  return out;
}

std::string RedisServer::command(const std::vector<std::string> &argv) {
  Reply r = reply(argv);
  return r ? text_of(r.get()) : std::string();
}

}  // namespace kronop::test
