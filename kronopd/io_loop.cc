// An I/O thread; see io_loop.h.
#include "io_loop.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>

#include <unistd.h>

#include "log.h"

namespace kronop::daemon {

IoLoop::IoLoop(uint32_t index, const ServerOptions &options, Dispatcher *dispatcher)
    : index_(index),
      dispatcher_(dispatcher),
      server_(
          &loop_, options,
          [this](const std::string &topic, bool interested) {
            if (dispatcher_ != nullptr) dispatcher_->report_interest(index_, topic, interested);
          },
          [this](const std::string &topic, uint64_t id) {
            if (dispatcher_ != nullptr) {
              dispatcher_->request_sync(index_, topic, id);
            } else {
              server_.on_sync(SyncReply{id, 0, 0, 0});  // no dispatcher: an empty stream
            }
          },
          [queue = commands_](std::function<void()> command) {
            return queue->post(std::move(command));
          }) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &inbox_async_, on_inbox);
  inbox_async_.data = this;
  uv_async_init(&loop_, &command_async_, on_command);
  command_async_.data = this;
  commands_->wake = &command_async_;
  inbox_.wake = &inbox_async_;
}

IoLoop::~IoLoop() {
  close(1001, "server stopping", 0);
  join();
  // A loop that never ran still has its handles: close them so the loop can be closed.
  if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&inbox_async_))) {
    uv_close(reinterpret_cast<uv_handle_t *>(&inbox_async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&command_async_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
  }
  if (int rc = uv_loop_close(&loop_); rc != 0) {
    KLOG_WARN("event=loop_handles_open loop=%u error=%s", index_, log::q(uv_strerror(rc)).c_str());
  }
  inbox_.batches.take_all();  // batches that arrived after the loop ended
}

void IoLoop::start() {
  server_.start();
  thread_ = std::thread([this] {
    // "kronop-io-N" in top -H, gdb and /proc/PID/task/*/comm.
    ::pthread_setname_np(::pthread_self(), ("kronop-io-" + std::to_string(index_)).c_str());
    uv_run(&loop_, UV_RUN_DEFAULT);
    // The loop ends when no referenced handle is left: the connections are gone, but the
    // unreferenced ones (the linger timer, the sweep and flush handles) may still be open.
    // Close them so that the loop can be closed and frees what it holds.
    uv_walk(
        &loop_,
        [](uv_handle_t *h, void *) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
}

void IoLoop::join() {
  if (thread_.joinable()) thread_.join();
}

bool IoLoop::CommandQueue::post(std::function<void()> command) {
  // uv_async_send under the lock: close() sets `closed` under it before the loop closes the
  // handle, so a post that got in never wakes a closed handle.
  std::lock_guard<std::mutex> lock(mutex);
  if (closed) return false;
  commands.push_back(std::move(command));
  uv_async_send(wake);
  return true;
}

void IoLoop::adopt(int fd, const PeerLimit::Key &peer) {
  if (!post([this, fd, peer] { server_.adopt(fd, peer); })) ::close(fd);
}

void IoLoop::deliver(std::vector<MessagePtr> messages) {
  post([this, messages = std::move(messages)] { server_.fan_out(messages); });
}

void IoLoop::begin_drain(std::string notice_json) {
  post([this, notice = std::move(notice_json)] { server_.begin_drain(notice); });
}

void IoLoop::close_batch(unsigned done, unsigned batches, uint16_t code, std::string reason) {
  post([this, done, batches, code, reason = std::move(reason)] {
    server_.close_batch(done, batches, code, reason);
  });
}

void IoLoop::close(uint16_t code, std::string reason, uint64_t linger_ms) {
  std::lock_guard<std::mutex> lock(commands_->mutex);
  if (commands_->closed) return;
  // The last command: after it the loop closes the async handle, so nothing may be
  // posted any more.
  commands_->commands.push_back(
      [this, code, reason = std::move(reason), linger_ms] { shut_down(code, reason, linger_ms); });
  commands_->closed = true;
  uv_async_send(&command_async_);
}

void IoLoop::shut_down(uint16_t code, const std::string &reason, uint64_t linger_ms) {
  server_.close(code, reason);
  // Clients get `linger_ms` to take their close frames; then the rest is cut. The timer does
  // not keep the loop alive: when every connection is gone sooner, the thread ends sooner.
  uv_timer_init(&loop_, &linger_);
  linger_.data = this;
  uv_timer_start(
      &linger_,
      [](uv_timer_t *t) {
        auto *self = static_cast<IoLoop *>(t->data);
        self->server_.force_close();
        uv_close(reinterpret_cast<uv_handle_t *>(t), nullptr);
      },
      linger_ms, 0);
  uv_unref(reinterpret_cast<uv_handle_t *>(&linger_));
  uv_close(reinterpret_cast<uv_handle_t *>(&inbox_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t *>(&command_async_), nullptr);
}

void IoLoop::on_inbox(uv_async_t *handle) {
  auto *self = static_cast<IoLoop *>(handle->data);
  const auto list = self->inbox_.batches.take_all();
  for (MessageBatch *b = list.head(); b != nullptr; b = b->next) {
    self->server_.fan_out(b->messages);
    for (const std::string &topic : b->resets) self->server_.reset_stream(topic);
    for (const SyncReply &r : b->syncs) self->server_.on_sync(r);
  }
}

void IoLoop::on_command(uv_async_t *handle) {
  auto *self = static_cast<IoLoop *>(handle->data);
  std::vector<std::function<void()>> commands;
  {
    std::lock_guard<std::mutex> lock(self->commands_->mutex);
    commands.swap(self->commands_->commands);
  }
  for (auto &c : commands) c();
}

std::vector<std::unique_ptr<IoLoop>> make_io_loops(unsigned count, const ServerOptions &options) {
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  count = std::min<unsigned>(count, Dispatcher::kMaxLoops);
  std::vector<std::unique_ptr<IoLoop>> loops;
  for (unsigned i = 0; i < count; ++i)
    loops.push_back(std::make_unique<IoLoop>(i, options, nullptr));
  return loops;
}

bool LoopProbes::all_answered() {
  bool alive = true;
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    auto &p = probes_[i];
    if (p && p->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      alive = false;
      continue;
    }
    p = loops_[i]->ask([] { return true; });
  }
  return alive;
}

}  // namespace kronop::daemon
