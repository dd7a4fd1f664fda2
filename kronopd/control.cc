// The control socket server; see control.h.
#include "control.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "kronop/clock.h"
#include "log.h"

namespace kronop::daemon {

struct ControlServer::Client {
  uv_pipe_t pipe{};
  uv_shutdown_t shutdown{};
  ControlServer *server = nullptr;
  uint64_t id = 0;
  std::string who;         // "pid N uid N", for the log
  std::string in;          // bytes received and not yet a whole request
  bool answering = false;  // a request waits for its answer
  bool serving = false;    // in serve(): a reply given at once needs no new serve()
  bool reading = false;    // uv_read_start is in effect
  bool paused = false;     // over the unsent bounds: requests wait until the peer reads
  bool finishing = false;  // refused: the last reply is going out, then the close
  bool closing = false;
  // Replies handed to libuv whose write has not called back (taken by the kernel or not).
  std::size_t unsent_bytes = 0;
  std::size_t unsent_replies = 0;
  // Monotonic ms after which the sweep closes the connection: set while a partial request
  // is being read (its first byte's time + kControlRequestDeadlineMs), and while a refused
  // connection's last reply goes out. 0: none.
  uint64_t deadline_ms = 0;

  bool over_unsent_bounds() const {
    return unsent_bytes >= kMaxControlUnsentBytes || unsent_replies >= kMaxControlUnsentReplies;
  }

  // The pipe handle owns its Client (released into pipe.data on accept): the close
  // callback takes it back, once libuv is done with the handle (pending writes and the
  // shutdown have called back by then).
  void close() {
    if (closing) return;
    closing = true;
    server->clients_.erase(this);
    server->by_id_.erase(id);
    uv_close(reinterpret_cast<uv_handle_t *>(&pipe),
             [](uv_handle_t *h) { std::unique_ptr<Client>(static_cast<Client *>(h->data)); });
  }

  // Stops reading and closes once what was sent is taken (or the deadline passes).
  void finish() {
    if (closing || finishing) return;
    finishing = true;
    in.clear();
    if (reading) uv_read_stop(reinterpret_cast<uv_stream_t *>(&pipe));
    reading = false;
    deadline_ms = monotonic_ms() + kControlRequestDeadlineMs;
    shutdown.data = this;
    if (uv_shutdown(&shutdown, reinterpret_cast<uv_stream_t *>(&pipe), [](uv_shutdown_t *req, int) {
          static_cast<Client *>(req->data)->close();
        }) != 0) {
      close();
    }
  }
};

namespace {

struct WriteRequest {
  uv_write_t req{};
  std::string bytes;
};

constexpr uint64_t kSweepMs = 1000;

// True when the user is a member of `group`, as a primary or a supplementary group.
bool user_in_group(uid_t uid, gid_t primary, gid_t group) {
  if (primary == group) return true;
  long bufsize = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(bufsize > 0 ? static_cast<std::size_t>(bufsize) : 16384);
  passwd pw{};
  passwd *found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return false;
  std::vector<gid_t> groups(64);
  int n = static_cast<int>(groups.size());
  if (getgrouplist(pw.pw_name, primary, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (getgrouplist(pw.pw_name, primary, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<std::size_t>(i)] == group) return true;
  }
  return false;
}

bool peer_allowed(int fd, std::string &who) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  who = "pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid);
  return cred.uid == 0 || cred.uid == geteuid() || user_in_group(cred.uid, cred.gid, getegid());
}

// True when a daemon answers on `path` (so it is not a stale file).
bool someone_listens(const std::string &path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  bool alive = ::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0;
  ::close(fd);
  return alive;
}

}  // namespace

ControlFrame next_control_request(std::string_view in, kronop::v1::ControlRequest &request) {
  ControlFrame f;
  if (in.size() < 4) return f;
  std::memcpy(&f.length, in.data(), 4);  // little-endian: the only byte order we run on
  if (f.length > kMaxControlRequest) {
    f.kind = ControlFrame::Kind::kTooLarge;
    return f;
  }
  if (in.size() - 4 < f.length) return f;
  f.used = 4 + std::size_t{f.length};
  f.kind = request.ParseFromArray(in.data() + 4, static_cast<int>(f.length))
               ? ControlFrame::Kind::kRequest
               : ControlFrame::Kind::kMalformed;
  return f;
}

ControlServer::ControlServer(uv_loop_t *loop, std::string path, ControlResponder responder)
    : loop_(loop), path_(std::move(path)), responder_(std::move(responder)) {}

ControlServer::~ControlServer() = default;

Result<bool> ControlServer::listen() {
  if (path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Error{-ENAMETOOLONG, "control socket path is too long: " + path_};
  }
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{-EEXIST, path_ + " exists and is not a socket"};
    }
    if (someone_listens(path_)) {
      return Error{-EADDRINUSE, "another kronopd answers on " + path_};
    }
    ::unlink(path_.c_str());
  }
  uv_pipe_init(loop_, &pipe_, 0);
  pipe_.data = this;
  int rc = uv_pipe_bind(&pipe_, path_.c_str());
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t *>(&pipe_), 64, on_connection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(&pipe_), nullptr);
    return Error{rc, "cannot listen on " + path_ + ": " + uv_strerror(rc)};
  }
  ::chmod(path_.c_str(), 0660);
  uv_timer_init(loop_, &sweep_);
  sweep_.data = this;
  uv_timer_start(&sweep_, on_sweep, kSweepMs, kSweepMs);
  uv_unref(reinterpret_cast<uv_handle_t *>(&sweep_));  // it must not keep the loop alive
  listening_ = true;
  return true;
}

void ControlServer::close() {
  if (!listening_) return;
  listening_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&pipe_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&sweep_), nullptr);
  for (Client *c : std::unordered_set<Client *>(clients_)) c->close();
  ::unlink(path_.c_str());
}

bool ControlServer::may_log(Fault kind, uint64_t *suppressed) {
  return log::enabled(log::Level::kWarning) &&
         fault_log_[static_cast<std::size_t>(kind)].allow(monotonic_ms(), suppressed);
}

void ControlServer::on_connection(uv_stream_t *listener, int status) {
  auto *self = static_cast<ControlServer *>(listener->data);
  uint64_t suppressed = 0;
  if (status < 0) {
    if (self->may_log(Fault::kAccept, &suppressed)) {
      KLOG_WARN("event=control_accept_failed error=%s suppressed=%llu",
                log::q(uv_strerror(status)).c_str(), static_cast<unsigned long long>(suppressed));
    }
    return;
  }
  Client *client = std::make_unique<Client>().release();  // owned by its pipe, see Client
  client->server = self;
  client->id = ++self->next_id_;
  uv_pipe_init(self->loop_, &client->pipe, 0);
  client->pipe.data = client;
  self->clients_.insert(client);
  self->by_id_.emplace(client->id, client);
  auto *stream = reinterpret_cast<uv_stream_t *>(&client->pipe);
  if (uv_accept(listener, stream) != 0) {
    client->close();
    return;
  }
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t *>(&client->pipe), &fd) != 0 ||
      !peer_allowed(fd, client->who)) {
    if (self->may_log(Fault::kRefused, &suppressed)) {
      KLOG_WARN(
          "event=control_refused peer=%s reason=\"not root, not our user or group\" "
          "suppressed=%llu",
          log::q(client->who).c_str(), static_cast<unsigned long long>(suppressed));
    }
    client->close();
    return;
  }
  self->update_reading(client);
}

void ControlServer::update_reading(Client *c) {
  auto *stream = reinterpret_cast<uv_stream_t *>(&c->pipe);
  const bool want = !c->closing && !c->finishing && !c->answering && !c->paused;
  if (want && !c->reading) {
    const int rc = uv_read_start(
        stream,
        [](uv_handle_t *h, size_t, uv_buf_t *buf) {
          // One read at a time on this loop: every client reads into the server's buffer
          // and keeps what it got in its own `in`.
          auto &read_buffer = static_cast<Client *>(h->data)->server->read_buffer_;
          *buf = uv_buf_init(read_buffer.data(), static_cast<unsigned>(read_buffer.size()));
        },
        [](uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
          auto *client = static_cast<Client *>(s->data);
          if (nread < 0) {
            client->close();
            return;
          }
          client->in.append(buf->base, static_cast<std::size_t>(nread));
          client->server->serve(client);
        });
    if (rc != 0) {
      c->close();
      return;
    }
    c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop(stream);
    c->reading = false;
  }
  // The deadline runs while a partial request is being read: from its first byte, or from
  // when reading resumed (the rest may have been waiting in the socket meanwhile).
  if (c->finishing) return;
  if (!c->reading || c->in.empty()) {
    c->deadline_ms = 0;
  } else if (c->deadline_ms == 0) {
    c->deadline_ms = monotonic_ms() + kControlRequestDeadlineMs;
  }
}

void ControlServer::on_sweep(uv_timer_t *timer) {
  auto *self = static_cast<ControlServer *>(timer->data);
  const uint64_t now = monotonic_ms();
  std::vector<Client *> late;
  for (Client *c : self->clients_) {
    if (c->deadline_ms != 0 && now >= c->deadline_ms) late.push_back(c);
  }
  for (Client *c : late) {
    uint64_t suppressed = 0;
    if (!c->finishing && self->may_log(Fault::kDeadline, &suppressed)) {
      KLOG_WARN(
          "event=control_closed peer=%s reason=\"request incomplete after %llu ms\" bytes=%zu "
          "suppressed=%llu",
          log::q(c->who).c_str(), static_cast<unsigned long long>(kControlRequestDeadlineMs),
          c->in.size(), static_cast<unsigned long long>(suppressed));
    }
    c->close();
  }
}

void ControlServer::serve(Client *c) {
  c->serving = true;
  serve_requests(c);
  c->serving = false;
  if (!c->closing) update_reading(c);
}

void ControlServer::serve_requests(Client *c) {
  while (!c->answering && !c->closing && !c->finishing) {
    if (c->over_unsent_bounds()) {
      // Resumed by the write callbacks, once the peer has taken enough.
      if (!c->paused) {
        c->paused = true;
        uint64_t suppressed = 0;
        if (may_log(Fault::kBackpressure, &suppressed)) {
          KLOG_NOTICE(
              "event=control_backpressure peer=%s unsent_bytes=%zu unsent_replies=%zu "
              "note=\"the peer does not read its replies: its requests wait\" suppressed=%llu",
              log::q(c->who).c_str(), c->unsent_bytes, c->unsent_replies,
              static_cast<unsigned long long>(suppressed));
        }
      }
      return;
    }
    kronop::v1::ControlRequest request;
    const ControlFrame f = next_control_request(c->in, request);
    if (f.kind == ControlFrame::Kind::kNeedMore) return;
    if (f.kind == ControlFrame::Kind::kTooLarge) {
      uint64_t suppressed = 0;
      if (may_log(Fault::kTooLarge, &suppressed)) {
        KLOG_WARN(
            "event=control_refused peer=%s bytes=%u reason=\"request too large\" "
            "suppressed=%llu",
            log::q(c->who).c_str(), f.length, static_cast<unsigned long long>(suppressed));
      }
      kronop::v1::ControlResponse response;
      response.set_error("control request of " + std::to_string(f.length) +
                         " bytes is over the limit of " + std::to_string(kMaxControlRequest) +
                         " bytes");
      send(c, response);
      c->finish();
      return;
    }
    c->in.erase(0, f.used);
    c->deadline_ms = 0;  // the next request's deadline starts with its first byte
    if (f.kind == ControlFrame::Kind::kMalformed) {
      kronop::v1::ControlResponse response;
      response.set_error("malformed control request");
      send(c, response);
      continue;
    }
    c->answering = true;
    responder_(request, [this, id = c->id](const kronop::v1::ControlResponse &response) {
      auto it = by_id_.find(id);
      if (it == by_id_.end()) return;  // the client left meanwhile
      Client *client = it->second;
      client->answering = false;
      send(client, response);
      if (!client->serving) serve(client);  // what it sent meanwhile
    });
  }
}

void ControlServer::send(Client *c, const kronop::v1::ControlResponse &response) {
  if (c->closing || c->finishing) return;
  // The request owns its bytes until libuv calls back (then it is taken back).
  auto w = std::make_unique<WriteRequest>();
  const std::string body = response.SerializeAsString();
  const uint32_t out_len = static_cast<uint32_t>(body.size());
  w->bytes.assign(reinterpret_cast<const char *>(&out_len), 4);
  w->bytes += body;
  uv_buf_t out = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  w->req.data = w.get();
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t *>(&c->pipe), &out, 1,
               [](uv_write_t *req, int status) {
                 std::unique_ptr<WriteRequest> done(static_cast<WriteRequest *>(req->data));
                 // Called before the pipe's close callback: the client is still there.
                 auto *client = static_cast<Client *>(req->handle->data);
                 client->unsent_bytes -= done->bytes.size();
                 --client->unsent_replies;
                 if (status < 0) {
                   client->close();  // the peer is gone (or we are closing)
                   return;
                 }
                 if (client->paused && !client->closing && !client->over_unsent_bounds()) {
                   client->paused = false;
                   if (!client->serving) client->server->serve(client);
                 }
               }) != 0) {
    c->close();
    return;
  }
  c->unsent_bytes += w->bytes.size();
  ++c->unsent_replies;
  w.release();
}

}  // namespace kronop::daemon
