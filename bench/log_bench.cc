// kronop-log-bench: the durable log on its own (kronopd/log_store.h), as the ingest thread
// drives it: batches of numbered records submitted as fast as the writer commits them (at
// most --queue records waiting, as the rings would hold them), into a fresh database in
// --dir. Reports, per run and as the median of --repeat runs: records committed per second,
// the bytes written per record (the process's write calls, /proc/self/io wchar: the WAL and
// the checkpoints, all SQLite writes), the database's size per record after the last
// checkpoint, and the compression (body bytes over stored bytes). With --rate the batches
// are paced (a drain pass's worth every --batch / rate seconds, as records arriving at that
// rate would make them) and the figure that matters is the process's CPU time per record:
// what logging costs the host at that rate. With --keep the last run's database stays in
// --dir, cleanly closed: a log of any size for kronopd to open (bench/scenarios r).
//
//   kronop-log-bench [--records N] [--topics T] [--payload-bytes B] [--batch K] [--repeat R]
//                    [--rate R] [--keep]
#include <sys/resource.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "kronop/clock.h"
#include "log_store.h"

namespace {

using kronop::StoredMessage;
using kronop::daemon::LogOptions;
using kronop::daemon::LogStore;

// Bytes this process has passed to write calls so far.
uint64_t written_bytes() {
  FILE *f = std::fopen("/proc/self/io", "r");
  if (f == nullptr) return 0;
  char key[64];
  unsigned long long value = 0, wchar = 0;
  while (std::fscanf(f, "%63s %llu", key, &value) == 2) {
    if (std::string(key) == "wchar:") wchar = value;
  }
  std::fclose(f);
  return wchar;
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Run {
  double records_per_s = 0;
  double cpu_us_per_record = 0;
  double disk_bytes_per_record = 0;
  double db_bytes_per_record = 0;
  double compression = 0;  // body bytes / stored bytes
};

std::string body_of(uint64_t i, std::size_t bytes) {
  // JSON like a reel update's: counters that change, padded to the size asked for.
  std::string s = R"({"reel_id":)" + std::to_string(i % 100000) + R"(,"views":)" +
                  std::to_string(1000000 + i * 7) + R"(,"likes":)" + std::to_string(i / 3) +
                  R"(,"comments":)" + std::to_string(i / 11) + R"(,"note":")";
  // Letters that do not repeat in a pattern zstd would find: the padding is not the figure.
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
  while (s.size() + 2 < bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s += static_cast<char>('a' + x % 26);
  }
  s += "\"}";
  return s;
}

Run run_once(const std::string &dir, uint64_t records, uint64_t topics, std::size_t payload,
             std::size_t batch, std::size_t queue, bool sync_full, double rate, uint64_t batch_ms) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/kronop.db";
  LogOptions o;
  o.retention_age_ms = 0;
  o.retention_count = 0;
  o.sync_full = sync_full;
  o.batch_ms = batch_ms;
  auto store = LogStore::open(path, o);
  if (!store.ok()) {
    std::fprintf(stderr, "kronop-log-bench: %s\n", store.error().message.c_str());
    std::exit(1);
  }
  LogStore &log = *store.value();
  log.start();
  const uint64_t written_before = written_bytes();
  std::vector<std::string> topic_names;
  for (uint64_t t = 0; t < topics; ++t) topic_names.push_back("reel:" + std::to_string(t + 1));
  std::vector<uint64_t> seqs(topics, 0);
  // Bodies made up front: the figure is the log's, not the generator's.
  std::vector<std::string> bodies;
  for (uint64_t i = 0; i < 4096; ++i) bodies.push_back(body_of(i, payload));
  const double cpu0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t sent = 0, last_batch = 0;
  std::vector<uint64_t> batch_end;  // records submitted up to each batch id
  while (sent < records) {
    // As the rings would: no more than `queue` records waiting for the log.
    while (sent - (log.committed() == 0 ? 0 : batch_end[log.committed() - 1]) >= queue) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (rate > 0) {
      const auto due =
          t0 + std::chrono::nanoseconds(static_cast<int64_t>(double(sent) * 1e9 / rate));
      std::this_thread::sleep_until(due);
    }
    std::vector<StoredMessage> b;
    b.reserve(batch);
    for (std::size_t i = 0; i < batch && sent < records; ++i, ++sent) {
      const uint64_t t = sent % topics;
      StoredMessage m;
      m.topic = topic_names[t];
      m.seq = ++seqs[t];
      m.epoch = 7;
      m.publish_time_ns = kronop::realtime_ns();
      m.event = "reel_update";
      m.producer_id = 0x5eed0000 + 1;
      m.producer_seq = sent + 1;
      m.body_kind = kronop::BodyKind::kJson;
      m.body = bodies[sent % bodies.size()];
      b.push_back(std::move(m));
    }
    last_batch = log.submit(std::move(b));
    batch_end.push_back(sent);
  }
  while (log.committed() < last_batch) std::this_thread::sleep_for(std::chrono::microseconds(50));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log.stop();  // and the last checkpoint
  const auto &c = log.counters();
  Run r;
  r.records_per_s = double(records) / secs;
  r.cpu_us_per_record = (cpu_seconds() - cpu0) * 1e6 / double(records);
  r.disk_bytes_per_record = double(written_bytes() - written_before) / double(records);
  std::error_code ec;
  r.db_bytes_per_record = double(std::filesystem::file_size(path, ec)) / double(records);
  r.compression =
      double(c.payload_bytes.load()) / double(std::max<uint64_t>(c.compressed_bytes, 1));
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char **argv) {
  CLI::App app{"kronop-log-bench - the durable log's write path on its own"};
  uint64_t records = 2'000'000, topics = 1;
  std::size_t payload = 200, batch = 256, queue = 1 << 20;
  int repeat = 3;
  bool sync_full = false;
  std::string dir = "/tmp/kronop-log-bench";
  app.add_option("-n,--records", records, "Records per run")->check(CLI::Range(1000, 1 << 30));
  app.add_option("-t,--topics", topics, "Topics the records go round")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--payload-bytes", payload, "JSON body size")->check(CLI::Range(20, 65536));
  app.add_option("--batch", batch, "Records per submit (a drain pass)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--queue", queue, "Most records waiting for the log (the rings' room)")
      ->check(CLI::Range(1, 1 << 30));
  uint64_t batch_ms = LogOptions{}.batch_ms;
  app.add_option("--batch-ms", batch_ms, "Longest a transaction waits to fill (LogOptions)")
      ->capture_default_str();
  double rate = 0;
  app.add_option("--rate", rate, "Records per second, paced (0: as fast as the log takes them)")
      ->check(CLI::Range(0.0, 1e8));
  app.add_option("-r,--repeat", repeat, "Runs")->check(CLI::Range(1, 100));
  app.add_flag("--sync-full", sync_full, "Every commit synced (--log-sync full)");
  app.add_option("--dir", dir, "Where the database is made (emptied first)");
  bool keep = false;
  app.add_flag("--keep", keep, "Leave the last run's database in --dir");
  CLI11_PARSE(app, argc, argv);
  std::vector<double> achieved, cpu, disk, db, ratio;
  for (int i = 0; i < repeat; ++i) {
    const Run r = run_once(dir, records, topics, payload, batch, queue, sync_full, rate, batch_ms);
    std::printf(
        "run %d: %.0f records/s, %.2f CPU us/record, written %.1f B/record, database %.1f "
        "B/record, compression %.2fx\n",
        i + 1, r.records_per_s, r.cpu_us_per_record, r.disk_bytes_per_record, r.db_bytes_per_record,
        r.compression);
    std::fflush(stdout);
    achieved.push_back(r.records_per_s);
    cpu.push_back(r.cpu_us_per_record);
    disk.push_back(r.disk_bytes_per_record);
    db.push_back(r.db_bytes_per_record);
    ratio.push_back(r.compression);
  }
  if (!keep) std::filesystem::remove_all(dir);
  std::printf(
      "median of %d: %.0f records/s, %.2f CPU us/record, written %.1f B/record, database %.1f "
      "B/record, compression %.2fx (%llu records, %llu topics, %zu-byte bodies, batches of "
      "%zu%s)\n",
      repeat, median(achieved), median(cpu), median(disk), median(db), median(ratio),
      static_cast<unsigned long long>(records), static_cast<unsigned long long>(topics), payload,
      batch, sync_full ? ", sync full" : "");
  return 0;
}
