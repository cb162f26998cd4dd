// The conformance suite on TCP: a real TcpClientTransport over loopback
// against a FrameSocket that plays the server frame by frame.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tcp/client_transport.h"
#include "test/conformance/transport_conformance.h"
#include "test/support/scripted_peer.h"

namespace zcio::test {
namespace {

class TcpPeer final : public ConformancePeer {
 public:
  ~TcpPeer() override {
    if (transport_) transport_->shutdown();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  Result<void> connect() override {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return makeError(errno, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 1) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return makeError(errno, std::string("listen: ") + std::strerror(errno));
    // connect() returns once the handshake is done; the backlog holds it.
    auto transport = tcp::TcpClientTransport::connect("127.0.0.1", ntohs(addr.sin_port));
    if (!transport) return transport.error();
    transport_ = std::move(*transport);
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return makeError(errno, "accept");
    server_ = FrameSocket(fd);
    return okResult();
  }

  rpc::Transport& transport() override { return *transport_; }

  Result<PeerCall> nextCall() override {
    auto call = server_.readCall();
    if (!call) return makeError(EIO, "no call arrived");
    return PeerCall{call->xid, call->call};
  }

  Result<void> reply(uint64_t xid, const rpc::pb::Reply& header,
                     std::string_view payload) override {
    if (!server_.sendReply(xid, header, payload)) return makeError(EPIPE, "send reply");
    return okResult();
  }

  Result<void> startPayload(const PeerCall& call, std::string_view first, uint64_t total) override {
    std::string header;
    readReplyHeader(total).SerializeToString(&header);
    rpc::Preamble p;
    p.type = rpc::FrameType::kReply;
    p.header_length = static_cast<uint32_t>(header.size());
    p.xid = call.xid;
    p.payload_length = total;
    if (!server_.sendPreamble(p) || !server_.sendRaw(header) || !server_.sendRaw(first))
      return makeError(EPIPE, "send the first part of the reply");
    return okResult();
  }

  void finishPayload(const PeerCall&, std::string_view rest) override { server_.sendRaw(rest); }

  // The sweep's period (20 ms) plus scheduling on a loaded 2-core host.
  std::chrono::milliseconds grace() const override { return 1000ms; }

 private:
  int listen_fd_ = -1;
  FrameSocket server_;
  std::unique_ptr<tcp::TcpClientTransport> transport_;
};

INSTANTIATE_TEST_SUITE_P(Tcp, TransportConformance,
                         ::testing::Values(TransportUnderTest{
                             "tcp", [] { return std::string(); },
                             []() -> std::unique_ptr<ConformancePeer> {
                               return std::make_unique<TcpPeer>();
                             }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace zcio::test
