// The client port's listening socket. It lives on the main loop and hands each accepted
// socket to the next I/O loop in turn (round robin), so every loop gets an equal share of
// connections and there is exactly one listener per daemon: a second kronopd on the same
// port fails to bind instead of silently sharing the port, as SO_REUSEPORT would allow.
#pragma once

#include <sys/socket.h>
#include <uv.h>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kronop/result.h"

namespace kronop::daemon {

// Connections per source address (--max-connections-per-ip), shared by the acceptor, which
// admits, and the I/O loops, which release when a connection ends. Touched once per
// connection, never per message; with no limit it holds nothing and takes no lock.
// "203.0.113.7:51234" or "[2001:db8::1]:51234".
std::string address_name(const sockaddr_storage &addr);

class PeerLimit {
 public:
  using Key = std::array<uint8_t, 16>;  // the IPv6 address, or an IPv4 one mapped into it
  explicit PeerLimit(uint32_t max_per_address) : max_(max_per_address) {}
  bool enabled() const { return max_ != 0; }
  static Key key_of(const sockaddr_storage &addr);
  // False (and counted) when the address already has the maximum.
  bool admit(const Key &k);
  void release(const Key &k);
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  struct KeyHash {
    std::size_t operator()(const Key &k) const {
      return std::hash<std::string_view>{}(
          std::string_view(reinterpret_cast<const char *>(k.data()), k.size()));
    }
  };
  uint32_t max_;
  std::mutex mutex_;
  std::unordered_map<Key, uint32_t, KeyHash> counts_;  // guarded by mutex_
  std::atomic<uint64_t> refused_{0};
};

class Acceptor {
 public:
  using HandOff = std::function<void(int fd, const PeerLimit::Key &peer)>;
  // `limit` may be null: no per-address limit.
  Acceptor(uv_loop_t *loop, std::string bind, int port, HandOff hand_off,
           PeerLimit *limit = nullptr);
  ~Acceptor();
  Acceptor(const Acceptor &) = delete;
  Acceptor &operator=(const Acceptor &) = delete;

  // Binds and listens on the address given at construction; or, with `inherited_fd` (a
  // listening socket from socket activation), serves that one, whatever its address.
  Result<bool> listen(int inherited_fd = -1);
  // Stops accepting and closes the listening socket.
  void close();
  // The bound port (with --port 0, the kernel's choice).
  int port() const { return port_; }
  // "127.0.0.1:4000", "[::1]:4000": where it listens.
  const std::string &address() const { return address_; }
  uint64_t accept_errors() const { return accept_errors_; }

 private:
  Result<bool> start_polling();
  static void on_readable(uv_poll_t *poll, int status, int events);
  void accept_some();

  uv_loop_t *loop_;
  std::string bind_;
  int requested_port_;
  int port_ = 0;
  std::string address_;
  HandOff hand_off_;
  PeerLimit *limit_;
  int fd_ = -1;
  uv_poll_t poll_{};
  uv_timer_t backoff_{};
  bool open_ = false;
  uint64_t accept_errors_ = 0;
  uint64_t last_warning_ms_ = 0;
};

}  // namespace kronop::daemon
