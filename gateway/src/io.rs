//! Streams that are one of several kinds (plain TCP or TLS, a local socket
//! or a tunnel stream) behave as one `AsyncRead + AsyncWrite`, so that the
//! copy loops and HTTP servers above them do not care which.

/// Implements `AsyncRead` and `AsyncWrite` for an enum whose every variant
/// holds one `AsyncRead + AsyncWrite + Unpin` value, by delegation.
macro_rules! delegate_io {
    ($ty:ident { $($variant:ident),+ $(,)? }) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => std::pin::Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$variant(s) => std::pin::Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => std::pin::Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => std::pin::Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

pub(crate) use delegate_io;
