// The watchdog's bounded abort (executor/comm/bounded_abort.h) with fake
// aborts: ones that return, and one that blocks like an ncclCommAbort whose
// peer hangs, or whose free waits for another communicator's kernel.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "executor/comm/bounded_abort.h"

namespace p3d {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

TEST(BoundedAbortTest, EveryTaskRunsAndAllReturnInTime) {
  std::atomic<int> ran{0};
  std::vector<std::function<void()>> tasks;
  for (int i = 0; i < 5; ++i) tasks.push_back([&ran] { ran.fetch_add(1); });
  EXPECT_TRUE(RunAllWithin(std::move(tasks), milliseconds(5000)));
  EXPECT_EQ(ran.load(), 5);
}

TEST(BoundedAbortTest, EmptyListReturnsAtOnce) {
  const Clock::time_point start = Clock::now();
  EXPECT_TRUE(RunAllWithin({}, milliseconds(5000)));
  EXPECT_LT(SecondsSince(start), 1.0);
}

// The deadlock of aborting one after another: task 0 ("world") cannot return
// until task 1 ("dp") has started (its abort flag ends the kernel task 0's
// free waits for). Run in sequence this never ends; concurrently it does.
TEST(BoundedAbortTest, TasksRunConcurrently) {
  auto second_started = std::make_shared<std::promise<void>>();
  std::shared_future<void> started = second_started->get_future().share();
  std::vector<std::function<void()>> tasks;
  tasks.push_back([started] { started.wait(); });
  tasks.push_back([second_started] { second_started->set_value(); });
  EXPECT_TRUE(RunAllWithin(std::move(tasks), milliseconds(5000)));
}

// A fake abort that blocks until released (the test releases it at the end,
// so the detached thread finishes): RunAllWithin gives up at the limit, not
// before and not much after, while the other aborts still complete.
TEST(BoundedAbortTest, BlockingTaskIsGivenUpAtTheLimit) {
  auto release = std::make_shared<std::promise<void>>();
  std::shared_future<void> released = release->get_future().share();
  auto others_done = std::make_shared<std::atomic<int>>(0);
  std::vector<std::function<void()>> tasks;
  tasks.push_back([released] { released.wait(); });
  for (int i = 0; i < 3; ++i) tasks.push_back([others_done] { others_done->fetch_add(1); });
  const Clock::time_point start = Clock::now();
  EXPECT_FALSE(RunAllWithin(std::move(tasks), milliseconds(300)));
  const double took = SecondsSince(start);
  EXPECT_GE(took, 0.3);
  EXPECT_LT(took, 2.0);
  EXPECT_EQ(others_done->load(), 3);
  release->set_value();
}

// The progress deadline stays behind the watchdog's worst case, so a hung
// collective is reported by the watchdog (naming it) first.
TEST(BoundedAbortTest, ProgressDeadlineFollowsTheWatchdogBound) {
  using std::chrono::seconds;
  EXPECT_EQ(WatchdogBound(seconds(15), seconds(10)), seconds(25));
  EXPECT_EQ(ProgressDeadlineFor(seconds(15), seconds(10)), seconds(45));
  for (int t : {1, 15, 300})
    for (int a : {0, 10, 60})
      EXPECT_GT(ProgressDeadlineFor(seconds(t), seconds(a)), WatchdogBound(seconds(t), seconds(a)))
          << "timeout " << t << " s, abort " << a << " s";
}

}  // namespace
}  // namespace p3d
