//! The TCP side: accept connections, split frames, keep replies in order.
//!
//! Each connection has a reader (this task) that executes requests one at a
//! time in arrival order, and a writer task that writes replies in the same
//! order, awaiting deferred ones. At most `MAX_IN_FLIGHT` replies may be
//! queued, which bounds memory per connection and applies back-pressure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::dispatch::{self, Reply};
use super::frame::Frame;
use crate::broker::Broker;
use crate::console::RequestTimer;

const MAX_IN_FLIGHT: usize = 64;
/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "connection accepted");
                    conns.spawn(connection(stream, broker.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("connections still busy after {DRAIN_TIMEOUT:?}; closing them");
        conns.abort_all();
    }
}

async fn connection(stream: TcpStream, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let _open = broker.probe.connection_opened();
    let peer = stream.peer_addr().ok();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<(Reply, RequestTimer)>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(wr, rx));
    let max = broker.config.max_request_bytes;
    let mute = super::throttle::Mute::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // When the last read returned: the frames it completed were read then.
    let mut read_at = Instant::now();
    'conn: loop {
        // Complete frames already buffered are handled before reading more.
        while let Some(len) = dispatch::frame_len(&buf) {
            if len < 0 || len as usize > max {
                tracing::debug!(
                    ?peer,
                    len,
                    max,
                    "frame size out of bounds; closing connection"
                );
                break 'conn;
            }
            let total = 4 + len as usize;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                break;
            }
            let mut frame = buf.split_to(total);
            let _ = frame.split_to(4);
            let timer = broker.probe.request_started(&frame, read_at);
            // A connection muted by a quota (KIP-219) handles nothing until the mute ends.
            if !mute.wait(&mut shutdown).await {
                break 'conn;
            }
            match dispatch::handle_frame(&broker, peer, &mute, frame.freeze()).await {
                Ok(reply) => {
                    if tx.send((reply, timer)).await.is_err() {
                        break 'conn; // writer gone: the peer closed
                    }
                }
                Err(e) => {
                    tracing::debug!(?peer, "closing connection: {e}");
                    break 'conn;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => read_at = Instant::now(),
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_replies(
    wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<(Reply, RequestTimer)>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, wr);
    while let Some((reply, timer)) = rx.recv().await {
        let frame = match reply {
            Reply::Nothing => None,
            Reply::Now(b) => Some(Frame::from(b)),
            Reply::Ready(f) => Some(f),
            Reply::Later(f) => {
                // Replies already buffered leave before the wait (a long-poll can take
                // seconds), not after it.
                if !out.buffer().is_empty() && out.flush().await.is_err() {
                    return;
                }
                f.await
            }
        };
        if let Some(f) = frame {
            if f.is_empty() {
                return; // an unencodable response: close rather than desynchronize the client
            }
            // Large buffers (a fetch's records) bypass the write buffer.
            for c in f.chunks() {
                if out.write_all(c).await.is_err() {
                    return;
                }
            }
        }
        timer.replied();
        // Flush when nothing else is ready, so pipelined replies share a syscall.
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
    let _ = out.into_inner().shutdown().await;
}
