// --log-sync full against a simulated power cut (support/power_cut_vfs.h: every write not
// yet synced when the power goes is lost). With full, every batch the log reported
// committed (and so released to the producers) is in the file after the cut; with normal,
// whose syncs are the checkpoints' (none here), the same cut loses committed batches: the
// simulation is sharp enough to tell the two apart.
#include <gtest/gtest.h>

#include <filesystem>

#include "log_reader.h"
#include "log_store.h"
#include "support/power_cut_vfs.h"
#include "support/test_support.h"

namespace kronop::daemon {
namespace {

using test::eventually;
using test::PowerCutVfs;

constexpr uint64_t kBatches = 40, kPerBatch = 100;

// Logs kBatches batches, each waited for; then the power goes. Returns what the file holds
// after the restart (a fresh LogStore opens the cut copy, as kronopd would).
uint64_t survivors(bool full, unsigned long long *syncs) {
  test::TempDir dir;
  const std::string path = dir.path + "/kronop.db";
  const std::string cut = dir.path + "/after-the-cut";
  PowerCutVfs::install();
  const unsigned long long syncs_before = PowerCutVfs::syncs();
  {
    LogOptions o;
    o.retention_age_ms = 0;
    o.sync_full = full;
    o.checkpoint_ms = 3'600'000;  // no checkpoint comes: normal syncs nothing
    o.batch_ms = 1;
    auto store = LogStore::open(path, o);
    EXPECT_TRUE(store.ok()) << store.error().message;
    if (!store.ok()) return 0;
    auto &s = *store.value();
    s.start();
    uint64_t seq = 0;
    for (uint64_t b = 0; b < kBatches; ++b) {
      std::vector<StoredMessage> batch;
      for (uint64_t i = 0; i < kPerBatch; ++i) {
        StoredMessage m;
        m.topic = "reel:" + std::to_string(1 + seq % 3);
        m.seq = seq / 3 + 1;
        m.epoch = 9;
        m.event = "reel_update";
        m.producer_id = 77;
        m.producer_seq = ++seq;
        m.body_kind = BodyKind::kJson;
        m.body = R"({"views":)" + std::to_string(seq) + "}";
        batch.push_back(std::move(m));
      }
      const uint64_t id = s.submit(std::move(batch));
      EXPECT_TRUE(eventually([&] { return s.committed() >= id; }));
    }
    // Every batch is committed and would be released now: the power goes.
    PowerCutVfs::snapshot(dir.path, cut);
    *syncs = PowerCutVfs::syncs() - syncs_before;
    s.stop();
  }
  PowerCutVfs::uninstall();
  {
    auto reopened = LogStore::open(cut + "/kronop.db");
    if (!reopened.ok()) return 0;  // nothing of it reached the disk
  }
  auto reader = LogReader::open(cut + "/kronop.db");
  if (!reader.ok()) return 0;
  uint64_t n = 0;
  for (int t = 1; t <= 3; ++t) {
    LogQuery q;
    q.topic = "reel:" + std::to_string(t);
    auto got = reader.value()->read(q, [&](const StoredMessage &) {
      ++n;
      return true;
    });
    EXPECT_TRUE(got.ok()) << got.error().message;
  }
  return n;
}

TEST(LogPowerCut, FullSyncKeepsEveryCommittedBatch) {
  unsigned long long syncs = 0;
  EXPECT_EQ(survivors(true, &syncs), kBatches * kPerBatch);
  EXPECT_GE(syncs, kBatches);  // a sync per commit at least
}

TEST(LogPowerCut, NormalSyncLosesWhatNoCheckpointSynced) {
  unsigned long long syncs = 0;
  EXPECT_LT(survivors(false, &syncs), kBatches * kPerBatch);
}

}  // namespace
}  // namespace kronop::daemon
