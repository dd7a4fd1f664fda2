// Creating, re-attaching and opening the shared-memory segment.
//
// The daemon owns the segment's lifetime: it creates it (zero-filled by ftruncate, so every
// ring starts empty and free), marks it ready, and never removes it on exit, so that a
// restarted daemon finds the records producers wrote while it was down. Producers only
// open an existing segment; they never create one.
#include "kronop/ipc/segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>

#include "kronop/ipc/process_identity.h"
#include "kronop/ipc/shrink_guard.h"
#include "kronop_ipc.h"

namespace bip = boost::interprocess;

namespace kronop::ipc {
namespace {
// The name a segment is made whole under before it is renamed into place.
constexpr const char *kTemporarySuffix = ".kronopd-new";
}  // namespace

struct Segment::Mapping {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

Segment::Segment(std::string name, std::unique_ptr<Mapping> mapping, SegmentGeometry geometry)
    : name_(std::move(name)),
      mapping_(std::move(mapping)),
      header_(static_cast<SegmentHeader *>(mapping_->region.get_address())),
      geometry_(geometry) {
  if (shrinking_protected()) {
    guard_mapping(mapping_->region.get_address(), mapping_->region.get_size(), fd());
  }
}

Segment::~Segment() {
  if (shrinking_protected()) unguard_mapping(mapping_->region.get_address());
}

int Segment::fd() const { return mapping_->shm.get_mapping_handle().handle; }

uint64_t Segment::mapped_size() const { return mapping_->region.get_size(); }

namespace {

int code_for(const bip::interprocess_exception &e) {
  switch (e.get_error_code()) {
    case bip::not_found_error:
      return KRONOP_ENODAEMON;
    case bip::security_error:
      return KRONOP_EACCES;
    default:
      return KRONOP_ESYS;
  }
}

Error error_from(const bip::interprocess_exception &e, std::string_view what,
                 std::string_view name) {
  return Error{code_for(e), std::string(what) + " /dev/shm/" + std::string(name) + ": " + e.what()};
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

// Reads and checks the header of a mapped segment of `mapped_size` bytes. Every field is
// checked against what the geometry implies, so a damaged or foreign segment is refused
// rather than trusted.
Result<SegmentGeometry> check_header(const SegmentHeader *hdr, uint64_t mapped_size) {
  if (mapped_size < sizeof(SegmentHeader)) {
    return Error{KRONOP_ELAYOUT, "segment is smaller than its header"};
  }
  if (hdr->magic != kSegmentMagic) return Error{KRONOP_ELAYOUT, "not a Kronop segment"};
  if (hdr->layout_version != kLayoutVersion) {
    return Error{KRONOP_ELAYOUT, "segment layout version " + std::to_string(hdr->layout_version) +
                                     ", this build speaks " + std::to_string(kLayoutVersion)};
  }
  SegmentGeometry g{hdr->ring_count, hdr->ring_capacity};
  if (!g.valid() || hdr->ring_stride != g.ring_stride() || hdr->rings_offset != g.rings_offset() ||
      hdr->total_size != g.total_size() || hdr->max_record != g.max_record() ||
      g.total_size() > mapped_size) {
    return Error{KRONOP_ELAYOUT, "segment header geometry is inconsistent"};
  }
  return g;
}

void write_header(SegmentHeader *hdr, const SegmentGeometry &g) {
  hdr->magic = kSegmentMagic;
  hdr->layout_version = kLayoutVersion;
  hdr->ring_count = g.ring_count;
  hdr->ring_capacity = g.ring_capacity;
  hdr->ring_stride = g.ring_stride();
  hdr->rings_offset = g.rings_offset();
  hdr->total_size = g.total_size();
  hdr->max_record = g.max_record();
  // Publishes the fields above to producers that acquire-load `ready`.
  hdr->ready.store(1, std::memory_order_release);
}

}  // namespace

std::string Segment::restore(uint32_t daemon_pid, uint64_t daemon_start_ticks, uint64_t epoch) {
  std::string found;
  const uint64_t size = mapped_size();
  struct stat st {};
  if (::fstat(fd(), &st) == 0 && static_cast<uint64_t>(st.st_size) < size) {
    found = "the segment file was shrunk to " + std::to_string(st.st_size) + " of " +
            std::to_string(size) + " bytes (grown back; records not yet read past that are lost)";
    if (::ftruncate(fd(), static_cast<off_t>(size)) != 0) {
      found += "; growing it back failed: " + std::string(std::strerror(errno));
    }
  }
  SegmentHeader *hdr = header_;
  const auto &g = geometry_;
  const bool layout_ok = hdr->magic == kSegmentMagic && hdr->layout_version == kLayoutVersion &&
                         hdr->ring_count == g.ring_count && hdr->ring_capacity == g.ring_capacity &&
                         hdr->ring_stride == g.ring_stride() &&
                         hdr->rings_offset == g.rings_offset() &&
                         hdr->total_size == g.total_size() && hdr->max_record == g.max_record();
  const bool state_ok =
      hdr->ready.load(std::memory_order_acquire) == 1 &&
      hdr->retired.load(std::memory_order_acquire) == 0 &&
      hdr->daemon_pid.load(std::memory_order_relaxed) == daemon_pid &&
      hdr->daemon_start_ticks.load(std::memory_order_relaxed) == daemon_start_ticks &&
      hdr->epoch.load(std::memory_order_relaxed) == epoch;
  if (!layout_ok || !state_ok) {
    // Identity first, then the layout, then ready (write_header's release store).
    hdr->retired.store(0, std::memory_order_relaxed);
    hdr->epoch.store(epoch, std::memory_order_relaxed);
    hdr->daemon_start_ticks.store(daemon_start_ticks, std::memory_order_relaxed);
    hdr->daemon_pid.store(daemon_pid, std::memory_order_relaxed);
    write_header(hdr, g);
    if (!found.empty()) found += "; ";
    found += "the segment header was overwritten (written again)";
  }
  return found;
}

Segment::Named Segment::named() const {
  struct stat mine {
  }, named{};
  if (::lstat(("/dev/shm/" + name_).c_str(), &named) != 0) return Named::kRemoved;
  if (::fstat(fd(), &mine) != 0) return Named::kThis;  // cannot tell: assume all is well
  return named.st_ino == mine.st_ino && named.st_dev == mine.st_dev ? Named::kThis
                                                                    : Named::kReplaced;
}

bool Segment::remove(std::string_view name) {
  // And what a daemon that died while creating the segment again left (create_in_place).
  bip::shared_memory_object::remove((std::string(name) + kTemporarySuffix).c_str());
  return bip::shared_memory_object::remove(std::string(name).c_str());
}

Result<bool> Segment::create_file(Mapping &mapping, const std::string &name, uint64_t size) {
  try {
    mapping.shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                            bip::permissions(0660));
    mapping.shm.truncate(static_cast<bip::offset_t>(size));
    mapping.region = bip::mapped_region(mapping.shm, bip::read_write);
  } catch (const bip::interprocess_exception &e) {
    return error_from(e, "cannot create", name);
  }
  return true;
}

Result<std::unique_ptr<Segment>> Segment::attach_as_daemon(const SegmentOptions &options,
                                                           std::string *note) {
  if (!valid_name(options.name)) {
    return Error{KRONOP_EINVAL, "invalid segment name '" + options.name + "'"};
  }
  SegmentGeometry wanted{options.ring_count, options.ring_capacity};
  if (!wanted.valid()) {
    return Error{KRONOP_EINVAL, "ring count must be 1.." +
                                    std::to_string(SegmentGeometry::kMaxRings) +
                                    " and ring size a power of two from 4 KiB to 1 GiB"};
  }
  const std::string name = options.name;
  auto mapping = std::make_unique<Mapping>();

  // 1. An existing segment: re-attach if compatible.
  try {
    mapping->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    bip::offset_t size = 0;
    mapping->shm.get_size(size);
    if (size >= static_cast<bip::offset_t>(sizeof(SegmentHeader))) {
      mapping->region = bip::mapped_region(mapping->shm, bip::read_write);
      auto *hdr = static_cast<SegmentHeader *>(mapping->region.get_address());
      auto geometry = check_header(hdr, mapping->region.get_size());
      if (geometry.ok() && hdr->ready.load(std::memory_order_acquire) == 1) {
        uint32_t pid = hdr->daemon_pid.load(std::memory_order_acquire);
        uint64_t ticks = hdr->daemon_start_ticks.load(std::memory_order_acquire);
        if (pid != 0 && static_cast<pid_t>(pid) != ::getpid() &&
            lease_holder_alive(make_lease_word(pid, ticks))) {
          return Error{KRONOP_ESYS, "another kronopd (pid " + std::to_string(pid) +
                                        ") is attached to /dev/shm/" + name};
        }
        std::unique_ptr<Segment> seg(new Segment(name, std::move(mapping), geometry.value()));
        if (note != nullptr) {
          *note = "re-attached to /dev/shm/" + name + " (" + std::to_string(geometry->ring_count) +
                  " rings of " + std::to_string(geometry->ring_capacity) + " bytes)";
          if (geometry->ring_count != wanted.ring_count ||
              geometry->ring_capacity != wanted.ring_capacity) {
            *note += "; its geometry is kept over the configured one";
          }
        }
        return seg;
      }
      // Incompatible: tell any producer still mapping it to reopen, then replace it.
      if (hdr->magic == kSegmentMagic) hdr->retired.store(1, std::memory_order_release);
      if (note != nullptr) {
        *note = "replaced incompatible segment /dev/shm/" + name + " (" +
                (geometry.ok() ? std::string("not ready") : geometry.error().message) + "); ";
      }
    }
    mapping->region = bip::mapped_region();
    mapping->shm = bip::shared_memory_object();
    bip::shared_memory_object::remove(name.c_str());
  } catch (const bip::interprocess_exception &e) {
    if (e.get_error_code() != bip::not_found_error) {
      return error_from(e, "cannot open", name);
    }
  }

  // 2. Create a new one. ftruncate zero-fills: every lease free, every position 0.
  if (auto created = create_file(*mapping, name, wanted.total_size()); !created.ok()) {
    return created.error();
  }
  auto *hdr = static_cast<SegmentHeader *>(mapping->region.get_address());
  write_header(hdr, wanted);
  if (note != nullptr) {
    *note += "created /dev/shm/" + name + " (" + std::to_string(wanted.ring_count) + " rings of " +
             std::to_string(wanted.ring_capacity) + " bytes, mode 0660)";
  }
  return std::unique_ptr<Segment>(new Segment(name, std::move(mapping), wanted));
}

namespace {

// The daemon recorded in the header of whatever file is at /dev/shm/<name> now, when that is
// a Kronop segment whose daemon is alive and is not this process; 0 otherwise. Read with
// pread, not a mapping: the file is someone else's and may shrink while we look.
uint32_t live_other_daemon(const std::string &name) {
  const int fd = ::open(("/dev/shm/" + name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  SegmentHeader hdr;
  const ssize_t n = ::pread(fd, &hdr, sizeof hdr, 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof hdr) || hdr.magic != kSegmentMagic) return 0;
  const uint32_t pid = hdr.daemon_pid.load(std::memory_order_relaxed);
  const uint64_t ticks = hdr.daemon_start_ticks.load(std::memory_order_relaxed);
  if (pid == 0 || static_cast<pid_t>(pid) == ::getpid()) return 0;
  return lease_holder_alive(make_lease_word(pid, ticks)) ? pid : 0;
}

}  // namespace

Result<std::unique_ptr<Segment>> Segment::create_in_place(const std::string &name,
                                                          const SegmentGeometry &geometry,
                                                          const DaemonIdentity &daemon) {
  if (uint32_t other = live_other_daemon(name); other != 0) {
    return Error{KRONOP_ESYS, "another kronopd (pid " + std::to_string(other) +
                                  ") is attached to /dev/shm/" + name};
  }
  // Made whole under a name of our own, then renamed over the public one in one step: a
  // producer that opens the name finds the old file, nothing, or the new one ready.
  const std::string temporary = name + kTemporarySuffix;
  bip::shared_memory_object::remove(temporary.c_str());
  auto mapping = std::make_unique<Mapping>();
  if (auto created = create_file(*mapping, temporary, geometry.total_size()); !created.ok()) {
    bip::shared_memory_object::remove(temporary.c_str());
    return created.error();
  }
  auto *hdr = static_cast<SegmentHeader *>(mapping->region.get_address());
  hdr->epoch.store(daemon.epoch, std::memory_order_relaxed);
  hdr->daemon_start_ticks.store(daemon.start_ticks, std::memory_order_relaxed);
  hdr->daemon_pid.store(daemon.pid, std::memory_order_relaxed);
  hdr->heartbeat_ns.store(daemon.heartbeat_ns, std::memory_order_relaxed);
  write_header(hdr, geometry);
  const std::string from = "/dev/shm/" + temporary, to = "/dev/shm/" + name;
  if (::rename(from.c_str(), to.c_str()) != 0) {
    const int err = errno;
    bip::shared_memory_object::remove(temporary.c_str());
    return Error{KRONOP_ESYS, "cannot rename " + from + " to " + to + ": " + std::strerror(err)};
  }
  return std::unique_ptr<Segment>(new Segment(name, std::move(mapping), geometry));
}

Result<std::unique_ptr<Segment>> Segment::open_as_producer(std::string_view name) {
  if (!valid_name(name)) {
    return Error{KRONOP_EINVAL, "invalid segment name '" + std::string(name) + "'"};
  }
  auto mapping = std::make_unique<Mapping>();
  try {
    mapping->shm =
        bip::shared_memory_object(bip::open_only, std::string(name).c_str(), bip::read_write);
    mapping->region = bip::mapped_region(mapping->shm, bip::read_write);
  } catch (const bip::interprocess_exception &e) {
    if (e.get_error_code() == bip::not_found_error) {
      return Error{KRONOP_ENODAEMON, "no segment /dev/shm/" + std::string(name) +
                                         ": is kronopd running (with --shm-name " +
                                         std::string(name) + ")?"};
    }
    return error_from(e, "cannot open", name);
  }
  auto *hdr = static_cast<SegmentHeader *>(mapping->region.get_address());
  if (mapping->region.get_size() < sizeof(SegmentHeader) ||
      hdr->ready.load(std::memory_order_acquire) != 1) {
    return Error{KRONOP_ENODAEMON, "segment /dev/shm/" + std::string(name) + " is not ready"};
  }
  auto geometry = check_header(hdr, mapping->region.get_size());
  if (!geometry.ok()) return geometry.error();
  if (hdr->retired.load(std::memory_order_acquire) != 0) {
    return Error{KRONOP_ENODAEMON, "segment /dev/shm/" + std::string(name) + " was retired"};
  }
  return std::unique_ptr<Segment>(
      new Segment(std::string(name), std::move(mapping), geometry.value()));
}

}  // namespace kronop::ipc
