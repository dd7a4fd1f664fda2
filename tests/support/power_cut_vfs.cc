// See power_cut_vfs.h.
#include "support/power_cut_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace kronop::test {
namespace {

// One write since the last sync: what was there before it.
struct Undo {
  sqlite3_int64 offset = 0;
  std::string before;          // the bytes it overwrote (within the file's old size)
  sqlite3_int64 old_size = 0;  // the file's size before it
};

// A file's unsynced history, shared by every handle on the same path.
struct History {
  std::mutex mutex;
  std::vector<Undo> undo;
};

std::mutex g_files_mutex;
std::map<std::string, std::shared_ptr<History>> g_files;  // by path
std::atomic<unsigned long long> g_syncs{0};
sqlite3_vfs *g_real = nullptr;
sqlite3_vfs g_vfs;
bool g_installed = false;

struct File {
  sqlite3_file base;  // must come first: SQLite sees this
  sqlite3_file *real;
  std::shared_ptr<History> history;
};

sqlite3_file *real_of(sqlite3_file *f) { return reinterpret_cast<File *>(f)->real; }

int x_close(sqlite3_file *f) {
  auto *file = reinterpret_cast<File *>(f);
  const int rc = file->real->pMethods != nullptr ? file->real->pMethods->xClose(file->real) : 0;
  sqlite3_free(file->real);
  file->history.~shared_ptr<History>();
  return rc;
}
int x_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
  return real_of(f)->pMethods->xRead(real_of(f), buf, n, off);
}
int x_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
  auto *file = reinterpret_cast<File *>(f);
  sqlite3_file *r = file->real;
  std::lock_guard<std::mutex> lock(file->history->mutex);
  Undo u;
  u.offset = off;
  r->pMethods->xFileSize(r, &u.old_size);
  if (off < u.old_size) {
    const auto keep = static_cast<std::size_t>(std::min<sqlite3_int64>(n, u.old_size - off));
    u.before.resize(keep);
    r->pMethods->xRead(r, u.before.data(), static_cast<int>(keep), off);
  }
  const int rc = r->pMethods->xWrite(r, buf, n, off);
  file->history->undo.push_back(std::move(u));
  return rc;
}
int x_truncate(sqlite3_file *f, sqlite3_int64 size) {
  auto *file = reinterpret_cast<File *>(f);
  sqlite3_file *r = file->real;
  std::lock_guard<std::mutex> lock(file->history->mutex);
  Undo u;
  r->pMethods->xFileSize(r, &u.old_size);
  u.offset = size;
  if (size < u.old_size) {
    u.before.resize(static_cast<std::size_t>(u.old_size - size));
    r->pMethods->xRead(r, u.before.data(), static_cast<int>(u.before.size()), size);
  }
  const int rc = r->pMethods->xTruncate(r, size);
  file->history->undo.push_back(std::move(u));
  return rc;
}
int x_sync(sqlite3_file *f, int flags) {
  auto *file = reinterpret_cast<File *>(f);
  std::lock_guard<std::mutex> lock(file->history->mutex);
  const int rc = file->real->pMethods->xSync(file->real, flags);
  if (rc == SQLITE_OK) file->history->undo.clear();
  g_syncs.fetch_add(1);
  return rc;
}
int x_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
int x_lock(sqlite3_file *f, int l) { return real_of(f)->pMethods->xLock(real_of(f), l); }
int x_unlock(sqlite3_file *f, int l) { return real_of(f)->pMethods->xUnlock(real_of(f), l); }
int x_check_reserved(sqlite3_file *f, int *out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int x_file_control(sqlite3_file *f, int op, void *arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int x_sector_size(sqlite3_file *f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device_characteristics(sqlite3_file *f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int x_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out) {
  return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, out);
}
int x_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file *f) { real_of(f)->pMethods->xShmBarrier(real_of(f)); }
int x_shm_unmap(sqlite3_file *f, int del) {
  return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}
int x_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out) {
  *out = nullptr;  // no memory-mapped reads: every read goes through xRead
  (void)f;
  (void)off;
  (void)n;
  return SQLITE_OK;
}
int x_unfetch(sqlite3_file *, sqlite3_int64, void *) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {3,
                                     x_close,
                                     x_read,
                                     x_write,
                                     x_truncate,
                                     x_sync,
                                     x_file_size,
                                     x_lock,
                                     x_unlock,
                                     x_check_reserved,
                                     x_file_control,
                                     x_sector_size,
                                     x_device_characteristics,
                                     x_shm_map,
                                     x_shm_lock,
                                     x_shm_barrier,
                                     x_shm_unmap,
                                     x_fetch,
                                     x_unfetch};

int x_open(sqlite3_vfs *, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags) {
  auto *file = reinterpret_cast<File *>(f);
  file->base.pMethods = nullptr;
  file->real = static_cast<sqlite3_file *>(sqlite3_malloc(g_real->szOsFile));
  if (file->real == nullptr) return SQLITE_NOMEM;
  std::memset(file->real, 0, static_cast<std::size_t>(g_real->szOsFile));
  const int rc = g_real->xOpen(g_real, name, file->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    sqlite3_free(file->real);
    return rc;
  }
  new (&file->history) std::shared_ptr<History>();
  if (name != nullptr) {
    std::lock_guard<std::mutex> lock(g_files_mutex);
    auto &h = g_files[name];
    if (!h) h = std::make_shared<History>();
    file->history = h;
  } else {
    file->history = std::make_shared<History>();
  }
  file->base.pMethods = &kMethods;
  return SQLITE_OK;
}

}  // namespace

void PowerCutVfs::install() {
  if (g_installed) return;
  sqlite3_initialize();
  g_real = sqlite3_vfs_find("unix");
  g_vfs = *g_real;
  g_vfs.iVersion = 3;
  g_vfs.szOsFile = static_cast<int>(sizeof(File));
  g_vfs.zName = "kronop-power-cut";
  g_vfs.xOpen = x_open;
  sqlite3_vfs_register(&g_vfs, 1);
  g_installed = true;
}

void PowerCutVfs::uninstall() {
  if (!g_installed) return;
  sqlite3_vfs_unregister(&g_vfs);
  sqlite3_vfs_register(g_real, 1);
  g_installed = false;
  std::lock_guard<std::mutex> lock(g_files_mutex);
  g_files.clear();
}

unsigned long long PowerCutVfs::syncs() { return g_syncs.load(); }

void PowerCutVfs::snapshot(const std::string &dir, const std::string &to) {
  std::filesystem::create_directories(to);
  std::lock_guard<std::mutex> lock(g_files_mutex);
  for (auto &[path, history] : g_files) {
    const std::filesystem::path p(path);
    if (p.parent_path() != std::filesystem::path(dir)) continue;
    if (p.extension() == ".db-shm" || path.ends_with("-shm")) continue;  // rebuilt at open
    std::lock_guard<std::mutex> file_lock(history->mutex);
    const std::string copy = to + "/" + p.filename().string();
    std::error_code ec;
    std::filesystem::copy_file(p, copy, std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) continue;  // deleted meanwhile
    // Undo the unsynced writes, newest first.
    std::fstream out(copy, std::ios::in | std::ios::out | std::ios::binary);
    for (auto it = history->undo.rbegin(); it != history->undo.rend(); ++it) {
      if (!it->before.empty()) {
        out.seekp(it->offset);
        out.write(it->before.data(), static_cast<std::streamsize>(it->before.size()));
      }
      out.flush();
      std::filesystem::resize_file(copy, static_cast<std::uintmax_t>(it->old_size), ec);
    }
  }
}

}  // namespace kronop::test
