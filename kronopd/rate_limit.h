// A token bucket: at most `rate` events per second on average, bursts of up to `burst`. Time
// is given by the caller (milliseconds), so the limiter is a few bytes of state with no
// clock of its own, and tests drive it directly. Used per connection for the client
// message rate (--max-client-messages-per-second).
#pragma once

#include <algorithm>
#include <cstdint>

namespace kronop::daemon {

class RateLimiter {
 public:
  RateLimiter() = default;
  RateLimiter(uint32_t rate, uint32_t burst, uint64_t now_ms) { reset(rate, burst, now_ms); }

  void reset(uint32_t rate, uint32_t burst, uint64_t now_ms) {
    rate_ = rate;
    burst_ = std::max<uint32_t>(burst, 1);
    milli_tokens_ = uint64_t{burst_} * 1000;
    last_ms_ = now_ms;
  }

  // Takes one token; false when none is left (the event is over the limit). A rate of 0
  // means no limit.
  bool allow(uint64_t now_ms) {
    if (rate_ == 0) return true;
    if (now_ms > last_ms_) {
      // rate tokens per second = rate milli-tokens per millisecond.
      const uint64_t cap = uint64_t{burst_} * 1000;
      const uint64_t add = (now_ms - last_ms_) * rate_;
      milli_tokens_ = std::min(cap, milli_tokens_ + std::min(add, cap));
      last_ms_ = now_ms;
    }
    if (milli_tokens_ < 1000) return false;
    milli_tokens_ -= 1000;
    return true;
  }

 private:
  uint32_t rate_ = 0;
  uint32_t burst_ = 1;
  uint64_t milli_tokens_ = 0;
  uint64_t last_ms_ = 0;
};

}  // namespace kronop::daemon
