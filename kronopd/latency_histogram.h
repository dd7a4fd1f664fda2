// A fixed-size, log-linear latency histogram (HdrHistogram's idea at 1/16 precision):
// recording is an index computation and one counter update, with no allocation, so the
// ingest thread can record every record. One writer; readers copy the counts (relaxed
// atomics) and compute percentiles from the copy.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace kronop::daemon {

class LatencyHistogram {
 public:
  // 16 sub-buckets per power of two, powers 0..47: values up to ~2^48 ns (3 days).
  static constexpr int kSubBits = 4;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = 48 * kSub;

  static int bucket_of(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    const int msb = 63 - std::countl_zero(v);  // >= kSubBits
    const int shift = msb - kSubBits;
    const int b = (shift + 1) * kSub + static_cast<int>((v >> shift) & (kSub - 1));
    return b < kBuckets ? b : kBuckets - 1;
  }
  // The largest value that falls in bucket b (what percentiles report: never optimistic).
  static uint64_t bucket_high(int b) {
    if (b < kSub) return static_cast<uint64_t>(b);
    const int shift = b / kSub - 1;
    const uint64_t base = (uint64_t{kSub} + static_cast<uint64_t>(b % kSub)) << shift;
    return base + ((uint64_t{1} << shift) - 1);
  }

  void record(uint64_t v) {
    auto &c = counts_[static_cast<std::size_t>(bucket_of(v))];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  }

  // Adds another histogram's counts into a plain array (for a summary over several
  // histograms, e.g. one per I/O loop).
  void add_to(std::array<uint64_t, kBuckets> &counts, uint64_t &max) const {
    for (int i = 0; i < kBuckets; ++i) {
      counts[static_cast<std::size_t>(i)] +=
          counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
    }
    max = std::max(max, max_.load(std::memory_order_relaxed));
  }

  struct Summary {
    uint64_t count = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  };
  Summary summarize() const {
    std::array<uint64_t, kBuckets> copy{};
    uint64_t max = 0;
    add_to(copy, max);
    return summarize(copy, max);
  }
  static Summary summarize(const std::array<uint64_t, kBuckets> &copy, uint64_t max) {
    Summary s;
    for (int i = 0; i < kBuckets; ++i) s.count += copy[static_cast<std::size_t>(i)];
    s.max = max;
    if (s.count == 0) return s;
    auto at = [&](double q) {
      uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(s.count - 1)) + 1;
      uint64_t seen = 0;
      for (int i = 0; i < kBuckets; ++i) {
        seen += copy[static_cast<std::size_t>(i)];
        if (seen >= rank) return std::min(bucket_high(i), s.max);
      }
      return s.max;
    };
    s.p50 = at(0.50);
    s.p90 = at(0.90);
    s.p99 = at(0.99);
    s.p999 = at(0.999);
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> max_{0};
};

}  // namespace kronop::daemon
