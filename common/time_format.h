// Times as people and JSON read them: RFC 3339 in UTC with milliseconds.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace kronop {

// 1795737919930 -> "2026-11-26T23:25:19.930Z"
inline std::string rfc3339_ms(uint64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03uZ", static_cast<unsigned>(unix_ms % 1000));
  return buf;
}

}  // namespace kronop
