//! gRPC over the frontend process's stdin/stdout.
//!
//! BuildKit starts a gateway frontend with the two ends of its gRPC connection as the process's
//! stdin (server → us) and stdout (us → server), and serves `LLBBridge` over HTTP/2 with prior
//! knowledge. We hand tonic a connector that yields that one duplex stream, exactly once.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tonic::transport::{Channel, Endpoint, Uri};

use super::GatewayError;

/// Largest message we accept from BuildKit (file contents, definitions). BuildKit's own
/// server limits what it receives to gRPC's 4 MiB default.
const MAX_DECODING_MESSAGE_SIZE: usize = 256 << 20;

/// Opens the channel to BuildKit over stdin/stdout. Must run inside a Tokio runtime with I/O.
pub(crate) async fn connect_stdio() -> Result<Channel, GatewayError> {
    let stream = StdioStream::open()?;
    let slot = Arc::new(Mutex::new(Some(stream)));
    let connector = tower::service_fn(move |_: Uri| {
        let stream = slot.lock().map(|mut s| s.take()).ok().flatten();
        async move {
            stream.map(TokioIo::new).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the stdin/stdout connection to BuildKit is gone and cannot be reopened",
                )
            })
        }
    });
    // The authority is never resolved: the connector ignores the URI.
    Endpoint::from_static("http://buildkit.stdio")
        .connect_with_connector(connector)
        .await
        .map_err(GatewayError::Connect)
}

pub(crate) fn max_decoding_message_size() -> usize {
    MAX_DECODING_MESSAGE_SIZE
}

/// stdin and stdout as one duplex byte stream.
struct StdioStream {
    read: Pin<Box<dyn AsyncRead + Send>>,
    write: Pin<Box<dyn AsyncWrite + Send>>,
}

impl StdioStream {
    /// Pipes (what BuildKit gives us) are read and written without blocking threads, so the
    /// runtime can shut down while a read is pending. Anything else (a terminal, a file) falls
    /// back to Tokio's thread-backed stdio.
    fn open() -> Result<Self, GatewayError> {
        let dup = |fd: BorrowedFd<'_>, what| {
            fd.try_clone_to_owned()
                .map_err(|source| GatewayError::Stdio { what, source })
        };
        let stdin = dup(io::stdin().as_fd(), "stdin")?;
        let stdout = dup(io::stdout().as_fd(), "stdout")?;
        if is_fifo(&stdin) && is_fifo(&stdout) {
            let rx =
                pipe::Receiver::from_owned_fd(stdin).map_err(|source| GatewayError::Stdio {
                    what: "stdin",
                    source,
                })?;
            let tx = pipe::Sender::from_owned_fd(stdout).map_err(|source| GatewayError::Stdio {
                what: "stdout",
                source,
            })?;
            Ok(StdioStream {
                read: Box::pin(rx),
                write: Box::pin(tx),
            })
        } else {
            Ok(StdioStream {
                read: Box::pin(tokio::io::stdin()),
                write: Box::pin(tokio::io::stdout()),
            })
        }
    }
}

fn is_fifo(fd: &OwnedFd) -> bool {
    fd.try_clone()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.file_type().is_fifo())
}

impl AsyncRead for StdioStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.read.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for StdioStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.as_mut().poll_shutdown(cx)
    }
}
