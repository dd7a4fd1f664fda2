// The cost of Phoenix Presence on a busy reel: a topic with 10,000 viewers (distinct users)
// already tracked and flushed, then
//  - TrackUntrack: one more viewer joining and leaving (the per-socket cost, under the lock);
//  - FlushJoins/N: the flush that turns N joins into a presence_diff (its size as a
//    counter); only the flush is timed, the joins and the leaves that undo them are not;
//  - BuildState: encoding presence_state of the 10,000 viewers, as the first state() after
//    a changing flush does (bytes as a counter);
//  - StateCached: state() when nothing changed since the last encoding.
//
//   build/bench/kronop-presence-bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "presence.h"

namespace {

using kronop::daemon::PresenceHub;

constexpr uint64_t kT0 = 1'700'000'000'000;
constexpr int kViewers = 10'000;
const std::string kTopic = "reel:123";

std::unique_ptr<PresenceHub> busy_hub() {
  auto hub = std::make_unique<PresenceHub>();
  for (int i = 0; i < kViewers; ++i) {
    hub->track(kTopic, "user" + std::to_string(i), kT0 + static_cast<uint64_t>(i));
  }
  std::vector<PresenceHub::Diff> out;
  hub->flush(out);
  return hub;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_TrackUntrack(benchmark::State &state) {
  auto hub = busy_hub();
  const std::string user = "newcomer";
  for (auto _ : state) {
    const std::string ref = hub->track(kTopic, user, kT0);
    hub->untrack(kTopic, user, ref);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TrackUntrack);

void BM_FlushJoins(benchmark::State &state) {
  auto hub = busy_hub();
  const auto joins = static_cast<std::size_t>(state.range(0));
  std::vector<std::string> users;
  for (std::size_t i = 0; i < joins; ++i) users.push_back("joiner" + std::to_string(i));
  std::vector<std::string> refs(joins);
  std::vector<PresenceHub::Diff> out;
  std::size_t bytes = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < joins; ++i) refs[i] = hub->track(kTopic, users[i], kT0);
    out.clear();
    const auto start = std::chrono::steady_clock::now();
    const std::size_t n = hub->flush(out);
    state.SetIterationTime(seconds_since(start));
    benchmark::DoNotOptimize(n);
    bytes = out.empty() ? 0 : out[0].payload.size();
    // Undo, untimed, so that every iteration starts from the same 10,000.
    for (std::size_t i = 0; i < joins; ++i) hub->untrack(kTopic, users[i], refs[i]);
    out.clear();
    hub->flush(out);
  }
  state.counters["payload_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_FlushJoins)->Arg(1)->Arg(10)->Arg(100)->UseManualTime();

void BM_BuildState(benchmark::State &state) {
  auto hub = busy_hub();
  std::vector<PresenceHub::Diff> out;
  std::size_t bytes = 0;
  for (auto _ : state) {
    // A changing flush (a second socket of one viewer) drops the cached state.
    const std::string ref = hub->track(kTopic, "user0", kT0);
    out.clear();
    hub->flush(out);
    const auto start = std::chrono::steady_clock::now();
    auto encoded = hub->state(kTopic);
    state.SetIterationTime(seconds_since(start));
    bytes = encoded->size();
    hub->untrack(kTopic, "user0", ref);
    out.clear();
    hub->flush(out);
  }
  state.counters["state_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_BuildState)->UseManualTime();

void BM_StateCached(benchmark::State &state) {
  auto hub = busy_hub();
  const std::size_t bytes = hub->state(kTopic)->size();
  for (auto _ : state) {
    auto s = hub->state(kTopic);
    benchmark::DoNotOptimize(s.get());
  }
  state.counters["state_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_StateCached);

}  // namespace

BENCHMARK_MAIN();
