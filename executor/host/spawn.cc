#include "executor/host/spawn.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <thread>

extern char** environ;

namespace p3d {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(10);

// One child's argv/envp, built before fork (the child may only call
// async-signal-safe functions until exec).
struct ChildImage {
  std::vector<std::string> strings;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

ChildImage MakeImage(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env) {
  ChildImage img;
  img.strings = args;
  for (const auto& [k, v] : env) img.strings.push_back(k + "=" + v);
  for (size_t i = 0; i < img.strings.size(); ++i) {
    (i < args.size() ? img.argv : img.envp).push_back(img.strings[i].data());
  }
  img.argv.push_back(nullptr);
  img.envp.push_back(nullptr);
  return img;
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  }
  return fmt::format("ended with wait status {}", status);
}

bool Failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

// Starts one child; returns its pid, or the exec error it reported.
StatusOr<pid_t> StartChild(int rank, ChildImage& img) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    return Status::IoError(fmt::format("rank {}: pipe: {}", rank, std::strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(pipefd[0]);
    close(pipefd[1]);
    return Status::IoError(fmt::format("rank {}: fork: {}", rank, std::strerror(err)));
  }
  if (pid == 0) {
    close(pipefd[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the spawner already died
    execve(img.argv[0], img.argv.data(), img.envp.data());
    const int err = errno;
    (void)!write(pipefd[1], &err, sizeof(err));
    _exit(127);
  }
  close(pipefd[1]);
  int err = 0;
  ssize_t n;
  do {
    n = read(pipefd[0], &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  close(pipefd[0]);
  if (n == sizeof(err)) {
    waitpid(pid, nullptr, 0);
    return Status::IoError(
        fmt::format("rank {}: cannot execute '{}': {}", rank, img.argv[0], std::strerror(err)));
  }
  return pid;
}

// Stops the children still running (pid > 0): SIGTERM, then SIGKILL after
// the grace period; reaps them all.
void StopAll(std::vector<pid_t>& pids, std::chrono::milliseconds grace) {
  for (pid_t pid : pids) {
    if (pid > 0) kill(pid, SIGTERM);
  }
  const Clock::time_point deadline = Clock::now() + grace;
  bool any = true;
  while (any && Clock::now() < deadline) {
    any = false;
    for (pid_t& pid : pids) {
      if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == pid) pid = -1;
      any |= pid > 0;
    }
    if (any) std::this_thread::sleep_for(kPollInterval);
  }
  for (pid_t& pid : pids) {
    if (pid <= 0) continue;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

}  // namespace

Status SpawnLocalRanks(const SpawnOptions& o) {
  if (o.nproc < 1) return Status::InvalidArgument(fmt::format("rule nproc>=1: nproc={}", o.nproc));
  if (o.argv.empty()) return Status::InvalidArgument("rule argv non-empty: nothing to execute");
  int port = o.master_port;
  if (port == 0) {
    P3D_ASSIGN_OR_RETURN(port, FindFreePort());
  }

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
  }
  env.emplace("NCCL_NVLS_ENABLE", "0");  // only if unset
  for (const auto& [k, v] : o.env) env[k] = v;
  env["WORLD_SIZE"] = env["LOCAL_WORLD_SIZE"] = std::to_string(o.nproc);
  env["MASTER_ADDR"] = "127.0.0.1";
  env["MASTER_PORT"] = std::to_string(port);

  std::vector<ChildImage> images;
  for (int r = 0; r < o.nproc; ++r) {
    env["RANK"] = env["LOCAL_RANK"] = std::to_string(r);
    images.push_back(MakeImage(o.argv, env));
  }
  std::vector<pid_t> pids(o.nproc, -1);
  for (int r = 0; r < o.nproc; ++r) {
    StatusOr<pid_t> pid = StartChild(r, images[r]);
    if (!pid.ok()) {
      StopAll(pids, o.kill_grace);
      return pid.status();
    }
    pids[r] = *pid;
  }

  const Clock::time_point start = Clock::now();
  std::string failure;
  int running = o.nproc;
  while (running > 0 && failure.empty()) {
    for (int r = 0; r < o.nproc && failure.empty(); ++r) {
      int status = 0;
      if (pids[r] <= 0 || waitpid(pids[r], &status, WNOHANG) != pids[r]) continue;
      if (Failed(status))
        failure = fmt::format("rank {} (pid {}) {}", r, pids[r], DescribeExit(status));
      pids[r] = -1;
      --running;
    }
    if (failure.empty() && o.timeout.count() > 0 && Clock::now() - start > o.timeout) {
      failure = fmt::format("timed out after {:.1f} s", o.timeout.count() / 1000.0);
    }
    if (running > 0 && failure.empty()) std::this_thread::sleep_for(kPollInterval);
  }
  if (failure.empty()) return Status::Ok();
  if (running > 0) {
    failure +=
        fmt::format("; stopped the {} rank{} still running", running, running == 1 ? "" : "s");
  }
  StopAll(pids, o.kill_grace);
  return Status::IoError(failure);
}

Status SpawnSelf(int nproc, const std::vector<std::string>& args,
                 std::chrono::milliseconds timeout) {
  SpawnOptions o;
  o.nproc = nproc;
  P3D_ASSIGN_OR_RETURN(std::string self, CurrentExecutable());
  o.argv.push_back(std::move(self));
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.timeout = timeout;
  return SpawnLocalRanks(o);
}

StatusOr<std::string> CurrentExecutable() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n < 0) return Status::IoError(fmt::format("/proc/self/exe: {}", std::strerror(errno)));
  return std::string(buf, static_cast<size_t>(n));
}

StatusOr<int> FindFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(sa);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
  const int err = errno;
  close(fd);
  if (!ok) return Status::IoError(fmt::format("finding a free port: {}", std::strerror(err)));
  return static_cast<int>(ntohs(sa.sin_port));
}

}  // namespace p3d
