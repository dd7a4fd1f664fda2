// kronopd's log: one line per event on stderr, with the sd-daemon priority prefix ("<3>")
// that journald turns into the entry's priority. Thread-safe (one write(2) per line).
#pragma once

#include <cstdarg>

namespace kronop::log {

enum class Level { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

void set_max_level(Level level);
void write(Level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define KLOG_ERROR(...) ::kronop::log::write(::kronop::log::Level::kError, __VA_ARGS__)
#define KLOG_WARN(...) ::kronop::log::write(::kronop::log::Level::kWarning, __VA_ARGS__)
#define KLOG_NOTICE(...) ::kronop::log::write(::kronop::log::Level::kNotice, __VA_ARGS__)
#define KLOG_INFO(...) ::kronop::log::write(::kronop::log::Level::kInfo, __VA_ARGS__)
#define KLOG_DEBUG(...) ::kronop::log::write(::kronop::log::Level::kDebug, __VA_ARGS__)

}  // namespace kronop::log
