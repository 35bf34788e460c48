#include "executor/comm/bounded_abort.h"

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace p3d {
namespace {

// Shared by the waiting caller and every task thread; a detached thread keeps
// it alive after the caller gave up.
struct Completion {
  std::mutex mu;
  std::condition_variable done;
  size_t remaining = 0;  // guarded by mu
};

}  // namespace

bool RunAllWithin(std::vector<std::function<void()>> tasks, std::chrono::milliseconds limit) {
  auto state = std::make_shared<Completion>();
  state->remaining = tasks.size();
  std::vector<std::thread> threads;
  threads.reserve(tasks.size());
  for (std::function<void()>& task : tasks) {
    threads.emplace_back([state, task = std::move(task)] {
      task();
      std::lock_guard<std::mutex> lock(state->mu);
      if (--state->remaining == 0) state->done.notify_all();
    });
  }
  bool all = false;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    all = state->done.wait_for(lock, limit, [&] { return state->remaining == 0; });
  }
  for (std::thread& t : threads) {
    if (all) {
      t.join();
    } else {
      t.detach();
    }
  }
  return all;
}

std::chrono::milliseconds WatchdogBound(std::chrono::milliseconds nccl_timeout,
                                        std::chrono::milliseconds abort_timeout) {
  return nccl_timeout + abort_timeout;
}

std::chrono::milliseconds ProgressDeadlineFor(std::chrono::milliseconds nccl_timeout,
                                              std::chrono::milliseconds abort_timeout) {
  return WatchdogBound(nccl_timeout, abort_timeout) + std::chrono::seconds(20);
}

}  // namespace p3d
