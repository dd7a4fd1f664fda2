#include "log.h"

#include <google/protobuf/stubs/logging.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace kronop::log {
namespace {

std::atomic<int> max_level{static_cast<int>(Level::kInfo)};

// journald reads the priority prefix and stamps the time; a terminal or a file wants the
// time and no prefix.
const bool to_journal = std::getenv("JOURNAL_STREAM") != nullptr;

const char *level_name(Level level) {
  switch (level) {
    case Level::kError:
      return "error";
    case Level::kWarning:
      return "warning";
    case Level::kNotice:
      return "notice";
    case Level::kInfo:
      return "info";
    case Level::kDebug:
      return "debug";
  }
  return "info";
}

constexpr std::size_t kMaxValue = 256;

}  // namespace

std::optional<Level> parse_level(std::string_view name) {
  for (Level l : {Level::kError, Level::kWarning, Level::kNotice, Level::kInfo, Level::kDebug}) {
    if (name == level_name(l)) return l;
  }
  return std::nullopt;
}

void set_max_level(Level level) { max_level.store(static_cast<int>(level)); }

bool enabled(Level level) {
  return static_cast<int>(level) <= max_level.load(std::memory_order_relaxed);
}

std::string q(std::string_view value) {
  const bool cut = value.size() > kMaxValue;
  if (cut) value = value.substr(0, kMaxValue);
  const bool plain = !value.empty() && !cut && std::all_of(value.begin(), value.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '"' && c != '=' && c != '\\';
  });
  if (plain) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    } else {
      out += c;  // UTF-8 passes as it is
    }
  }
  if (cut) out += "...";
  out += '"';
  return out;
}

bool Throttle::allow(uint64_t now_ms, uint64_t *suppressed) {
  if (now_ms >= refill_ms_ + interval_ms_) {
    const uint64_t periods = refill_ms_ == 0 ? burst_ : (now_ms - refill_ms_) / interval_ms_;
    tokens_ = static_cast<uint32_t>(std::min<uint64_t>(burst_, tokens_ + periods));
    refill_ms_ = now_ms;
  }
  if (tokens_ == 0) {
    ++suppressed_;
    return false;
  }
  --tokens_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

void write(Level level, const char *fmt, ...) {
  if (!enabled(level)) return;
  char line[4096];
  int n;
  if (to_journal) {
    n = std::snprintf(line, sizeof line, "<%d>level=%s ", static_cast<int>(level),
                      level_name(level));
  } else {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    ::gmtime_r(&ts.tv_sec, &utc);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
    n = std::snprintf(line, sizeof line, "ts=%s.%03ldZ level=%s ", when, ts.tv_nsec / 1'000'000,
                      level_name(level));
  }
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, fmt, ap);
  va_end(ap);
  std::size_t len = static_cast<std::size_t>(n) +
                    std::min<std::size_t>(m < 0 ? 0 : static_cast<std::size_t>(m),
                                          sizeof line - static_cast<std::size_t>(n) - 2);
  line[len++] = '\n';
  // One write per line keeps lines from different threads whole.
  ssize_t ignored = ::write(STDERR_FILENO, line, len);
  (void)ignored;
}

void route_protobuf_logs() {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char *file, int line, const std::string &msg) {
        write(Level::kDebug, "event=protobuf_log file=%s line=%d message=%s", file, line,
              q(msg).c_str());
      });
}

}  // namespace kronop::log
