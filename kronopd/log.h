// kronopd's log: one line per event on stderr, as key=value fields:
//
//   level=warning event=client_closed peer=10.0.0.7:51234 code=1008 reason="rate limit"
//
// Under systemd (JOURNAL_STREAM set) each line starts with the sd-daemon priority prefix
// ("<4>") that journald turns into the entry's priority, and journald stamps the time;
// elsewhere the line starts with ts=<UTC time>. Thread-safe: one write(2) per line.
//
// By convention the text a KLOG_* macro formats starts with event=NAME, and every value that
// may hold spaces, quotes or '=' goes through q().
#pragma once

#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kronop::log {

enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// "error", "warning", "notice", "info", "debug" (--log-level); nullopt for anything else.
std::optional<Level> parse_level(std::string_view name);
void set_max_level(Level level);
bool enabled(Level level);
void write(Level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// `value` as a field's value: as it is when it is a plain word, else in double quotes with
// '"', '\' and control characters escaped (\", \\, \n, \xHH). Never more than 256 bytes of
// `value` are kept (then "..." marks the cut): a client's bytes cannot make a line long.
std::string q(std::string_view value);

// Protobuf's own log lines (e.g. invalid UTF-8 in a producer's typed body) are one more
// source of producer-controlled noise: from here on they are written at debug level.
void route_protobuf_logs();

// Lines about one kind of client fault (a bad frame, a refused token, a slow reader), so
// that a misbehaving client cannot flood the journal: `burst` lines at once, then one per
// `interval_ms`; the lines refused meanwhile are counted and the next line allowed says how
// many (suppressed=N). Not thread-safe: one per loop and kind.
class Throttle {
 public:
  explicit Throttle(uint32_t burst = 10, uint64_t interval_ms = 1000)
      : burst_(burst), interval_ms_(interval_ms), tokens_(burst) {}
  // Whether a line may be written now; if so, *suppressed is the count refused since the
  // last one allowed.
  bool allow(uint64_t now_ms, uint64_t *suppressed);

 private:
  uint32_t burst_;
  uint64_t interval_ms_;
  uint32_t tokens_;
  uint64_t refill_ms_ = 0;
  uint64_t suppressed_ = 0;
};

#define KLOG_ERROR(...) ::kronop::log::write(::kronop::log::Level::kError, __VA_ARGS__)
#define KLOG_WARN(...) ::kronop::log::write(::kronop::log::Level::kWarning, __VA_ARGS__)
#define KLOG_NOTICE(...) ::kronop::log::write(::kronop::log::Level::kNotice, __VA_ARGS__)
#define KLOG_INFO(...) ::kronop::log::write(::kronop::log::Level::kInfo, __VA_ARGS__)
#define KLOG_DEBUG(...)                                                \
  do {                                                                 \
    if (::kronop::log::enabled(::kronop::log::Level::kDebug))          \
      ::kronop::log::write(::kronop::log::Level::kDebug, __VA_ARGS__); \
  } while (0)

}  // namespace kronop::log
