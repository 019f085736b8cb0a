//! The listener: connections accepted up to `server.max_connections`, each living under
//! the header-read and idle timeouts, and closed gracefully at shutdown.
//!
//! `axum::serve` has neither a connection cap nor timeouts: a client that opens connections
//! and sends half a request line holds a file descriptor and a task for as long as it likes,
//! and enough of them keep real hook posts out. Here each connection is in one of three
//! phases, and the first two are timed:
//! - idle (just opened, or kept alive after an answer): closed after `idle_timeout`;
//! - reading a request's head (its first byte arrived): cut after `header_read_timeout`;
//! - busy (the request is being handled): the handler and its body read are timed by the
//!   routes (`body_read_timeout`), not here.
//!
//! At the cap, the next connection waits in the kernel's backlog, not in memory here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How connections are bounded (`[server]` keys).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// From a request's first byte to its complete head.
    pub header_read_timeout: Duration,
    /// A connection without a request in progress for this long is closed.
    pub idle_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in
/// progress finish and closes every connection.
///
/// # Errors
/// Never for a connection's own failure (it is logged at debug and closed); the listener's
/// errors are retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: the cap is above the process's limit.
                    tracing::error!(error = %e, "cannot accept a connection; is server.max_connections above the open-file limit?");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            serve_connection(stream, peer, router, limits, stopping).await;
            drop(permit);
        });
        // Reap finished connections as we go, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

const IDLE: u8 = 0;
const READING_HEAD: u8 = 1;
const BUSY: u8 = 2;

/// A connection's phase and when it began, shared by its reader, its service and its watch.
struct Phase {
    phase: AtomicU8,
    /// Milliseconds since `origin`.
    since: AtomicU64,
    origin: Instant,
}

impl Phase {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(IDLE),
            since: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn set(&self, phase: u8) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.since.store(now, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn get(&self) -> (u8, Instant) {
        let since = Duration::from_millis(self.since.load(Ordering::Relaxed));
        (self.phase.load(Ordering::Relaxed), self.origin + since)
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let phase = Arc::new(Phase::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: phase.clone(),
    });
    let service = {
        let phase = phase.clone();
        let router = TowerToHyperService::new(router);
        hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            phase.set(BUSY);
            // The client's address, for handlers that limit per client (the login form).
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let response = hyper::service::Service::call(&router, request);
            let phase = phase.clone();
            async move {
                let response = response.await;
                phase.set(IDLE);
                response
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The head is timed by the watch below, from its first byte rather than from when
        // hyper starts waiting for it, so a kept-alive connection may idle longer.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let (now_in, since) = phase.get();
        let deadline = match now_in {
            IDLE => since + limits.idle_timeout,
            READING_HEAD => since + limits.header_read_timeout,
            _ => Instant::now() + limits.header_read_timeout.min(limits.idle_timeout),
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                return;
            }
            _ = stopping.wait_for(|s| *s), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(deadline) => {
                let (phase_now, since_now) = phase.get();
                if phase_now != now_in || since_now != since {
                    continue;
                }
                match now_in {
                    IDLE if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    IDLE => return,
                    READING_HEAD => {
                        tracing::debug!("request head not received in time; connection closed");
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The connection's socket, noting when a request's first byte arrives on an idle
/// connection.
struct Watched {
    inner: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let phase = &self.phase;
            if phase.phase.load(Ordering::Relaxed) == IDLE {
                phase.set(READING_HEAD);
            }
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
