// Release-after-commit and the epochs of a replay; see durability.h.
#include "durability.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kronop_ipc.h"
#include "log.h"
#include "presence.h"

namespace kronop::daemon {

void RingRelease::after_pass(bool read_something) {
  if (consumer_.generation() != generation_) {
    // The segment was created again: the positions kept were the retired one's, which the
    // consumer released when it retired it.
    pending_.clear();
    generation_ = consumer_.generation();
  }
  if (log_ == nullptr) {
    consumer_.release_all_read();
    return;
  }
  if (read_something) {
    Pending p;
    p.batch = log_->submitted();
    p.read_pos.resize(consumer_.ring_count());
    for (uint32_t i = 0; i < consumer_.ring_count(); ++i) {
      p.read_pos[i] = consumer_.reader(i).read_pos();
    }
    pending_.push_back(std::move(p));
  }
  const uint64_t committed = log_->committed();
  std::size_t done = 0;
  while (done < pending_.size() && pending_[done].batch <= committed) ++done;
  if (done == 0) return;
  // The newest committed positions free everything before them.
  const Pending &last = pending_[done - 1];
  for (uint32_t i = 0; i < consumer_.ring_count(); ++i)
    consumer_.reader(i).release(last.read_pos[i]);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
}

void ReplayEpochs::start() {
  active_ = after_unclean_stop_;
  if (!active_) return;
  written_before_start_.clear();
  for (uint32_t i = 0; i < consumer_.ring_count(); ++i) {
    written_before_start_.push_back(
        consumer_.reader(i).control()->write_pos.load(std::memory_order_acquire));
  }
}

void ReplayEpochs::see(uint32_t ring, uint64_t end_pos, const EnvelopeView &view) {
  if (ring >= written_before_start_.size()) return;  // a retired segment's ring
  auto [it, fresh] = tracks_.try_emplace(std::string(view.topic));
  Track &t = it->second;
  if (fresh) t.producer = view.producer_id;
  t.mixed = t.mixed || t.producer != view.producer_id;
  t.replayed = t.replayed || end_pos <= written_before_start_[ring];
  if (t.mixed && t.replayed) sequencer_.renew_epoch(view.topic);
}

void ReplayEpochs::after_pass() {
  if (!active_) return;
  active_ = false;
  // The segment was created again: the replay ends here (what the retired segment still
  // holds is read on without this check).
  if (consumer_.generation() != 0) written_before_start_.clear();
  for (uint32_t i = 0; i < written_before_start_.size(); ++i) {
    if (consumer_.reader(i).read_pos() < written_before_start_[i]) active_ = true;
  }
  if (!active_) tracks_.clear();
}

Result<bool> make_data_dir(const std::string &path) {
  for (std::size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    const std::string partial = path.substr(0, pos);
    if (::mkdir(partial.c_str(), 0750) != 0 && errno != EEXIST) break;
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Error{KRONOP_ESYS, path + ": " + std::strerror(errno)};
  if (!S_ISDIR(st.st_mode)) return Error{KRONOP_ESYS, path + ": not a directory"};
  return true;
}

Result<std::unique_ptr<LogStore>> open_durable_log(const Config &config) {
  if (!config.durable_log) {
    KLOG_WARN(
        "event=durable_log_off consequence=\"nothing is kept across restarts, joins recover "
        "nothing\"");
    return std::unique_ptr<LogStore>();
  }
  LogOptions options;
  options.retention_age_ms = config.retention_hours * 3600 * 1000;
  options.retention_count = config.retention_count;
  options.cache_mib = config.log_cache_mib;
  options.sync_full = config.log_sync == "full";
  options.cluster_outbox = !config.redis.empty();
  // A transaction's records wait in their rings until it commits: a quarter of a ring at most.
  options.batch_bytes = std::min<std::size_t>(options.batch_bytes, config.ring_size / 4);
  auto opened = LogStore::open(config.data_dir + "/kronop.db", options);
  if (opened.ok()) {
    KLOG_INFO("event=log_opened path=%s sync=%s", log::q(opened.value()->path()).c_str(),
              config.log_sync.c_str());
  }
  return opened;
}

void keep_presence_in_log(LogStore &log, PresenceHub &presence) {
  for (const UserRow &r : log.users()) {
    PresenceHub::UserPresence p;
    p.user_id = r.user_id;
    p.status = static_cast<PresenceHub::Status>(r.status);
    p.current_reel = r.current_reel;
    p.activity = r.activity;
    p.last_seen_ms = r.last_seen_ms;
    presence.restore(p);
  }
  presence.set_observer([&log](const PresenceHub::UserPresence &p) {
    log.submit_user(
        UserRow{p.user_id, static_cast<int>(p.status), p.current_reel, p.activity, p.last_seen_ms});
  });
}

bool RunningMarker::found() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return false;
  KLOG_WARN(
      "event=unclean_stop_found consequence=\"topics whose unlogged records the last run may "
      "have fanned out get a new epoch\"");
  return true;
}

void RunningMarker::create() const {
  if (FILE *f = std::fopen(path_.c_str(), "w")) {
    std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
    std::fclose(f);
  }
}

void RunningMarker::remove() const { ::unlink(path_.c_str()); }

}  // namespace kronop::daemon
