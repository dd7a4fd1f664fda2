// What kronopctl's subcommands share: argument checks that explain themselves, the line a
// logged message prints as, and running until SIGINT or SIGTERM.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "commands.h"
#include "envelope_validation.h"
#include "kronop/v1/envelope.pb.h"
#include "payload_codec.h"
#include "time_format.h"

namespace kronop::ctl {
namespace {

// SIGINT and SIGTERM end the commands that run until interrupted (tail, stats --watch)
// normally: they finish the line they print and exit 0.
volatile std::sig_atomic_t g_stop = 0;

std::string rfc3339_ns(uint64_t ns) { return kronop::rfc3339_ms(ns / 1'000'000); }

}  // namespace

int64_t parse_ttl(const std::string &text) {
  if (text.empty()) return -1;
  std::size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (...) {
    return -1;
  }
  if (n <= 0) return -1;
  const std::string unit = text.substr(used);
  if (unit.empty() || unit == "s") return n;
  if (unit == "m") return n * 60;
  if (unit == "h") return n * 3600;
  if (unit == "d") return n * 86400;
  return -1;
}

// Topic and event passed validation (safe characters); the payload is the JSON clients
// received. The JSON rules of payload_codec.h: seq, epoch (53 bits) and producer_seq are
// numbers, producer_id (64 random bits) a string, the time RFC 3339, the priority its word.
std::string json_line(const StoredMessage &m) {
  // Appended piece by piece: GCC 12 at -O3 takes "x" + std::string(...) for an overlapping
  // copy (-Wrestrict), and a user's Release build must be warning-free.
  std::string line = "{\"topic\":\"";
  line += m.topic;
  line += "\",\"seq\":";
  line += std::to_string(m.seq);
  line += ",\"epoch\":";
  line += std::to_string(m.epoch);
  line += ",\"time\":\"";
  line += rfc3339_ns(m.publish_time_ns);
  line += "\",\"event\":\"";
  line += m.event;
  line += "\",\"producer_id\":\"";
  line += std::to_string(m.producer_id);
  line += "\",\"producer_seq\":";
  line += std::to_string(m.producer_seq);
  line += ",\"priority\":";
  if (const auto *p = kronop::v1::Priority_descriptor()->FindValueByNumber(m.priority)) {
    line += '"';
    line += enum_word(*p);
    line += '"';
  } else {
    line += std::to_string(m.priority);
  }
  line += ",\"payload\":";
  line += m.payload_json();
  line += '}';
  return line;
}

void print_message(const Globals &g, const StoredMessage &m) {
  if (g.json) {
    std::printf("%s\n", json_line(m).c_str());
  } else {
    std::printf("%8llu  %s  %-16s %s\n", static_cast<unsigned long long>(m.seq),
                rfc3339_ns(m.publish_time_ns).c_str(), m.event.c_str(), m.payload_json().c_str());
  }
}

void stop_on_signals() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleep is cut short
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_stop != 0; }

bool sleep_unless_stopped(int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (g_stop == 0) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return true;
    // In steps, so that a signal that arrives between the check and the sleep waits 20 ms
    // at most.
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(20)));
  }
  return false;
}

bool valid_topic_arg(const std::string &topic) {
  if (kronop::valid_topic(topic)) return true;
  std::fprintf(stderr,
               "kronopctl: invalid topic '%s': use reel:<id>, user:<id> or system (ids: "
               "letters, digits, '_', '-', '.')\n",
               topic.c_str());
  return false;
}

bool valid_id_arg(const char *kind, const std::string &id) {
  if (kronop::valid_topic(kind + (":" + id))) return true;
  std::fprintf(stderr, "kronopctl: invalid %s id '%s': 1-128 of letters, digits, '_', '-', '.'\n",
               kind, id.c_str());
  return false;
}

}  // namespace kronop::ctl
