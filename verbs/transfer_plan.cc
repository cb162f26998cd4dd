#include "verbs/transfer_plan.h"

#include <algorithm>

namespace zcio::verbs {

Result<size_t> planTransfer(const iobuf::IoBufVector& local, std::span<const RemoteSegment> remote,
                            size_t max_sge, const TransferStep& step, uint64_t max_bytes) {
  const auto& slices = local.slices();
  size_t li = 0;    // local slice
  size_t loff = 0;  // offset in it
  size_t requests = 0;
  std::vector<ibv_sge> sges;
  for (const RemoteSegment& seg : remote) {
    uint64_t roff = 0;
    while (roff < seg.length && li < slices.size()) {
      sges.clear();
      uint64_t covered = 0;
      while (roff + covered < seg.length && li < slices.size() && sges.size() < max_sge &&
             covered < max_bytes) {
        const auto& s = slices[li];
        uint64_t n =
            std::min<uint64_t>({s.length - loff, seg.length - roff - covered, max_bytes - covered});
        sges.push_back(ibv_sge{reinterpret_cast<uint64_t>(s.data() + loff),
                               static_cast<uint32_t>(n), s.buf->registration().lkey});
        covered += n;
        loff += n;
        if (loff == s.length) {
          ++li;
          loff = 0;
        }
      }
      RemoteSegment part{seg.addr + roff, seg.rkey, static_cast<uint32_t>(covered)};
      ZCIO_RETURN_IF_ERROR(step(sges, part));
      ++requests;
      roff += covered;
    }
  }
  return requests;
}

}  // namespace zcio::verbs
