// A token bucket: at most `rate` events per second on average, bursts of up to `burst`. Time
// is given by the caller (milliseconds), so the limiter is a few bytes of state with no
// clock of its own, and tests drive it directly. Used per connection for the client
// message rate (--max-client-messages-per-second).
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

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
  uint64_t last_ms() const { return last_ms_; }
  uint32_t rate() const { return rate_; }
  uint32_t burst() const { return burst_; }

 private:
  uint32_t rate_ = 0;
  uint32_t burst_ = 1;
  uint64_t milli_tokens_ = 0;
  uint64_t last_ms_ = 0;
};

// One token bucket per key (a user id), shared by every I/O thread: a user's sockets on
// different loops draw from the same bucket. Buckets that have filled up again are pruned
// (every 10 s of use), so memory follows the users active in the last few seconds.
class KeyedRateLimiter {
 public:
  // rate 0: no limit.
  KeyedRateLimiter(uint32_t rate, uint32_t burst)
      : rate_(rate), burst_(std::max<uint32_t>(burst, 1)) {}

  bool allow(const std::string &key, uint64_t now_ms) {
    if (rate_ == 0) return true;
    std::lock_guard<std::mutex> lock(mutex_);
    if (now_ms >= last_prune_ms_ + 10'000) prune(now_ms);
    auto [it, inserted] = buckets_.try_emplace(key);
    if (inserted) it->second.reset(rate_, burst_, now_ms);
    return it->second.allow(now_ms);
  }
  std::size_t keys() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return buckets_.size();
  }

 private:
  void prune(uint64_t now_ms) {
    last_prune_ms_ = now_ms;
    // A bucket untouched for burst/rate seconds is full: the same as no bucket.
    const uint64_t refill_ms = uint64_t{burst_} * 1000 / rate_ + 1;
    std::erase_if(buckets_, [&](const auto &kv) {
      return now_ms > kv.second.last_ms() && now_ms - kv.second.last_ms() > refill_ms;
    });
  }

  uint32_t rate_;
  uint32_t burst_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, RateLimiter> buckets_;
  uint64_t last_prune_ms_ = 0;
};

}  // namespace kronop::daemon
