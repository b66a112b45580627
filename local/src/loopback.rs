//! The loopback HTTP servers of the local environment — the HTTP API, the Invoke API and the
//! Runtime API of each function process: a listener on `127.0.0.1` served by axum in a task
//! that ends when the server value is dropped, so no server outlives what it serves.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::LocalError;
use crate::runtime::PAYLOAD_LIMIT_BYTES;

/// A running loopback server; dropping it stops serving.
#[derive(Debug)]
pub(crate) struct LoopbackServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    /// Serves `router` on `127.0.0.1:port` (0 picks a free port), with bodies up to Lambda's
    /// payload limit; `purpose` names the server in a failure to listen.
    pub(crate) fn serve(port: u16, purpose: &str, router: Router) -> Result<Self, LocalError> {
        let fail = |source| LocalError::Listen {
            purpose: purpose.to_owned(),
            port,
            source,
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        let router = router.layer(DefaultBodyLimit::max(PAYLOAD_LIMIT_BYTES));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(LoopbackServer { addr, task })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
