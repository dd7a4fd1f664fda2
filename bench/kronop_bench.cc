// kronop-bench: the fan-out load generator. It opens many WebSocket subscribers (Phoenix
// protocol, or raw WebSocket for kronopd's plain endpoints and for peer servers), joins
// them to topics, publishes at a fixed rate with the publish time in every message, and
// reports deliveries per second and the delivery latency (publish to receipt) percentiles,
// next to the server's own CPU time per delivery and its memory per connection.
//
// Processes. The driver (this process) forks the workers first, before it starts any
// thread; each worker runs one libuv loop with its share of the connections (a process may
// have only so many files open), spread over several 127.0.0.x source addresses so that
// more than ~60K connections to one port are possible. Workers and driver talk over pipes:
// a worker says "ready" once its connections are joined, the driver says "go" (record from
// now on) and later "stop", and the worker answers with its counts and histograms (text
// lines). The driver publishes itself, from one thread, through libipc (kronopd) or with
// HTTP POSTs (a peer server), pacing by absolute deadlines so that a slow moment does not
// lower the average rate.
//
// Latency. Every published payload is a JSON object {"t":<CLOCK_REALTIME ns>,"pad":"..."}
// padded to --size bytes; a subscriber finds "t" in each text frame it receives. Publisher
// and subscribers are on this host and read the same clock.
//
// Nothing here bends a figure: the percentiles are bucket upper bounds (1/16 precision),
// and messages lost or late past the end of the run are reported, not hidden.
#include <arpa/inet.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth.h"
#include "daemon_under_test.h"
#include "kronop/clock.h"
#include "kronop_ipc.h"
#include "latency_histogram.h"

namespace {

using kronop::daemon::LatencyHistogram;

// ---------------------------------------------------------------------------------------
// Options

struct Options {
  std::string host = "127.0.0.1";
  int port = 4000;
  // More servers' ports (a kronopd cluster's other nodes): connection i connects to the i-th
  // of [port, more_ports...], round robin, while the publisher publishes to the first.
  std::vector<int> more_ports;
  std::string mode = "phoenix";  // phoenix | raw
  std::string path;              // phoenix: /ws/websocket?vsn=2.0.0; raw: with {topic}/{id}
  uint64_t connections = 100;
  uint64_t topics = 1;
  std::string topic_prefix = "reel:bench-";
  unsigned source_ips = 1;
  unsigned workers = 0;  // 0: one per 15,000 connections
  double rate = 100;     // messages per second, all topics together
  std::size_t size = 200;
  double duration = 10;
  double warmup = 1;
  std::string publish = "ipc";  // ipc | http | none
  std::string shm_name = "kronop";
  std::string publish_url_path = "/pub/{id}";  // http mode: POST target, {topic}/{id} filled
  std::vector<int> pids;                       // server processes to watch (CPU, memory)
  double hold = 0;                             // seconds to hold idle connections (no publish)
  unsigned connect_parallel = 256;
  uint64_t stall = 0;  // the first N connections stop reading once joined (slow consumers)
  bool json = false;
  std::string plot;
  std::string label;
  // Each connection presents a token for user "bench-<i>" signed with this secret, so it is
  // someone (tracked by presence) rather than anonymous.
  std::string token_secret;
};

// The port connection `index` connects to.
int port_of(const Options &o, int index) {
  const std::size_t n = o.more_ports.size() + 1;
  const std::size_t k = static_cast<std::size_t>(index) % n;
  return k == 0 ? o.port : o.more_ports[k - 1];
}

std::string topic_name(const Options &o, uint64_t i) { return o.topic_prefix + std::to_string(i); }
std::string topic_id(const Options &o, uint64_t i) {
  std::string t = topic_name(o, i);
  auto colon = t.find(':');
  return colon == std::string::npos ? t : t.substr(colon + 1);
}
std::string fill(std::string pattern, const std::string &topic, const std::string &id) {
  for (auto [key, value] : {std::pair<std::string, std::string>{"{topic}", topic},
                            std::pair<std::string, std::string>{"{id}", id}}) {
    for (std::size_t at; (at = pattern.find(key)) != std::string::npos;)
      pattern.replace(at, key.size(), value);
  }
  return pattern;
}

// ---------------------------------------------------------------------------------------
// A plain (single-thread) histogram with LatencyHistogram's buckets, mergeable and
// printable as text.

struct Histogram {
  std::vector<uint64_t> counts = std::vector<uint64_t>(LatencyHistogram::kBuckets);
  uint64_t n = 0;
  uint64_t max = 0;

  void record(uint64_t v) {
    ++counts[static_cast<std::size_t>(LatencyHistogram::bucket_of(v))];
    ++n;
    max = std::max(max, v);
  }
  void merge(const Histogram &o) {
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
    n += o.n;
    max = std::max(max, o.max);
  }
  uint64_t quantile(double q) const {
    if (n == 0) return 0;
    const uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
    uint64_t seen = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      seen += counts[i];
      if (seen >= rank) return std::min(LatencyHistogram::bucket_high(static_cast<int>(i)), max);
    }
    return max;
  }
  std::string to_text() const {
    std::string s = std::to_string(n) + " " + std::to_string(max);
    for (std::size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] != 0) s += " " + std::to_string(i) + ":" + std::to_string(counts[i]);
    }
    return s;
  }
  static Histogram from_text(std::istream &in) {
    Histogram h;
    in >> h.n >> h.max;
    std::string item;
    while (in >> item) {
      auto colon = item.find(':');
      if (colon == std::string::npos) continue;
      std::size_t b = std::stoul(item.substr(0, colon));
      if (b < h.counts.size()) h.counts[b] += std::stoull(item.substr(colon + 1));
    }
    return h;
  }
};

// ---------------------------------------------------------------------------------------
// Worker: the subscribers

struct Worker;

struct Conn {
  uv_tcp_t tcp{};
  uv_connect_t connect{};
  Worker *worker = nullptr;
  uint64_t index = 0;  // global connection number
  std::string topic;
  enum class State : uint8_t { kConnecting, kHandshake, kJoining, kReady, kFailed } state{};
  http_parser parser{};
  bool headers_done = false;
  std::string in;  // unparsed bytes
};

struct WriteReq {
  uv_write_t req{};
  std::string bytes;
};

struct Worker {
  const Options *o = nullptr;
  unsigned id = 0;
  uint64_t first = 0, count = 0;  // connections [first, first + count)
  int to_driver = -1, from_driver = -1;
  uv_loop_t *loop = nullptr;
  std::vector<Conn *> conns;
  uint64_t next_to_connect = 0;
  unsigned connecting = 0;
  uint64_t ready = 0, failed = 0;
  bool ready_sent = false;
  bool recording = false;
  uint64_t go_ns = 0;
  uint64_t deliveries = 0, unparsed = 0, closed = 0;
  Histogram total;
  std::vector<Histogram> per_second;
  uv_poll_t driver_poll{};
  uv_timer_t heartbeat{};
  std::string last_error;
};

std::string masked_frame(uint8_t opcode, const std::string &payload) {
  std::string f;
  f.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  f.append(reinterpret_cast<const char *>(key), 4);
  for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
  return f;
}

void conn_write(Conn *c, std::string bytes) {
  auto *w = new WriteReq;
  w->bytes = std::move(bytes);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  if (uv_write(&w->req, reinterpret_cast<uv_stream_t *>(&c->tcp), &buf, 1,
               [](uv_write_t *r, int) { delete static_cast<WriteReq *>(r->data); }) != 0) {
    delete w;
  }
}

void send_to_driver(Worker *w, const std::string &line) {
  std::string s = line + "\n";
  const char *p = s.data();
  std::size_t left = s.size();
  while (left > 0) {
    ssize_t n = ::write(w->to_driver, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

void check_ready(Worker *w) {
  if (w->ready_sent || w->ready + w->failed < w->count) return;
  w->ready_sent = true;
  send_to_driver(w, "ready " + std::to_string(w->ready) + " " + std::to_string(w->failed) + " " +
                        w->last_error);
}

void fail(Conn *c, const std::string &why) {
  Worker *w = c->worker;
  if (c->state == Conn::State::kReady) {
    ++w->closed;
  } else if (c->state != Conn::State::kFailed) {
    ++w->failed;
    w->last_error = why;
  }
  c->state = Conn::State::kFailed;
  if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&c->tcp)))
    uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp), nullptr);
  check_ready(w);
}

void start_connects(Worker *w);

void became_ready(Conn *c) {
  c->state = Conn::State::kReady;
  ++c->worker->ready;
  // A slow consumer: joined, then reads nothing more (its deliveries are not counted).
  if (c->index < c->worker->o->stall) uv_read_stop(reinterpret_cast<uv_stream_t *>(&c->tcp));
  check_ready(c->worker);
}

// A text message: a delivery when it carries "t"; in phoenix mode the join reply first.
void on_text(Conn *c, std::string_view msg) {
  Worker *w = c->worker;
  if (c->state == Conn::State::kJoining) {
    if (msg.find("\"phx_reply\"") != std::string_view::npos) {
      if (msg.find("\"status\":\"ok\"") != std::string_view::npos) {
        became_ready(c);
      } else {
        fail(c, "join refused: " + std::string(msg.substr(0, 200)));
      }
    }
    return;
  }
  auto at = msg.find("\"t\":");
  if (at == std::string_view::npos) return;  // heartbeat replies and the like
  uint64_t t = 0;
  std::size_t i = at + 4;
  while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') t = t * 10 + uint64_t(msg[i++] - '0');
  if (t == 0) {
    ++w->unparsed;
    return;
  }
  if (!w->recording) return;
  const uint64_t now = kronop::realtime_ns();
  const uint64_t lat = now > t ? now - t : 0;
  ++w->deliveries;
  w->total.record(lat);
  const std::size_t second = now > w->go_ns ? (now - w->go_ns) / 1'000'000'000ULL : 0;
  if (second >= w->per_second.size()) w->per_second.resize(second + 1);
  w->per_second[second].record(lat);
}

// Parses the server's (unmasked) frames in c->in.
void parse_frames(Conn *c) {
  std::size_t pos = 0;
  const std::string &b = c->in;
  while (b.size() - pos >= 2) {
    const auto b0 = static_cast<uint8_t>(b[pos]), b1 = static_cast<uint8_t>(b[pos + 1]);
    const uint8_t opcode = b0 & 0x0f;
    uint64_t len = b1 & 0x7f;
    std::size_t hdr = 2;
    if (len == 126) {
      if (b.size() - pos < 4) break;
      len = (uint64_t(uint8_t(b[pos + 2])) << 8) | uint8_t(b[pos + 3]);
      hdr = 4;
    } else if (len == 127) {
      if (b.size() - pos < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(b[pos + 2 + std::size_t(i)]);
      hdr = 10;
    }
    if (b.size() - pos < hdr + len) break;
    std::string_view payload(b.data() + pos + hdr, len);
    pos += hdr + len;
    if (opcode == 0x1) {
      on_text(c, payload);
    } else if (opcode == 0x9) {
      conn_write(c, masked_frame(0xA, std::string(payload)));
    } else if (opcode == 0x8) {
      fail(c, "closed by the server");
      return;
    }
    if (c->state == Conn::State::kFailed) return;
  }
  c->in.erase(0, pos);
}

int on_headers_complete(http_parser *p) {
  auto *c = static_cast<Conn *>(p->data);
  c->headers_done = true;
  return 0;
}

void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  auto *c = static_cast<Conn *>(s->data);
  if (nread < 0) {
    delete[] buf->base;
    fail(c, std::string("read: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) {
    delete[] buf->base;
    return;
  }
  std::string_view data(buf->base, static_cast<std::size_t>(nread));
  if (c->state == Conn::State::kHandshake) {
    http_parser_settings settings{};
    settings.on_headers_complete = on_headers_complete;
    std::size_t used = http_parser_execute(&c->parser, &settings, data.data(), data.size());
    if (c->parser.http_errno != HPE_OK && !c->headers_done) {
      delete[] buf->base;
      fail(c, "bad handshake response");
      return;
    }
    if (!c->headers_done) {
      delete[] buf->base;
      return;
    }
    if (c->parser.status_code != 101) {
      delete[] buf->base;
      fail(c, "handshake answered " + std::to_string(c->parser.status_code));
      return;
    }
    // After a 101, http_parser stops at the end of the headers: the rest is frames.
    used = std::min(used, data.size());
    data.remove_prefix(used);
    if (c->worker->o->mode == "phoenix") {
      c->state = Conn::State::kJoining;
      conn_write(c, masked_frame(0x1, "[\"1\",\"1\",\"" + c->topic + "\",\"phx_join\",{}]"));
    } else {
      became_ready(c);
    }
  }
  c->in.append(data);
  delete[] buf->base;
  parse_frames(c);
}

void on_connect(uv_connect_t *req, int status) {
  auto *c = static_cast<Conn *>(req->data);
  Worker *w = c->worker;
  --w->connecting;
  if (status < 0) {
    fail(c, std::string("connect: ") + uv_strerror(status));
    start_connects(w);
    return;
  }
  const Options &o = *w->o;
  c->state = Conn::State::kHandshake;
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  std::string path = o.mode == "phoenix" ? (o.path.empty() ? "/ws/websocket?vsn=2.0.0" : o.path)
                                         : fill(o.path.empty() ? "/ws/reel/{id}" : o.path, c->topic,
                                                c->topic.substr(c->topic.find(':') + 1));
  if (!o.token_secret.empty()) {
    const int64_t now = static_cast<int64_t>(::time(nullptr));
    path += path.find('?') == std::string::npos ? "?token=" : "&token=";
    path += kronop::mint_token(o.token_secret, "bench-" + std::to_string(c->index), false, now,
                               now + 3600);
  }
  conn_write(c, "GET " + path + " HTTP/1.1\r\nHost: " + o.host + ":" +
                    std::to_string(port_of(o, c->index)) +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n");
  uv_read_start(
      reinterpret_cast<uv_stream_t *>(&c->tcp),
      [](uv_handle_t *, size_t suggested, uv_buf_t *buf) {
        // Per read, not per connection: an idle subscriber holds no buffer.
        buf->base = new char[std::min<size_t>(suggested, 65536)];
        buf->len = std::min<size_t>(suggested, 65536);
      },
      on_read);
  start_connects(w);
}

void start_connects(Worker *w) {
  const Options &o = *w->o;
  while (w->connecting < o.connect_parallel && w->next_to_connect < w->count) {
    auto *c = new Conn;
    c->worker = w;
    c->index = w->first + w->next_to_connect++;
    c->topic = topic_name(o, c->index % o.topics);
    w->conns.push_back(c);
    uv_tcp_init(w->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    if (o.source_ips > 1) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      local.sin_port = 0;
      local.sin_addr.s_addr = htonl(0x7f000001u + static_cast<uint32_t>(c->index % o.source_ips));
      uv_tcp_bind(&c->tcp, reinterpret_cast<const sockaddr *>(&local), 0);
    }
    sockaddr_in addr{};
    uv_ip4_addr(o.host.c_str(), port_of(o, c->index), &addr);
    ++w->connecting;
    int rc =
        uv_tcp_connect(&c->connect, &c->tcp, reinterpret_cast<const sockaddr *>(&addr), on_connect);
    if (rc != 0) {
      --w->connecting;
      fail(c, std::string("connect: ") + uv_strerror(rc));
    }
  }
}

void on_driver(uv_poll_t *p, int status, int) {
  auto *w = static_cast<Worker *>(p->data);
  char cmd[64];
  ssize_t n = status < 0 ? 0 : ::read(w->from_driver, cmd, sizeof cmd);
  if (n < 0 && errno == EINTR) return;
  for (ssize_t i = 0; i < std::max<ssize_t>(n, 1); ++i) {
    const char c = n > 0 ? cmd[i] : 's';  // a closed pipe: the driver is gone, stop
    if (c == 'g') {
      w->recording = true;
      w->go_ns = kronop::realtime_ns();
    } else if (c == 's') {
      w->recording = false;
      std::string per;
      send_to_driver(w, "result " + std::to_string(w->deliveries) + " " +
                            std::to_string(w->unparsed) + " " + std::to_string(w->closed));
      send_to_driver(w, "hist " + w->total.to_text());
      for (std::size_t s = 0; s < w->per_second.size(); ++s)
        send_to_driver(w, "sec " + std::to_string(s) + " " + w->per_second[s].to_text());
      send_to_driver(w, "end");
      uv_stop(w->loop);
      return;
    }
  }
}

[[noreturn]] void run_worker(Worker &w) {
  w.loop = uv_default_loop();
  uv_poll_init(w.loop, &w.driver_poll, w.from_driver);
  w.driver_poll.data = &w;
  uv_poll_start(&w.driver_poll, UV_READABLE, on_driver);
  if (w.o->mode == "phoenix") {
    // Heartbeats keep the sockets open past the server's idle timeout.
    uv_timer_init(w.loop, &w.heartbeat);
    w.heartbeat.data = &w;
    uv_timer_start(
        &w.heartbeat,
        [](uv_timer_t *t) {
          auto *wk = static_cast<Worker *>(t->data);
          const std::string hb = masked_frame(0x1, "[null,\"hb\",\"phoenix\",\"heartbeat\",{}]");
          for (Conn *c : wk->conns)
            if (c->state == Conn::State::kReady) conn_write(c, hb);
        },
        25'000, 25'000);
  }
  start_connects(&w);
  check_ready(&w);
  uv_run(w.loop, UV_RUN_DEFAULT);
  std::_Exit(0);
}

// ---------------------------------------------------------------------------------------
// Driver

struct WorkerProc {
  pid_t pid = -1;
  int to = -1, from = -1;
  std::string buffer;
};

// Reads one line from a worker (blocking up to timeout_ms); false on timeout/EOF.
bool read_line(WorkerProc &w, std::string &line, int timeout_ms) {
  const uint64_t deadline = kronop::monotonic_ms() + static_cast<uint64_t>(timeout_ms);
  for (;;) {
    auto nl = w.buffer.find('\n');
    if (nl != std::string::npos) {
      line = w.buffer.substr(0, nl);
      w.buffer.erase(0, nl + 1);
      return true;
    }
    const uint64_t now = kronop::monotonic_ms();
    if (now >= deadline) return false;
    pollfd pfd{w.from, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(deadline - now)) <= 0) continue;
    char buf[65536];
    ssize_t n = ::read(w.from, buf, sizeof buf);
    if (n <= 0) return false;
    w.buffer.append(buf, static_cast<std::size_t>(n));
  }
}

// Publishes through libipc or HTTP at o.rate for `seconds`; returns messages published.
struct PublishResult {
  uint64_t published = 0;
  uint64_t failed = 0;
  double behind_max_ms = 0;  // how far the pacing fell behind, at worst
  std::string error;
};

class HttpPublisher {
 public:
  explicit HttpPublisher(const Options &o) : o_(o) {}
  ~HttpPublisher() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool post(const std::string &path, const std::string &body, std::string *err) {
    if (fd_ < 0 && !connect(err)) return false;
    std::string req =
        "POST " + path + " HTTP/1.1\r\nHost: " + o_.host +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    if (!write_all(req)) return reconnect_fail(err, "write failed");
    // The response, parsed with http_parser (keep-alive: one response per request).
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    struct State {
      bool done = false;
    } st;
    p.data = &st;
    http_parser_settings s{};
    s.on_message_complete = [](http_parser *hp) {
      static_cast<State *>(hp->data)->done = true;
      return 0;
    };
    char buf[4096];
    while (!st.done) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return reconnect_fail(err, "connection closed");
      http_parser_execute(&p, &s, buf, static_cast<std::size_t>(n));
      if (p.http_errno != HPE_OK) return reconnect_fail(err, "bad response");
    }
    if (p.status_code >= 300) {
      *err = "publish answered " + std::to_string(p.status_code);
      return false;
    }
    return true;
  }

 private:
  bool connect(std::string *err) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    uv_ip4_addr(o_.host.c_str(), o_.port, &a);
    if (::connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
      *err = std::string("publish connect: ") + std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
  }
  bool write_all(const std::string &s) {
    std::size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  bool reconnect_fail(std::string *err, const char *why) {
    *err = why;
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  const Options &o_;
  int fd_ = -1;
};

PublishResult publish_for(const Options &o, double seconds) {
  PublishResult r;
  if (o.publish == "none" || o.rate <= 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return r;
  }
  kronop_producer *p = nullptr;
  std::unique_ptr<HttpPublisher> http;
  if (o.publish == "ipc") {
    char err[256];
    p = kronop_producer_open(o.shm_name.c_str(), err, sizeof err);
    if (p == nullptr) {
      r.error = std::string("libipc: ") + err;
      return r;
    }
  } else {
    http = std::make_unique<HttpPublisher>(o);
  }
  std::vector<std::string> topics, paths;
  for (uint64_t i = 0; i < o.topics; ++i) {
    topics.push_back(topic_name(o, i));
    paths.push_back(fill(o.publish_url_path, topics.back(), topic_id(o, i)));
  }
  const std::string head = "{\"t\":";
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const uint64_t total = static_cast<uint64_t>(o.rate * seconds);
  std::string body;
  for (uint64_t k = 0; k < total; ++k) {
    const auto due = start + std::chrono::duration_cast<clock::duration>(
                                 std::chrono::duration<double>(double(k) / o.rate));
    const auto now = clock::now();
    if (now < due) {
      std::this_thread::sleep_until(due);
    } else {
      r.behind_max_ms =
          std::max(r.behind_max_ms, std::chrono::duration<double, std::milli>(now - due).count());
    }
    body = head + std::to_string(kronop::realtime_ns()) + ",\"pad\":\"";
    const std::size_t want = o.size > body.size() + 2 ? o.size - body.size() - 2 : 0;
    body.append(want, 'x');
    body += "\"}";
    const std::size_t ti = static_cast<std::size_t>(k % o.topics);
    bool ok;
    if (p != nullptr) {
      int rc = kronop_publish_wait(p, topics[ti].c_str(), "reel_update", body.data(), body.size(),
                                   KRONOP_PRIORITY_NORMAL, 1000);
      ok = rc == KRONOP_OK;
      if (!ok) r.error = kronop_strerror(rc);
    } else {
      ok = http->post(paths[ti], body, &r.error);
    }
    if (ok) {
      ++r.published;
    } else {
      ++r.failed;
    }
  }
  if (p != nullptr) kronop_producer_close(p);
  return r;
}

uint64_t kernel_tcp_mem_bytes() {
  std::ifstream f("/proc/net/sockstat");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    auto at = line.find(" mem ");
    if (at == std::string::npos) return 0;
    return std::strtoull(line.c_str() + at + 5, nullptr, 10) *
           static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  return 0;
}

std::string fmt_us(uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", double(ns) / 1e3);
  return b;
}

void write_svg(const std::string &file, const std::vector<Histogram> &per_second,
               const std::string &title) {
  std::ofstream out(file);
  const double w = 800, h = 400, left = 70, bottom = 40, top = 30, right = 20;
  double ymax = 1;
  for (const auto &s : per_second) ymax = std::max(ymax, double(s.quantile(0.99)) / 1e3);
  ymax *= 1.1;
  const double n = std::max<double>(1, double(per_second.size()));
  auto x = [&](double i) { return left + (w - left - right) * i / n; };
  auto y = [&](double us) { return h - bottom - (h - bottom - top) * us / ymax; };
  out << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
      << "' font-family='sans-serif' font-size='12'>\n"
      << "<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << left << "' y='18'>" << title
      << " - delivery latency per second (us)</text>\n"
      << "<line x1='" << left << "' y1='" << y(0) << "' x2='" << w - right << "' y2='" << y(0)
      << "' stroke='black'/>\n<line x1='" << left << "' y1='" << top << "' x2='" << left << "' y2='"
      << y(0) << "' stroke='black'/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = ymax * i / 4;
    out << "<text x='5' y='" << y(v) + 4 << "'>" << static_cast<uint64_t>(v) << "</text>\n";
  }
  out << "<text x='" << (w / 2) << "' y='" << h - 8 << "'>seconds</text>\n";
  const std::pair<double, const char *> series[] = {
      {0.5, "#1f77b4"}, {0.99, "#d62728"}, {0.999, "#9467bd"}};
  for (auto [q, color] : series) {
    out << "<polyline fill='none' stroke='" << color << "' points='";
    for (std::size_t i = 0; i < per_second.size(); ++i)
      out << x(double(i) + 0.5) << "," << y(double(per_second[i].quantile(q)) / 1e3) << " ";
    out << "'/>\n<text x='" << w - right - 60 << "' y='"
        << top + 15 * (q == 0.5    ? 1
                       : q == 0.99 ? 2
                                   : 3)
        << "' fill='" << color << "'>p"
        << (q == 0.5    ? "50"
            : q == 0.99 ? "99"
                        : "99.9")
        << "</text>\n";
  }
  out << "</svg>\n";
}

// The server's CPU time so far, all of its processes and threads; nullopt without --pid or
// when one cannot be read.
std::optional<uint64_t> server_cpu_ns(const Options &o) {
  if (o.pids.empty()) return std::nullopt;
  uint64_t sum = 0;
  for (int pid : o.pids) {
    auto c = kronop::bench::process_cpu(pid);
    if (!c.ok()) return std::nullopt;
    sum += c.value().sched_ns;
  }
  return sum;
}

// The server's memory: one process's RSS, or the PSS of several summed (their shared memory
// counted once); 0 without --pid.
uint64_t server_memory_bytes(const Options &o) {
  if (o.pids.size() == 1) return kronop::bench::process_rss_bytes(o.pids[0]);
  uint64_t sum = 0;
  for (int pid : o.pids) sum += kronop::bench::process_pss_bytes(pid);
  return sum;
}

int run(const Options &o) {
  // Workers first: fork before any thread exists.
  unsigned nworkers =
      o.workers != 0 ? o.workers : static_cast<unsigned>((o.connections + 14999) / 15000);
  nworkers = std::max(1u, std::min<unsigned>(nworkers, static_cast<unsigned>(o.connections)));
  const uint64_t rss_before = server_memory_bytes(o);
  const uint64_t kmem_before = kernel_tcp_mem_bytes();
  std::vector<WorkerProc> workers(nworkers);
  const uint64_t connect_start_ns = kronop::monotonic_ns();
  uint64_t first = 0;
  for (unsigned i = 0; i < nworkers; ++i) {
    const uint64_t count = o.connections / nworkers + (i < o.connections % nworkers ? 1 : 0);
    int to[2], from[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0) {
      std::perror("pipe");
      return 1;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      for (unsigned j = 0; j < i; ++j) {
        ::close(workers[j].to);
        ::close(workers[j].from);
      }
      ::close(to[1]);
      ::close(from[0]);
      Worker w;
      w.o = &o;
      w.id = i;
      w.first = first;
      w.count = count;
      w.from_driver = to[0];
      w.to_driver = from[1];
      run_worker(w);
    }
    ::close(to[0]);
    ::close(from[1]);
    workers[i] = WorkerProc{pid, to[1], from[0], {}};
    first += count;
  }

  // Ready: every connection connected and joined (or failed).
  uint64_t ready = 0, failed = 0;
  std::string failure;
  const uint64_t connect_deadline_ms = 60'000 + o.connections / 50;
  for (auto &w : workers) {
    std::string line;
    if (!read_line(w, line, static_cast<int>(connect_deadline_ms))) {
      std::fprintf(stderr, "kronop-bench: a worker did not get its connections ready\n");
      for (auto &k : workers) ::kill(k.pid, SIGKILL);
      return 1;
    }
    std::istringstream in(line);
    std::string word;
    uint64_t r = 0, f = 0;
    in >> word >> r >> f;
    std::getline(in, word);
    if (f > 0 && failure.empty()) failure = word;
    ready += r;
    failed += f;
  }
  // Connected, upgraded and (Phoenix) joined: the server's connection setup rate.
  const double connect_secs = double(kronop::monotonic_ns() - connect_start_ns) / 1e9;
  if (!o.json)
    std::fprintf(stderr,
                 "kronop-bench: %" PRIu64 " connections ready in %.2f s, %" PRIu64 " failed%s%s\n",
                 ready, connect_secs, failed, failed ? ":" : "", failure.c_str());

  double hold_rss_per_conn = 0, hold_kmem_per_conn = 0;
  uint64_t rss_held = 0, kmem_held = 0;
  double idle_cpu_pct = 0;
  if (o.hold > 0) {
    // Let the server settle, then measure memory and idle CPU over the hold.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const auto c0 = server_cpu_ns(o);
    const uint64_t t0 = kronop::monotonic_ns();
    std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
    const auto c1 = server_cpu_ns(o);
    const double secs = double(kronop::monotonic_ns() - t0) / 1e9;
    if (c0 && c1) idle_cpu_pct = 100.0 * double(*c1 - *c0) / 1e9 / secs;
    rss_held = server_memory_bytes(o);
    kmem_held = kernel_tcp_mem_bytes();
    if (ready > 0) {
      hold_rss_per_conn = (double(rss_held) - double(rss_before)) / double(ready);
      hold_kmem_per_conn = (double(kmem_held) - double(kmem_before)) / double(ready);
    }
  }

  // Warm-up: publish without recording, then record.
  PublishResult warm;
  if (o.hold == 0 && o.warmup > 0) warm = publish_for(o, o.warmup);
  const auto cpu0 = server_cpu_ns(o);
  for (auto &w : workers) (void)!::write(w.to, "g", 1);
  const uint64_t t0 = kronop::monotonic_ns();
  PublishResult pub;
  if (o.hold == 0) pub = publish_for(o, o.duration);
  const double publish_secs = double(kronop::monotonic_ns() - t0) / 1e9;
  // In-flight messages still count: give them a moment to arrive.
  std::this_thread::sleep_for(std::chrono::milliseconds(o.hold == 0 ? 500 : 0));
  const auto cpu1 = server_cpu_ns(o);
  const double secs = double(kronop::monotonic_ns() - t0) / 1e9;
  for (auto &w : workers) (void)!::write(w.to, "s", 1);

  Histogram total;
  std::vector<Histogram> per_second;
  uint64_t deliveries = 0, unparsed = 0, closed = 0;
  for (auto &w : workers) {
    std::string line;
    while (read_line(w, line, 30'000)) {
      std::istringstream in(line);
      std::string word;
      in >> word;
      if (word == "result") {
        uint64_t d = 0, u = 0, c = 0;
        in >> d >> u >> c;
        deliveries += d;
        unparsed += u;
        closed += c;
      } else if (word == "hist") {
        total.merge(Histogram::from_text(in));
      } else if (word == "sec") {
        std::size_t s = 0;
        in >> s;
        if (s >= per_second.size()) per_second.resize(s + 1);
        per_second[s].merge(Histogram::from_text(in));
      } else if (word == "end") {
        break;
      }
    }
    ::close(w.to);
    ::close(w.from);
    int status = 0;
    ::waitpid(w.pid, &status, 0);
  }

  const uint64_t readers = ready > o.stall ? ready - o.stall : 0;
  const uint64_t expected = pub.published * (readers / std::max<uint64_t>(1, o.topics));
  double cpu_secs = 0;
  if (cpu0 && cpu1) cpu_secs = double(*cpu1 - *cpu0) / 1e9;
  const double rate = double(deliveries) / publish_secs;
  const double cpu_us_per_delivery = deliveries ? cpu_secs * 1e6 / double(deliveries) : 0;
  const double server_cpu_pct = 100.0 * cpu_secs / secs;

  if (o.json) {
    std::printf(
        "{\"label\":\"%s\",\"mode\":\"%s\",\"connections\":%" PRIu64 ",\"failed\":%" PRIu64
        ",\"topics\":%" PRIu64 ",\"rate\":%.0f,\"size\":%zu,\"published\":%" PRIu64
        ",\"publish_failed\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",\"expected\":%" PRIu64
        ",\"deliveries_per_s\":%.0f,\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,\"p999_us\":%s,"
        "\"max_us\":%s,\"server_cpu_s\":%.3f,\"server_cpu_pct\":%.1f,\"server_cpu_us_per_"
        "delivery\":%.3f,\"closed\":%" PRIu64
        ",\"publish_behind_max_ms\":%.1f,"
        "\"connect_s\":%.3f",
        o.label.c_str(), o.mode.c_str(), ready, failed, o.topics, o.rate, o.size, pub.published,
        pub.failed, deliveries, expected, rate, fmt_us(total.quantile(0.5)).c_str(),
        fmt_us(total.quantile(0.9)).c_str(), fmt_us(total.quantile(0.99)).c_str(),
        fmt_us(total.quantile(0.999)).c_str(), fmt_us(total.max).c_str(), cpu_secs, server_cpu_pct,
        cpu_us_per_delivery, closed, pub.behind_max_ms, connect_secs);
    if (o.hold > 0)
      std::printf(",\"rss_bytes\":%" PRIu64
                  ",\"rss_per_conn\":%.0f,\"kernel_tcp_mem_per_conn\":"
                  "%.0f,\"idle_cpu_pct\":%.3f",
                  rss_held, hold_rss_per_conn, hold_kmem_per_conn, idle_cpu_pct);
    std::printf("}\n");
  } else {
    std::printf("%-28s %s\n", "label", o.label.empty() ? "-" : o.label.c_str());
    std::printf("%-28s %" PRIu64 " ready (%" PRIu64 " failed) in %.2f s, %" PRIu64
                " topics, %s mode\n",
                "connections", ready, failed, connect_secs, o.topics, o.mode.c_str());
    if (o.hold > 0) {
      std::printf("%-28s %.0f bytes of server %s (%.1f MiB total)\n", "memory per connection",
                  hold_rss_per_conn, o.pids.size() > 1 ? "PSS" : "RSS",
                  double(rss_held) / 1048576.0);
      std::printf("%-28s %.0f bytes (both ends of each loopback connection)\n",
                  "kernel TCP memory per conn", hold_kmem_per_conn);
      std::printf("%-28s %.3f %% of one CPU over %.0f s\n", "server CPU while idle", idle_cpu_pct,
                  o.hold);
    } else {
      std::printf("%-28s %" PRIu64 " of %" PRIu64 " at %.0f/s, %zu bytes (%" PRIu64
                  " failed; pacing fell behind by up to %.1f ms)\n",
                  "published", pub.published, uint64_t(o.rate * o.duration), o.rate, o.size,
                  pub.failed, pub.behind_max_ms);
      std::printf("%-28s %" PRIu64 " of %" PRIu64 " expected, %.0f/s\n", "deliveries", deliveries,
                  expected, rate);
      std::printf("%-28s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s (us)\n", "delivery latency",
                  fmt_us(total.quantile(0.5)).c_str(), fmt_us(total.quantile(0.9)).c_str(),
                  fmt_us(total.quantile(0.99)).c_str(), fmt_us(total.quantile(0.999)).c_str(),
                  fmt_us(total.max).c_str());
      if (!o.pids.empty())
        std::printf("%-28s %.3f s (%.1f %% of one CPU), %.3f us per delivery\n", "server CPU",
                    cpu_secs, server_cpu_pct, cpu_us_per_delivery);
      if (closed > 0) std::printf("%-28s %" PRIu64 "\n", "closed by the server", closed);
      if (!pub.error.empty()) std::printf("%-28s %s\n", "publish error", pub.error.c_str());
    }
  }
  if (!o.plot.empty()) write_svg(o.plot, per_second, o.label.empty() ? "kronop-bench" : o.label);
  return failed > 0 || pub.failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  CLI::App app{
      "kronop-bench - fan-out load generator: N WebSocket subscribers on T topics, a publisher "
      "at a fixed rate, delivery latency percentiles and the server's CPU and memory"};
  app.add_option("--host", o.host, "Server address (IPv4)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->capture_default_str();
  app.add_option("--more-ports", o.more_ports,
                 "Other servers' ports (a cluster's other nodes): subscribers are spread over "
                 "--port and these, round robin; the publisher publishes to --port's")
      ->delimiter(',');
  app.add_option("--mode", o.mode,
                 "phoenix: Phoenix Channels V2 (join each topic); raw: plain WebSocket per topic "
                 "(kronopd's /ws/reel/ID, or a peer server)")
      ->check(CLI::IsMember({"phoenix", "raw"}))
      ->capture_default_str();
  app.add_option("--path", o.path,
                 "Request path; raw mode fills {topic} and {id} (default /ws/reel/{id}); "
                 "phoenix default /ws/websocket?vsn=2.0.0");
  app.add_option("-n,--connections", o.connections, "Subscriber connections")
      ->capture_default_str();
  app.add_option("-t,--topics", o.topics, "Topics; connection i subscribes to topic i % T")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--topic-prefix", o.topic_prefix, "Topic i is PREFIX + i")->capture_default_str();
  app.add_option("--source-ips", o.source_ips,
                 "Spread connections over 127.0.0.1 .. 127.0.0.N (more than ~60K connections)")
      ->check(CLI::Range(1u, 250u))
      ->capture_default_str();
  app.add_option("--workers", o.workers,
                 "Worker processes holding the connections (0: one per 15,000)")
      ->capture_default_str();
  app.add_option("-r,--rate", o.rate, "Messages published per second, all topics together")
      ->capture_default_str();
  app.add_option("-s,--size", o.size, "Payload bytes per message")->capture_default_str();
  app.add_option("-d,--duration", o.duration, "Seconds of measured publishing")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Seconds of publishing before measuring")
      ->capture_default_str();
  app.add_option("--publish", o.publish,
                 "ipc: through libipc into kronopd's rings; http: POST to a peer server; none")
      ->check(CLI::IsMember({"ipc", "http", "none"}))
      ->capture_default_str();
  app.add_option("--shm-name", o.shm_name, "kronopd's segment (--publish ipc)")
      ->capture_default_str();
  app.add_option("--publish-path", o.publish_url_path,
                 "POST target for --publish http; {topic} and {id} are filled")
      ->capture_default_str();
  app.add_option("--pid", o.pids,
                 "Server process whose CPU time and RSS to report; several (comma-separated or "
                 "repeated) for a server of several processes (nginx's workers): their CPU "
                 "summed, and their proportional set sizes (PSS), which count shared memory once")
      ->delimiter(',');
  app.add_option("--hold", o.hold,
                 "Hold the connections idle this many seconds and report the server's memory "
                 "per connection and idle CPU (no publishing)");
  app.add_option("--connect-parallel", o.connect_parallel, "Connects in flight per worker")
      ->capture_default_str();
  app.add_option("--stall", o.stall,
                 "The first N connections stop reading once joined (slow consumers); the "
                 "figures are those of the others")
      ->capture_default_str();
  app.add_option("--label", o.label, "Name of this run in the output");
  app.add_option("--plot", o.plot, "Write latency over time (p50/p99/p99.9 per second) as SVG");
  app.add_flag("--json", o.json, "One JSON object instead of the table");
  std::string token_secret_file;
  app.add_option("--token-secret-file", token_secret_file,
                 "kronopd's --auth-secret-file: connection i connects as user bench-i");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!token_secret_file.empty()) {
    std::string warning;
    auto secret = kronop::read_secret_file(token_secret_file, &warning);
    if (!secret.ok()) {
      std::fprintf(stderr, "kronop-bench: --token-secret-file: %s\n",
                   secret.error().message.c_str());
      return 2;
    }
    o.token_secret = std::move(secret).value();
  }
  std::signal(SIGPIPE, SIG_IGN);
  return run(o);
}
