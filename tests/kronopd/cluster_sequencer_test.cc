// ClusterSequencer on its own: what a node stages from what its cluster thread hands over —
// nothing before a topic's position, nothing at or below it, early messages after it in
// order, a catch-up after a lost link merged with the live messages that overtook it.
#include "cluster_sequencer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kronop::daemon {
namespace {

ClusterEvent message(const std::string &topic, uint64_t epoch, uint64_t seq) {
  ClusterEvent e;
  e.kind = ClusterEvent::Kind::kMessage;
  e.topic = topic;
  e.epoch = epoch;
  e.seq = seq;
  e.envelope = "m" + std::to_string(seq);
  return e;
}

ClusterEvent position(const std::string &topic, uint64_t epoch, uint64_t seq) {
  ClusterEvent e = message(topic, epoch, seq);
  e.kind = ClusterEvent::Kind::kPosition;
  return e;
}

struct Staged {
  std::vector<uint64_t> seqs;
  ClusterSequencer::DeliverFn fn() {
    return [this](const ClusterEvent &m) { seqs.push_back(m.seq); };
  }
};

TEST(ClusterSequencer, NothingBeforeThePositionThenWhatFollowsItInOrder) {
  ClusterSequencer s;
  Staged st;
  s.on_message(message("reel:1", 7, 1), st.fn());  // not wanted: dropped
  EXPECT_EQ(s.counters().unwanted.load(), 1u);
  s.expect("reel:1");
  EXPECT_FALSE(s.known("reel:1"));
  // Early: numbered around the position read, some at or below it.
  for (uint64_t seq : {4, 5, 6, 7}) s.on_message(message("reel:1", 7, seq), st.fn());
  EXPECT_TRUE(st.seqs.empty());
  EXPECT_FALSE(s.on_position(position("reel:1", 7, 5), st.fn()).has_value());
  EXPECT_TRUE(s.known("reel:1"));
  EXPECT_EQ(s.current("reel:1").seq, 7u);
  EXPECT_EQ(st.seqs, (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(s.counters().old.load(), 2u);
  s.on_message(message("reel:1", 7, 7), st.fn());  // again: dropped
  s.on_message(message("reel:1", 7, 8), st.fn());
  EXPECT_EQ(st.seqs, (std::vector<uint64_t>{6, 7, 8}));
  EXPECT_EQ(s.counters().gaps.load(), 0u);
  // The last local client left: forgotten.
  s.forget_unnumbered("reel:1");
  EXPECT_FALSE(s.known("reel:1"));
  EXPECT_EQ(s.topics(), 0u);
}

TEST(ClusterSequencer, AfterALostLinkTheHistoryIsCaughtUpOnBeforeTheLiveMessages) {
  ClusterSequencer s;
  Staged st;
  s.expect("reel:2");
  s.on_position(position("reel:2", 9, 0), st.fn());
  for (uint64_t seq = 1; seq <= 3; ++seq) s.on_message(message("reel:2", 9, seq), st.fn());
  s.on_down();
  EXPECT_FALSE(s.known("reel:2"));
  // Back: 4..6 were numbered meanwhile. The position asks for them from the history.
  auto range = s.on_position(position("reel:2", 9, 6), st.fn());
  ASSERT_TRUE(range.has_value());
  EXPECT_EQ(range->after, 3u);
  EXPECT_EQ(range->until, 6u);
  EXPECT_FALSE(s.known("reel:2"));
  // A live message overtakes the history's.
  s.on_message(message("reel:2", 9, 7), st.fn());
  for (uint64_t seq = 4; seq <= 6; ++seq) s.on_message(message("reel:2", 9, seq), st.fn());
  EXPECT_EQ(st.seqs.size(), 3u);
  s.on_caught_up("reel:2", st.fn());
  EXPECT_TRUE(s.known("reel:2"));
  EXPECT_EQ(st.seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(s.counters().gaps.load(), 0u);
}

TEST(ClusterSequencer, WhatTheHistoryNoLongerHoldsIsAGapAndANewStreamAnEpochChange) {
  ClusterSequencer s;
  Staged st;
  s.expect("reel:3");
  s.on_position(position("reel:3", 5, 10), st.fn());
  s.on_down();
  ASSERT_TRUE(s.on_position(position("reel:3", 5, 20), st.fn()).has_value());
  // The history kept only 18..20.
  for (uint64_t seq = 18; seq <= 20; ++seq) s.on_message(message("reel:3", 5, seq), st.fn());
  s.on_caught_up("reel:3", st.fn());
  EXPECT_EQ(st.seqs, (std::vector<uint64_t>{18, 19, 20}));
  EXPECT_EQ(s.counters().gaps.load(), 1u);
  // Redis lost the topic's keys: a new stream.
  s.on_down();
  EXPECT_FALSE(s.on_position(position("reel:3", 6, 0), st.fn()).has_value());
  s.on_message(message("reel:3", 6, 1), st.fn());
  EXPECT_EQ(st.seqs.back(), 1u);
  EXPECT_EQ(s.current("reel:3").epoch, 6u);
}

}  // namespace
}  // namespace kronop::daemon
