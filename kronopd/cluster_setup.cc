#include "cluster_setup.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "auth.h"
#include "kronop_ipc.h"
#include "log.h"
#include "redis_reply.h"

namespace kronop::daemon {

namespace {

using Context = std::unique_ptr<redisContext, void (*)(redisContext *)>;
using Reply = std::unique_ptr<redisReply, void (*)(void *)>;

Error failed(const std::string &step, const std::string &why) {
  std::string msg = step;
  msg += ": ";
  msg += why;
  return Error{-EIO, msg};
}

// One command on the blocking context; an error reply or none is a failure of `step`.
Result<Reply> ask(redisContext &c, const std::string &step, const std::vector<std::string> &argv) {
  std::vector<const char *> args;
  std::vector<std::size_t> lens;
  for (const std::string &a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  Reply r(static_cast<redisReply *>(
              redisCommandArgv(&c, static_cast<int>(args.size()), args.data(), lens.data())),
          freeReplyObject);
  if (!r) return failed(step, c.errstr[0] != '\0' ? c.errstr : "no answer");
  if (r->type == REDIS_REPLY_ERROR) return failed(step, describe_reply(*r));
  return r;
}

}  // namespace

Result<ClusterNodeOptions> cluster_options(const Config &config) {
  ClusterNodeOptions o;
  for (const std::string &url : config.redis) {
    auto endpoint = parse_redis_url(url);
    if (!endpoint.ok()) return Error{KRONOP_EINVAL, "--redis: " + endpoint.error().message};
    o.seeds.push_back(std::move(endpoint).value());
  }
  if (o.seeds.empty()) return Error{KRONOP_EINVAL, "--redis: no URL"};
  if (!config.redis_password_file.empty()) {
    std::string warning;
    auto password = read_secret_file(config.redis_password_file, &warning);
    if (!password.ok()) {
      return Error{KRONOP_EINVAL, "--redis-password-file: " + password.error().message};
    }
    if (!warning.empty()) {
      KLOG_WARN("event=config_warning key=redis-password-file warning=%s", log::q(warning).c_str());
    }
    for (RedisEndpoint &seed : o.seeds) seed.password = password.value();
  }
  // Several seeds: a Redis Cluster, which has only database 0 and speaks TCP.
  o.redis_cluster = o.seeds.size() > 1;
  if (o.redis_cluster) {
    for (const RedisEndpoint &seed : o.seeds) {
      if (seed.db != 0) {
        return Error{KRONOP_EINVAL,
                     "--redis: a Redis Cluster has only database 0 (" + seed.display() + ")"};
      }
    }
  }
  o.endpoint = o.seeds.front();
  o.history.size = config.redis_history_size;
  // The pipeline keeps at most max_queued / 2 waiting (Pipeline::max_outstanding): a drain
  // pass read before the check may add to them.
  o.max_queued = 2 * config.redis_max_waiting;
  o.history.ttl_s = config.redis_history_ttl;
  o.presence_options.ttl_ms = config.redis_presence_ttl * 1000;
  // As operators see the node in `kronopctl cluster`: the host's name (and, once it
  // listens, its client port: ClusterNode::use_presence).
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  o.presence_options.address = host;
  return o;
}

Result<RedisCheck> check_redis(const RedisEndpoint &e, uint32_t timeout_ms) {
  const timeval tv{static_cast<time_t>(timeout_ms / 1000),
                   static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  Context c(e.unix_socket ? redisConnectUnixWithTimeout(e.path.c_str(), tv)
                          : redisConnectWithTimeout(e.host.c_str(), e.port, tv),
            redisFree);
  if (!c) return failed("connect", "out of memory");
  if (c->err != 0) return failed("connect", c->errstr);
  redisSetTimeout(c.get(), tv);
  if (!e.password.empty()) {
    auto auth = e.user.empty() ? ask(*c, "AUTH", {"AUTH", e.password})
                               : ask(*c, "AUTH", {"AUTH", e.user, e.password});
    if (!auth.ok()) return auth.error();
  }
  if (e.db != 0) {
    if (auto sel = ask(*c, "SELECT", {"SELECT", std::to_string(e.db)}); !sel.ok()) {
      return sel.error();
    }
  }
  auto info = ask(*c, "INFO server", {"INFO", "server"});
  if (!info.ok()) return info.error();
  const std::string_view text = reply_text(*info.value());
  const auto at = text.find("redis_version:");
  if (at == std::string_view::npos) return failed("INFO server", "no redis_version: not a Redis?");
  std::string_view version = text.substr(at + 14);
  version = version.substr(0, version.find_first_of("\r\n"));
  uint64_t major = 0;
  if (!parse_decimal_u64(version.substr(0, version.find('.')), &major) || major < 7) {
    // Appended, never "literal" + std::string&& (GCC 12 -O3 -Wrestrict).
    std::string why = "Redis ";
    why.append(version).append("; kronopd needs 7.0 or later (sharded pub/sub)");
    return failed("version", why);
  }
  RedisCheck check;
  check.version = version;
  check.cluster = text.find("\ncluster_enabled:1") != std::string_view::npos ||
                  text.find("cluster_enabled:1") == 0;
  if (!check.cluster) {
    // INFO server does not say; INFO cluster does (cluster_enabled:0 or 1).
    auto cluster = ask(*c, "INFO cluster", {"INFO", "cluster"});
    if (!cluster.ok()) return cluster.error();
    check.cluster =
        reply_text(*cluster.value()).find("cluster_enabled:1") != std::string_view::npos;
  }
  return check;
}

Result<RedisCheck> check_seeds(ClusterNodeOptions &o, uint32_t timeout_ms) {
  Error last{-EIO, "no seed"};
  for (const RedisEndpoint &seed : o.seeds) {
    auto check = check_redis(seed, timeout_ms);
    if (!check.ok()) {
      if (o.seeds.size() > 1) {
        KLOG_WARN("event=cluster_seed_unusable redis=%s error=%s", log::q(seed.display()).c_str(),
                  log::q(check.error().message).c_str());
      }
      last = check.error();
      continue;
    }
    if (!check.value().cluster && o.redis_cluster) {
      return failed("INFO cluster", seed.display() +
                                        " is not a Redis Cluster (cluster_enabled:0), and "
                                        "several --redis seeds name one");
    }
    if (check.value().cluster) {
      if (seed.unix_socket) {
        return failed("INFO cluster", "a Redis Cluster is reached over TCP, not " + seed.display());
      }
      o.redis_cluster = true;
    }
    return check;
  }
  if (o.seeds.size() > 1) return failed("every seed", last.message);
  return last;
}

}  // namespace kronop::daemon
