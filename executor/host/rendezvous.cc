#include "executor/host/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace p3d {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[4] = {'P', '3', 'D', 'R'};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kReplyOk = 0, kReplyError = 1, kReplyRetry = 2;
constexpr uint32_t kMaxBlobBytes = 1 << 20;
constexpr auto kRetryDelay = std::chrono::milliseconds(50);

std::string Errno(int err) { return std::strerror(err); }

std::string Seconds(std::chrono::milliseconds ms) {
  return fmt::format("{:.1f} s", ms.count() / 1000.0);
}

// Milliseconds left until `deadline`, clamped to [0, INT_MAX-ish] for poll().
int MsLeft(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Waits until `fd` is ready for `events` or the deadline passes.
Status WaitFd(int fd, short events, Clock::time_point deadline, const char* what) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, MsLeft(deadline));
    if (n > 0) return Status::Ok();
    if (n == 0) return Status::IoError(fmt::format("timed out while {}", what));
    if (errno != EINTR)
      return Status::IoError(fmt::format("poll while {}: {}", what, Errno(errno)));
  }
}

// Moves `len` bytes at p with `io` (send or recv: bytes moved, or -1 and
// errno), waiting for `events` on fd before each call, until all have moved
// or the deadline passes. `call` names io in errors; a recv of 0 bytes is the
// peer closing the connection.
template <typename Byte, typename Io>
Status MoveAll(int fd, Byte* p, size_t len, Clock::time_point deadline, short events,
               const char* call, Io io) {
  const bool receiving = events == POLLIN;
  while (len > 0) {
    P3D_RETURN_IF_ERROR(WaitFd(fd, events, deadline, receiving ? "receiving" : "sending"));
    const ssize_t n = io(fd, p, len);
    if (n == 0 && receiving) return Status::IoError("connection closed by the peer");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Status::IoError(fmt::format("{}: {}", call, Errno(errno)));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SendAll(int fd, const void* data, size_t len, Clock::time_point deadline) {
  return MoveAll(fd, static_cast<const char*>(data), len, deadline, POLLOUT, "send",
                 [](int s, const char* p, size_t n) { return send(s, p, n, MSG_NOSIGNAL); });
}

Status RecvAll(int fd, void* data, size_t len, Clock::time_point deadline) {
  return MoveAll(fd, static_cast<char*>(data), len, deadline, POLLIN, "recv",
                 [](int s, char* p, size_t n) { return recv(s, p, n, 0); });
}

void PutU32(std::string* out, uint32_t v) {
  const uint32_t be = htonl(v);
  out->append(reinterpret_cast<const char*>(&be), 4);
}

uint32_t GetU32(const char* p) {
  uint32_t be;
  std::memcpy(&be, p, 4);
  return ntohl(be);
}

Status SendReply(int fd, uint32_t code, std::string_view body, Clock::time_point deadline) {
  std::string msg;
  PutU32(&msg, code);
  PutU32(&msg, static_cast<uint32_t>(body.size()));
  msg.append(body);
  return SendAll(fd, msg.data(), msg.size(), deadline);
}

std::string MissingRanks(const std::vector<bool>& seen) {
  std::string out;
  int listed = 0;
  for (size_t r = 0; r < seen.size(); ++r) {
    if (seen[r]) continue;
    if (listed == 16) return out + ", ...";
    out += fmt::format("{}{}", listed ? ", " : "", r);
    ++listed;
  }
  return out;
}

// One non-blocking connect attempt to addr:port within the deadline.
StatusOr<int> ConnectOnce(const std::string& addr, int port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int gai = getaddrinfo(addr.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) return Status::IoError(fmt::format("cannot resolve: {}", gai_strerror(gai)));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Status::IoError(fmt::format("socket: {}", Errno(errno)));
  if (connect(fd.get(), res->ai_addr, res->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return Status::IoError(Errno(errno));
    P3D_RETURN_IF_ERROR(WaitFd(fd.get(), POLLOUT, deadline, "connecting"));
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Status::IoError(Errno(err));
  }
  return fd.release();
}

}  // namespace

StatusOr<std::unique_ptr<RendezvousServer>> RendezvousServer::Listen(int port) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return Status::IoError(fmt::format("rendezvous socket: {}", Errno(errno)));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    return Status::IoError(
        fmt::format("rendezvous cannot bind port {} (MASTER_PORT): {}", port, Errno(errno)));
  }
  if (listen(fd.get(), SOMAXCONN) != 0) {
    return Status::IoError(fmt::format("rendezvous listen on port {}: {}", port, Errno(errno)));
  }
  socklen_t len = sizeof(sa);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  return std::unique_ptr<RendezvousServer>(new RendezvousServer(fd.release(), ntohs(sa.sin_port)));
}

RendezvousServer::~RendezvousServer() { close(fd_); }

Status RendezvousServer::Serve(std::string_view blob, int world_size, uint32_t round,
                               std::chrono::milliseconds timeout) {
  if (blob.size() > kMaxBlobBytes) {
    return Status::InvalidArgument(
        fmt::format("rendezvous blob of {} bytes is too large", blob.size()));
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  std::vector<bool> seen(std::max(world_size, 1), false);
  seen[0] = true;
  int missing = world_size - 1;
  while (missing > 0) {
    if (!WaitFd(fd_, POLLIN, deadline, "accepting").ok()) {
      return Status::IoError(fmt::format(
          "rendezvous round {} timed out after {}: rank 0 heard from {} of {} ranks on port {}; "
          "missing ranks: {}",
          round, Seconds(timeout), world_size - missing, world_size, port_, MissingRanks(seen)));
    }
    Fd conn(accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) continue;  // the peer gave up between poll and accept
    SetNonBlocking(conn.get());
    char hello[20];
    // A connection that is not a p3d rank (wrong magic, silent) is dropped.
    if (!RecvAll(conn.get(), hello, sizeof(hello), deadline).ok()) continue;
    if (std::memcmp(hello, kMagic, 4) != 0 || GetU32(hello + 4) != kVersion) continue;
    const uint32_t their_round = GetU32(hello + 8);
    const int rank = static_cast<int>(GetU32(hello + 12));
    const int their_world = static_cast<int>(GetU32(hello + 16));
    if (their_round > round) {  // a fast rank already at the next rendezvous
      (void)SendReply(conn.get(), kReplyRetry, "", deadline);
      continue;
    }
    std::string error;
    if (their_round < round) {
      error = fmt::format("rank {} is at rendezvous round {}, rank 0 at round {}", rank,
                          their_round, round);
    } else if (their_world != world_size) {
      error = fmt::format("rank {} says the world has {} ranks, rank 0 says {}", rank, their_world,
                          world_size);
    } else if (rank <= 0 || rank >= world_size) {
      error = fmt::format("rank {} is outside [1, {})", rank, world_size);
    } else if (seen[rank]) {
      error = fmt::format("rank {} joined round {} twice", rank, round);
    }
    if (!error.empty()) {
      (void)SendReply(conn.get(), kReplyError, error, deadline);  // best effort: we fail anyway
      return Status::InvalidArgument("rendezvous: " + error);
    }
    const Status sent = SendReply(conn.get(), kReplyOk, blob, deadline);
    if (!sent.ok()) {
      return Status::IoError(
          fmt::format("rendezvous: sending to rank {} failed: {}", rank, sent.message()));
    }
    seen[rank] = true;
    --missing;
  }
  return Status::Ok();
}

StatusOr<std::string> RendezvousFetch(const std::string& addr, int port, int rank, int world_size,
                                      uint32_t round, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::string last_error = "no attempt";
  while (true) {
    StatusOr<int> fd_or = ConnectOnce(addr, port, deadline);
    if (fd_or.ok()) {
      Fd fd(*fd_or);
      std::string hello(kMagic, 4);
      for (uint32_t v :
           {kVersion, round, static_cast<uint32_t>(rank), static_cast<uint32_t>(world_size)}) {
        PutU32(&hello, v);
      }
      char header[8];
      Status s = SendAll(fd.get(), hello.data(), hello.size(), deadline);
      if (s.ok()) s = RecvAll(fd.get(), header, sizeof(header), deadline);
      // Until rank 0 answers for this round, a dropped connection or a "retry"
      // is retried: rank 0 may still be serving the previous round.
      if (s.ok() && GetU32(header) != kReplyRetry) {
        const uint32_t len = GetU32(header + 4);
        if (len > kMaxBlobBytes) s = Status::IoError(fmt::format("reply of {} bytes", len));
        std::string body(s.ok() ? len : 0, '\0');
        if (s.ok()) s = RecvAll(fd.get(), body.data(), len, deadline);
        if (!s.ok()) {
          return Status::IoError(fmt::format("rendezvous: rank {} reading from rank 0 at {}:{}: {}",
                                             rank, addr, port, s.message()));
        }
        if (GetU32(header) != kReplyOk) {
          return Status::InvalidArgument(
              fmt::format("rendezvous: rank 0 refused rank {}: {}", rank, body));
        }
        return body;
      }
      last_error = s.ok() ? "rank 0 is still serving an earlier round" : s.message();
    } else {
      last_error = fd_or.status().message();
    }
    if (MsLeft(deadline) == 0) break;
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
        kRetryDelay, std::chrono::milliseconds(MsLeft(deadline))));
  }
  return Status::IoError(
      fmt::format("rendezvous round {} timed out after {}: rank {} could not reach rank 0 at {}:{} "
                  "(MASTER_ADDR:MASTER_PORT; last error: {})",
                  round, Seconds(timeout), rank, addr, port, last_error));
}

StatusOr<std::string> ShareFromRankZero(const LaunchInfo& info, uint32_t round,
                                        std::string_view blob, std::chrono::milliseconds timeout) {
  if (info.world_size == 1) return std::string(blob);
  if (info.rank != 0) {
    return RendezvousFetch(info.master_addr, info.master_port, info.rank, info.world_size, round,
                           timeout);
  }
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<RendezvousServer> server,
                       RendezvousServer::Listen(info.master_port));
  P3D_RETURN_IF_ERROR(server->Serve(blob, info.world_size, round, timeout));
  return std::string(blob);
}

}  // namespace p3d
