// An I/O thread: one libuv loop, its ClientServer (the connections it owns), and its inbox
// from the ingest thread. Other threads talk to it only through adopt(), deliver(), ask()
// and close(), which post to the loop, and counters(), which reads atomics.
//
// The command queue is shared (std::shared_ptr) with whoever may post after this IoLoop is
// gone: the durable log's commit waiters (joins.h) hold it, and once close() has been called
// it refuses every post, so a late waiter finds a closed queue, never a freed loop.
#pragma once

#include <uv.h>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "fanout.h"
#include "server.h"

namespace kronop::daemon {

class IoLoop {
 public:
  IoLoop(uint32_t index, const ServerOptions &options, Dispatcher *dispatcher);
  ~IoLoop();  // joins the thread
  IoLoop(const IoLoop &) = delete;
  IoLoop &operator=(const IoLoop &) = delete;

  // The inbox the Dispatcher delivers this loop's batches to (valid from construction).
  LoopInbox *inbox() { return &inbox_; }
  void set_dispatcher(Dispatcher *d) { dispatcher_ = d; }
  // Before start(): the operators' endpoints (see ServerOptions::system).
  void set_system_api(SystemApi *system) { server_.set_system_api(system); }

  void start();
  // Any thread: hands an accepted socket to this loop (closed if the loop is closing).
  void adopt(int fd, const PeerLimit::Key &peer);
  // Any thread: writes messages the daemon made itself (presence diffs) to this loop's
  // subscribers of their topics.
  void deliver(std::vector<MessagePtr> messages);
  // Any thread: the drain (SIGTERM) on this loop's connections, see
  // ClientServer::begin_drain and close_batch.
  void begin_drain(std::string notice_json);
  void close_batch(unsigned done, unsigned batches, uint16_t code, std::string reason);
  // Any thread: close every connection with `code`, cut what is left after `linger_ms`,
  // then end the thread. Idempotent.
  void close(uint16_t code, std::string reason, uint64_t linger_ms = 2000);
  void join();

  ServerCounters counters() const { return server_.counters(); }
  const LatencyHistogram &delivery_latency() const { return server_.delivery_latency(); }
  uint32_t index() const { return index_; }

  // Any thread but this loop's own: runs fn() on the loop's thread, after what was posted
  // before it, and hands its result to the future; nullopt once close() was called (fn never
  // runs). A caller that stops waiting (future::wait_for with a timeout) loses nothing but
  // the answer: fn owns what it uses and the promise is shared with the command.
  template <typename Fn>
  std::optional<std::future<std::invoke_result_t<Fn &>>> ask(Fn fn) {
    using T = std::invoke_result_t<Fn &>;
    auto promise = std::make_shared<std::promise<T>>();
    std::future<T> answer = promise->get_future();
    if (!post([promise, fn = std::move(fn)]() mutable { promise->set_value(fn()); })) {
      return std::nullopt;
    }
    return answer;
  }
  // Any thread: ClientServer::reconfigure on the loop's thread; false once closing.
  bool reconfigure(ServerOptions options) {
    return post([this, options = std::move(options)] { server_.reconfigure(options); });
  }
  // Any thread: this loop's connections (ClientServer::describe_connections), handed to
  // `deliver` on the loop's thread; false once closing (deliver is never called).
  bool describe_connections(
      std::string topic, std::function<void(std::vector<ClientServer::ConnectionInfo>)> deliver) {
    return post([this, topic = std::move(topic), deliver = std::move(deliver)] {
      deliver(server_.describe_connections(topic));
    });
  }

 private:
  static void on_inbox(uv_async_t *handle);
  static void on_command(uv_async_t *handle);
  // Queues `command` for the loop's thread; false once close() was called.
  bool post(std::function<void()> command) { return commands_->post(std::move(command)); }
  struct CommandQueue {
    std::mutex mutex;
    std::vector<std::function<void()>> commands;  // guarded by mutex
    bool closed = false;                          // guarded by mutex: no more posts
    uv_async_t *wake = nullptr;                   // valid while !closed
    bool post(std::function<void()> command);
  };
  void shut_down(uint16_t code, const std::string &reason, uint64_t linger_ms);

  uint32_t index_;
  Dispatcher *dispatcher_;
  uv_loop_t loop_{};
  // Before server_, which hands it to its joins.
  std::shared_ptr<CommandQueue> commands_ = std::make_shared<CommandQueue>();
  ClientServer server_;
  LoopInbox inbox_;
  uv_async_t inbox_async_{};
  uv_async_t command_async_{};
  uv_timer_t linger_{};
  std::thread thread_;
};

// The I/O loops of the daemon, `count` of them (0: one per CPU), each running `options`.
std::vector<std::unique_ptr<IoLoop>> make_io_loops(unsigned count, const ServerOptions &options);

// The systemd watchdog's view of the I/O loops: at each tick every loop is asked a trivial
// question, and a loop that has not answered the previous tick's is stuck (a loop's
// callbacks never block, so an answer takes one loop turn).
class LoopProbes {
 public:
  explicit LoopProbes(std::vector<std::unique_ptr<IoLoop>> &loops)
      : loops_(loops), probes_(loops.size()) {}
  // Main thread, once a tick: whether every loop answered, and the next probes sent.
  bool all_answered();

 private:
  std::vector<std::unique_ptr<IoLoop>> &loops_;
  std::vector<std::optional<std::future<bool>>> probes_;
};

}  // namespace kronop::daemon
