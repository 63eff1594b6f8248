//! The accept loop. Each connection is served by hyper; the API can ask for its connection to
//! be dropped (a reset, or a lost answer), which closes the socket with a TCP reset.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::api::ConnectionKill;

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(task) = connection(stream, router.clone()) {
                        connections.spawn(task);
                    }
                }
                // Out of file descriptors and the like: give the system a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = shutdown.changed() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// The task serving one connection.
fn connection(
    stream: TcpStream,
    router: Router,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to set a zero linger when the connection is dropped on
    // purpose, so the peer sees a reset rather than an orderly close.
    let std_stream = stream.into_std().ok()?;
    let handle = std_stream.try_clone().ok()?;
    let stream = TcpStream::from_std(std_stream).ok()?;
    let kill = Arc::new(Notify::new());
    let service_kill = kill.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectionKill(service_kill.clone()));
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    Some(async move {
        let served = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            _ = served => {}
            _ = kill.notified() => {
                let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
            }
        }
        drop(handle);
    })
}
