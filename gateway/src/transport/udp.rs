//! The tunnel's UDP socket: quinn's own socket code (`quinn::udp`, with GSO,
//! GRO and ECN) under a tokio registration tuned for one request in flight.
//!
//! quinn's stock tokio socket costs every gateway two extra kernel trips per
//! round trip, measured with `strace -c` on `causeway-bench`:
//!
//! - it registers the socket for writability too, and Linux signals
//!   `EPOLLOUT` on a UDP socket each time the peer reads one of our
//!   datagrams. Every datagram sent woke the sending gateway once for
//!   nothing, usually just before the answer arrived;
//! - it reads until the kernel says `EAGAIN`, one `recvmmsg` more per wakeup.
//!
//! Here the socket is registered for reading only. A batch shorter than the
//! slots offered means the queue was empty, so readiness is cleared without
//! asking again (tokio does the same for TCP reads); a datagram arriving
//! after the read raises a new edge that the reactor reports. Writability is
//! watched only after a send was refused, through a duplicate descriptor
//! registered for writing until the socket takes datagrams again.
//!
//! The socket buffers are raised to [`SOCKET_BUFFER`] (the kernel caps them
//! at `net.core.{r,w}mem_max`) so that a burst of a bulk stream is not
//! dropped while the event loop is busy elsewhere.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Send and receive buffer size asked of the kernel.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// quinn on tokio, with [`TunnelSocket`] for every UDP socket it wraps.
#[derive(Debug)]
pub struct GatewayRuntime;

impl Runtime for GatewayRuntime {
    fn new_timer(&self, t: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(t)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(TunnelSocket::new(socket)?))
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }
}

/// A quinn endpoint on `socket`, driven by [`GatewayRuntime`].
pub fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(GatewayRuntime),
    )
}

/// The UDP socket under a tunnel endpoint.
pub struct TunnelSocket {
    io: AsyncFd<std::net::UdpSocket>,
    state: UdpSocketState,
    /// The last send was refused for want of buffer space.
    blocked: AtomicBool,
}

impl fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSocket")
            .field("local", &self.io.get_ref().local_addr().ok())
            .field("blocked", &self.blocked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TunnelSocket {
    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        // Registering needs the reactor of a running tokio runtime.
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        // Best effort: a smaller buffer only costs throughput.
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        Ok(Self {
            io: register(socket, Interest::READABLE)?,
            state,
            blocked: AtomicBool::new(false),
        })
    }
}

impl AsyncUdpSocket for TunnelSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            watch: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let r = self.state.send(self.io.get_ref().into(), transmit);
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.blocked.store(true, Ordering::Release);
        }
        r
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let slots = bufs.len().min(meta.len()).min(quinn::udp::BATCH_SIZE);
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match self.state.recv(self.io.get_ref().into(), bufs, meta) {
                Ok(n) => {
                    if n < slots {
                        // The kernel had no more: the next datagram is a new
                        // edge, so nothing is missed by not asking again.
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

/// Registers `fd` with the reactor for `interest` only.
///
/// tokio deprecated its safe constructors in favour of an `unsafe` one
/// because a type's `AsRawFd` could name another descriptor over time. The
/// two types registered here, `std::net::UdpSocket` and `OwnedFd`, own
/// exactly one descriptor for their whole life, so the safe call is sound
/// for them.
#[allow(deprecated, reason = "sound for descriptors owned for life; see above")]
fn register<T: std::os::fd::AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    AsyncFd::with_interest(fd, interest)
}

/// One connection's view of whether the socket takes datagrams. quinn asks
/// before every send, so the common answer costs nothing.
#[derive(Debug)]
struct Writable {
    socket: Arc<TunnelSocket>,
    /// A duplicate of the socket registered for writability, only while a
    /// send is refused.
    watch: Option<AsyncFd<OwnedFd>>,
}

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.socket.blocked.load(Ordering::Acquire) {
            this.watch = None;
            return Poll::Ready(Ok(()));
        }
        let watch = match &mut this.watch {
            Some(w) => w,
            None => {
                let fd = this.socket.io.get_ref().as_fd().try_clone_to_owned()?;
                this.watch.insert(register(fd, Interest::WRITABLE)?)
            }
        };
        // Registration reports writability at once if there is room, and
        // otherwise when the kernel frees enough of the send buffer.
        drop(ready!(watch.poll_write_ready(cx))?);
        this.watch = None;
        this.socket.blocked.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }
}
