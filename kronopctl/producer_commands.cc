// kronopctl's subcommands that need no running daemon's answer: publish writes records into
// the shared-memory rings exactly as a producer does (libipc), and token mints a client token
// with the secret kronopd verifies tokens with.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <iterator>
#include <thread>

#include "auth.h"
#include "commands.h"
#include "envelope_validation.h"
#include "kronop/ipc/producer.h"
#include "kronop_ipc.h"

namespace kronop::ctl {
namespace {

int priority_value(const std::string &p) {
  if (p == "normal" || p == "0") return KRONOP_PRIORITY_NORMAL;
  if (p == "low" || p == "1") return KRONOP_PRIORITY_LOW;
  if (p == "high" || p == "2") return KRONOP_PRIORITY_HIGH;
  if (p == "critical" || p == "3") return KRONOP_PRIORITY_CRITICAL;
  return -1;
}

}  // namespace

int run_token(const Globals &g, const TokenArgs &a) {
  if (!valid_id_arg("user", a.user)) return kExitUsage;
  const int64_t ttl = parse_ttl(a.ttl);
  if (ttl < 0) {
    std::fprintf(stderr, "kronopctl: invalid --ttl '%s': e.g. 90s, 15m, 1h, 7d\n", a.ttl.c_str());
    return kExitUsage;
  }
  std::string warning;
  auto secret = kronop::read_secret_file(a.secret_file, &warning);
  if (!secret.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", secret.error().message.c_str());
    return kExitFailed;
  }
  if (!warning.empty()) std::fprintf(stderr, "kronopctl: warning: %s\n", warning.c_str());
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const std::string token = kronop::mint_token(secret.value(), a.user, a.admin, now, now + ttl);
  if (g.json) {
    std::printf("{\"token\":\"%s\",\"user\":\"%s\",\"admin\":%s,\"exp\":%lld}\n", token.c_str(),
                a.user.c_str(), a.admin ? "true" : "false", static_cast<long long>(now + ttl));
  } else {
    std::printf("%s\n", token.c_str());
  }
  return kExitOk;
}

int run_publish(const Globals &g, PublishArgs a) {
  if (!valid_topic_arg(a.topic)) return kExitUsage;
  if (!kronop::valid_event(a.event)) {
    std::fprintf(stderr,
                 "kronopctl: invalid event '%s': 1-64 of [a-z0-9_.-], not starting with phx_\n",
                 a.event.c_str());
    return kExitUsage;
  }
  int priority = priority_value(a.priority);
  if (priority < 0) {
    std::fprintf(stderr, "kronopctl: invalid priority '%s': normal, low, high or critical\n",
                 a.priority.c_str());
    return kExitUsage;
  }
  if (a.json == "-") {
    a.json.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  kronop::EnvelopeValidator validator;
  switch (validator.check_json_object(a.json)) {
    case kronop::Reject::kNone:
      break;
    case kronop::Reject::kReservedKey:
      std::fprintf(stderr,
                   "kronopctl: --json must not have a top-level \"seq\": kronopd adds it\n");
      return kExitUsage;
    case kronop::Reject::kNotJsonObject:
      std::fprintf(stderr, "kronopctl: --json must be a JSON object ({...})\n");
      return kExitUsage;
    default:
      std::fprintf(stderr, "kronopctl: --json is not valid JSON\n");
      return kExitUsage;
  }
  auto producer = ipc::Producer::open(g.shm_name);
  if (!producer.ok()) {
    std::fprintf(stderr, "kronopctl: %s\n", producer.error().message.c_str());
    return kExitFailed;
  }
  auto &p = *producer.value();
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  uint64_t sent = 0;
  for (; sent < a.count; ++sent) {
    if (a.rate > 0) {
      auto due = start + std::chrono::duration_cast<clock::duration>(
                             std::chrono::duration<double>(double(sent) / a.rate));
      std::this_thread::sleep_until(due);
    }
    int rc = p.publish_wait(a.topic, a.event, a.json, priority, a.wait_ms);
    if (rc != KRONOP_OK) {
      std::fprintf(stderr, "kronopctl: publish failed after %llu record(s): %s\n",
                   static_cast<unsigned long long>(sent), kronop_strerror(rc));
      return rc == KRONOP_EINVAL || rc == KRONOP_ETOOBIG ? kExitUsage : kExitFailed;
    }
  }
  double secs = std::chrono::duration<double>(clock::now() - start).count();
  if (g.json) {
    std::printf(
        "{\"published\":%llu,\"topic\":\"%s\",\"event\":\"%s\",\"producer_id\":\"%016llx\","
        "\"last_seq\":%llu,\"seconds\":%.6f}\n",
        static_cast<unsigned long long>(sent), a.topic.c_str(), a.event.c_str(),
        static_cast<unsigned long long>(p.id()), static_cast<unsigned long long>(p.last_seq()),
        secs);
  } else {
    std::printf("published %llu record(s) to %s (event %s, producer %016llx) in %.3f s\n",
                static_cast<unsigned long long>(sent), a.topic.c_str(), a.event.c_str(),
                static_cast<unsigned long long>(p.id()), secs);
  }
  return kExitOk;
}

}  // namespace kronop::ctl
