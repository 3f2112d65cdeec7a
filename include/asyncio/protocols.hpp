// Protocols (Lib/asyncio/protocols.py): the callback side of a connection.
//
//     class EchoServerProtocol(asyncio.Protocol):
//         def connection_made(self, transport):
//             self.transport = transport
//
//         def data_received(self, data):
//             self.transport.write(data)
//
// is, in C++:
//
//     struct EchoServer : asyncio::Protocol {
//         asyncio::Transport* transport = nullptr;
//
//         void connection_made(asyncio::BaseTransport& t) override {
//             transport = &dynamic_cast<asyncio::Transport&>(t);
//         }
//         void data_received(std::string_view data) override { transport->write(data); }
//     };
//
// A transport calls its protocol from the loop, in order: connection_made
// once, then data_received / eof_received (or buffer_updated, or
// datagram_received) any number of times, then connection_lost once.
// The transport keeps the protocol alive until connection_lost has returned.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <string_view>

#include "asyncio/detail/network_forward.hpp"
#include "asyncio/export.hpp"
#include "asyncio/socket.hpp"

namespace asyncio {

class BaseTransport;

/// asyncio.BaseProtocol: connection events and write flow control.
class ASYNCIO_EXPORT BaseProtocol {
  public:
    virtual ~BaseProtocol() = default;
    /// The connection is ready; `transport` stays valid until connection_lost.
    virtual void connection_made(BaseTransport& transport) { (void)transport; }
    /// The connection is closed: nullptr for a normal end (EOF or close()),
    /// else the error that ended it.
    virtual void connection_lost(std::exception_ptr error) { (void)error; }
    /// The transport's write buffer went over its high-water mark.
    virtual void pause_writing() {}
    /// The transport's write buffer drained below its low-water mark.
    virtual void resume_writing() {}
};

/// asyncio.Protocol: a stream protocol that receives data as it comes.
class ASYNCIO_EXPORT Protocol : public BaseProtocol {
  public:
    /// Some data arrived; `data` is valid only during the call.
    virtual void data_received(std::string_view data) { (void)data; }
    /// The peer will send no more. Return true to keep the connection open
    /// for writing (half-close); false closes the transport.
    virtual bool eof_received() { return false; }
};

/// asyncio.BufferedProtocol: the zero-copy stream protocol. The transport
/// reads straight into the buffer the protocol lends it.
class ASYNCIO_EXPORT BufferedProtocol : public BaseProtocol {
  public:
    /// A buffer to receive into; `sizehint` is the preferred size (0: any).
    /// It must stay valid until buffer_updated (or connection_lost).
    virtual std::span<std::byte> get_buffer(std::size_t sizehint) = 0;
    /// `nbytes` bytes were written at the start of the last buffer.
    virtual void buffer_updated(std::size_t nbytes) = 0;
    virtual bool eof_received() { return false; }
};

/// asyncio.DatagramProtocol.
class ASYNCIO_EXPORT DatagramProtocol : public BaseProtocol {
  public:
    /// A datagram arrived from `address`; `data` is valid only during the call.
    virtual void datagram_received(std::string_view data, const Address& address) {
        (void)data;
        (void)address;
    }
    /// A send or receive failed (ICMP "port unreachable", say); the endpoint stays open.
    virtual void error_received(std::exception_ptr error) { (void)error; }
};

/// asyncio.SubprocessProtocol.
class ASYNCIO_EXPORT SubprocessProtocol : public BaseProtocol {
  public:
    /// The child wrote to its stdout (fd 1) or stderr (fd 2).
    virtual void pipe_data_received(int fd, std::string_view data) {
        (void)fd;
        (void)data;
    }
    /// One of the child's pipes was closed.
    virtual void pipe_connection_lost(int fd, std::exception_ptr error) {
        (void)fd;
        (void)error;
    }
    /// The child exited.
    virtual void process_exited() {}
};

}  // namespace asyncio
