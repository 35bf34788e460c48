#include "executor/comm/collective_call.h"

namespace p3d {

Status IssueCollective(Communicator& c, Collective op, const CollectiveCounts& k, const float* send, float* recv,
                       cudaStream_t stream) {
  switch (op) {
    case Collective::kAllReduce: return c.AllReduce(send, recv, k.full, ncclFloat32, ncclSum, stream);
    case Collective::kReduceScatter: return c.ReduceScatter(send, recv, k.recv, ncclFloat32, ncclSum, stream);
    case Collective::kAllGather: return c.AllGather(send, recv, k.send, ncclFloat32, stream);
    case Collective::kSendRecv: {
      const int next = (c.rank() + 1) % c.size(), prev = (c.rank() + c.size() - 1) % c.size();
      const P2POp ops[] = {{P2POp::Kind::kSend, next, const_cast<float*>(send), k.full, ncclFloat32},
                           {P2POp::Kind::kRecv, prev, recv, k.full, ncclFloat32}};
      return c.SendRecv(ops, stream);
    }
  }
  return Status::Internal("unknown collective");
}

}  // namespace p3d
