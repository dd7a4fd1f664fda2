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

#include "log.h"

namespace kronop::daemon {

struct ControlServer::Client {
  uv_pipe_t pipe{};
  ControlServer *server = nullptr;
  uint64_t id = 0;
  std::string in;          // bytes received and not yet a whole request
  bool answering = false;  // a request waits for its answer
  bool serving = false;    // in serve(): a reply given at once needs no new serve()
  bool closing = false;

  // The pipe handle owns its Client (released into pipe.data on accept): the close
  // callback takes it back, once libuv is done with the handle.
  void close() {
    if (closing) return;
    closing = true;
    server->clients_.erase(this);
    server->by_id_.erase(id);
    uv_close(reinterpret_cast<uv_handle_t *>(&pipe),
             [](uv_handle_t *h) { std::unique_ptr<Client>(static_cast<Client *>(h->data)); });
  }
};

namespace {

struct WriteRequest {
  uv_write_t req{};
  std::string bytes;
};

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
  listening_ = true;
  return true;
}

void ControlServer::close() {
  if (!listening_) return;
  listening_ = false;
  uv_close(reinterpret_cast<uv_handle_t *>(&pipe_), nullptr);
  for (Client *c : std::unordered_set<Client *>(clients_)) c->close();
  ::unlink(path_.c_str());
}

void ControlServer::on_connection(uv_stream_t *listener, int status) {
  auto *self = static_cast<ControlServer *>(listener->data);
  if (status < 0) {
    KLOG_WARN("event=control_accept_failed error=%s", log::q(uv_strerror(status)).c_str());
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
  std::string who;
  if (uv_fileno(reinterpret_cast<uv_handle_t *>(&client->pipe), &fd) != 0 ||
      !peer_allowed(fd, who)) {
    KLOG_WARN("event=control_refused peer=%s reason=\"not root, not our user or group\"",
              log::q(who).c_str());
    client->close();
    return;
  }
  uv_read_start(
      stream,
      [](uv_handle_t *h, size_t, uv_buf_t *buf) {
        // One read at a time on this loop: every client reads into the server's buffer and
        // keeps what it got in its own `in`.
        auto &read_buffer = static_cast<Client *>(h->data)->server->read_buffer_;
        *buf = uv_buf_init(read_buffer.data(), static_cast<unsigned>(read_buffer.size()));
      },
      [](uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
        auto *c = static_cast<Client *>(s->data);
        if (nread < 0) {
          c->close();
          return;
        }
        c->in.append(buf->base, static_cast<std::size_t>(nread));
        c->server->serve(c);
      });
}

void ControlServer::serve(Client *c) {
  c->serving = true;
  serve_requests(c);
  c->serving = false;
}

void ControlServer::serve_requests(Client *c) {
  while (!c->answering && !c->closing && c->in.size() >= 4) {
    uint32_t len = 0;
    std::memcpy(&len, c->in.data(), 4);  // little-endian: the only byte order we run on
    if (len > kMaxControlMessage) {
      KLOG_WARN("event=control_refused bytes=%u reason=\"request too large\"", len);
      c->close();
      return;
    }
    if (c->in.size() < 4 + std::size_t{len}) return;
    kronop::v1::ControlRequest request;
    const bool parsed = request.ParseFromArray(c->in.data() + 4, static_cast<int>(len));
    c->in.erase(0, 4 + std::size_t{len});
    if (!parsed) {
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
  if (c->closing) return;
  // The request owns its bytes until libuv calls back (then it is taken back).
  auto w = std::make_unique<WriteRequest>();
  const std::string body = response.SerializeAsString();
  const uint32_t out_len = static_cast<uint32_t>(body.size());
  w->bytes.assign(reinterpret_cast<const char *>(&out_len), 4);
  w->bytes += body;
  uv_buf_t out = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  w->req.data = w.get();
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t *>(&c->pipe), &out, 1,
               [](uv_write_t *req, int) {
                 std::unique_ptr<WriteRequest>(static_cast<WriteRequest *>(req->data));
               }) != 0) {
    c->close();
    return;
  }
  w.release();
}

}  // namespace kronop::daemon
