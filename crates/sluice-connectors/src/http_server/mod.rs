//! Serving HTTP/1.1 for the collector and the operating API: plain TCP or
//! TLS ([`tls`]), with limits that keep one slow or hostile client from
//! holding the server.
//!
//! Invariants:
//! * every connection runs in its own task: a client that stalls, sends
//!   garbage or fails its TLS handshake affects only its own connection;
//! * a TLS handshake must finish within [`Limits::handshake`] and request
//!   headers must arrive within [`Limits::headers`] (hyper closes the
//!   connection otherwise); bodies are read by the handlers under their own
//!   timeout;
//! * at most [`Limits::max_connections`] connections are served at once;
//!   further clients wait in the listen backlog;
//! * when `stop` resolves, no new connection is taken and the open ones
//!   finish their current request before [`serve`] returns.

mod tls;

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinSet,
};

pub use tls::{ReloadingTls, TlsFiles};

/// Time and connection limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake: Duration,
    pub headers: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake: Duration::from_secs(10),
            headers: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets open
/// connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ReloadingTls>>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let (stopping_tx, stopping) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        // Handlers that need the client's address read it as `ConnectInfo`.
        let app = app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let tls = tls.clone();
        let stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection(stream, app, limits, stopping).await,
                Some(tls) => match tokio::time::timeout(limits.handshake, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, app, limits, stopping).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection<I>(io: I, app: Router, limits: Limits, mut stopping: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { drop(stopping.wait_for(|s| *s).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
