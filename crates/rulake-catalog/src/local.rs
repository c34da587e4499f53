//! A catalog member serving its own process, with no socket at all.
//!
//! Why: `rulake serve` runs a one-member meta group next to its public
//! API. Served on a TCP port, the catalog (source options included) could
//! be read and written by any local process, around the API's
//! authentication. Served over in-memory pipes instead, only the process
//! that holds the [`LocalLink`] can reach it: the same gRPC services and
//! client code as a cluster, no port to protect.
//!
//! Each connection the client's channel opens is one `tokio::io::duplex`
//! pair: one end goes to the channel, the other to the member's server
//! through [`LocalLink::incoming`].

use crate::network::Transport;
use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

/// The name a local member goes by where an address is expected (its
/// membership entry, status replies, error messages).
pub const LOCAL_ADDR: &str = "in-process";

/// Bytes buffered in each direction of one in-memory connection.
const PIPE_BYTES: usize = 1 << 20;

/// The two ends of a socketless link to a catalog member: a [`Transport`]
/// for clients, and the connections its server accepts.
pub struct LocalLink {
    transport: Transport,
    accepted: mpsc::UnboundedReceiver<DuplexStream>,
}

impl LocalLink {
    /// A new link; nothing connects until a channel from
    /// [`LocalLink::transport`] is used.
    pub fn new() -> Self {
        let (tx, accepted) = mpsc::unbounded_channel::<DuplexStream>();
        let transport = Transport::new(|_| {
            Endpoint::from_shared(format!("http://{LOCAL_ADDR}")).map_err(|e| e.to_string())
        })
        .with_connect(move |endpoint| {
            let tx = tx.clone();
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let (client, server) = tokio::io::duplex(PIPE_BYTES);
                let sent = tx.send(server);
                async move {
                    sent.map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::ConnectionRefused,
                            "the local catalog member has stopped",
                        )
                    })?;
                    Ok::<_, std::io::Error>(TokioIo::new(client))
                }
            }))
        });
        LocalLink {
            transport,
            accepted,
        }
    }

    /// The transport clients of this member use (any address: there is
    /// only one place to go).
    pub fn transport(&self) -> Transport {
        self.transport.clone()
    }

    /// The connections clients open, for `CatalogNode::serve_incoming`.
    pub fn incoming(self) -> impl Stream<Item = Result<DuplexStream, std::io::Error>> {
        let mut accepted = self.accepted;
        futures::stream::poll_fn(move |cx| accepted.poll_recv(cx).map(|c| c.map(Ok)))
    }
}

impl Default for LocalLink {
    fn default() -> Self {
        Self::new()
    }
}
