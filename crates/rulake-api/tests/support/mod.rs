//! A real `rulake.v1` server on loopback over an embedded node (one-member
//! meta group, engine, coordinator) in a data directory that can outlive
//! it, for restart tests.

#![allow(dead_code)]

use rulake_api::{router, Api, Limits};
use rulake_coordinator::{Embedded, EmbeddedConfig};
use std::path::Path;
use std::time::Duration;

/// A running server.
pub struct Server {
    pub addr: std::net::SocketAddr,
    /// One client connection to it.
    pub channel: tonic::transport::Channel,
    pub node: Option<Embedded>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

pub fn limits() -> Limits {
    Limits {
        max_batch: 8,
        max_k: 1000,
        request_timeout: Duration::from_secs(30),
        max_message_bytes: 1 << 20,
        ..Limits::default()
    }
}

/// Serve the node in `data_dir` (creating it on first use).
pub async fn serve(data_dir: &Path, limits: Limits) -> Server {
    let node = Embedded::start(EmbeddedConfig {
        cache_bytes: 256 << 20,
        ..EmbeddedConfig::new(data_dir)
    })
    .await
    .expect("embedded node starts");
    let per_connection = rulake_api::per_connection_limit(&limits);
    let api = Api::new(node.coordinator.clone(), limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(per_connection)
            .layer(rulake_api::oversized_as_resource_exhausted())
            .add_routes(router(api))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    let channel = connect(addr).await;
    Server {
        addr,
        channel,
        node: Some(node),
        stop: Some(stop),
        task,
    }
}

/// A new client connection (HTTP/2 multiplexes every call over it).
pub async fn connect(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

impl Server {
    /// Stop serving and release the data directory.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        drop(self.channel);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
    }
}

/// The status code of an answer; every error must carry a message.
pub fn code_of<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(st) => {
            assert!(!st.message().is_empty(), "{st:?}");
            st.code()
        }
    }
}
