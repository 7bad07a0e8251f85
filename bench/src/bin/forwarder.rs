//! A bare WebSocket forwarder with no signaling logic, the practical limit for a relay on this
//! machine: it pairs the 2k-th and (2k+1)-th WebSocket (in the order their handshakes
//! complete) and writes each text or binary frame one of them sends to the other, untouched.
//! No JSON, no rooms, no queues. Its WebSocket buffers are 8 KiB like our relay's by default
//! (tungstenite's own default is 128 KiB, zero-filled before every read), so that both are
//! measured on the same library settings.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use clap::Parser;
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use tokio_tungstenite::{
    accept_async_with_config,
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};

/// Forwards each frame of a WebSocket to its partner, pairing sockets in arrival order.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    addr: IpAddr,
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Per-connection WebSocket read buffer, in bytes.
    #[arg(long, default_value_t = 8 * 1024)]
    read_buffer: usize,
    /// Per-connection WebSocket write buffer, in bytes.
    #[arg(long, default_value_t = 8 * 1024)]
    write_buffer: usize,
    /// Leave Nagle's algorithm on (no TCP_NODELAY), to measure what it costs.
    #[arg(long)]
    nagle: bool,
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Sockets waiting for their partner: the first of pair k leaves its sink and a way to get the
/// partner's sink back.
#[derive(Default)]
struct Pairing {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (Sink, oneshot::Sender<Sink>)>>,
}

impl Pairing {
    /// Trades `mine` for the partner's sink, waiting for the partner if it is not there yet.
    async fn partner(&self, mine: Sink) -> Option<Sink> {
        let pair = self.next.fetch_add(1, Ordering::Relaxed) / 2;
        // One lock for the look-up and the insert, so two halves of a pair cannot both wait.
        let step = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            match waiting.remove(&pair) {
                Some((theirs, tx)) => Step::Trade(theirs, tx, mine),
                None => {
                    let (tx, rx) = oneshot::channel();
                    waiting.insert(pair, (mine, tx));
                    Step::Wait(rx)
                }
            }
        };
        match step {
            Step::Trade(theirs, tx, mine) => {
                tx.send(mine).ok()?;
                Some(theirs)
            }
            Step::Wait(rx) => rx.await.ok(),
        }
    }
}

/// What the second or the first socket of a pair does to get its partner's sink.
enum Step {
    Trade(Sink, oneshot::Sender<Sink>, Sink),
    Wait(oneshot::Receiver<Sink>),
}

async fn handle(stream: TcpStream, pairing: Arc<Pairing>, config: WebSocketConfig, nagle: bool) {
    let _ = stream.set_nodelay(!nagle);
    let Ok(ws) = accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (sink, mut source) = ws.split();
    let Some(mut partner) = pairing.partner(sink).await else {
        return;
    };
    while let Some(Ok(frame)) = source.next().await {
        match frame {
            Message::Text(_) | Message::Binary(_) => {
                if partner.send(frame).await.is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    let _ = partner.close().await;
}

fn main() -> std::io::Result<()> {
    // The relay's rule, so that both run on the same kind of runtime: single-threaded on one
    // CPU (as pinned by the benchmark), a worker per CPU otherwise.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()?.block_on(serve(Args::parse()))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind((args.addr, args.port)).await?;
    println!("forwarder listening on {}", listener.local_addr()?);
    let pairing = Arc::new(Pairing::default());
    let config = WebSocketConfig::default()
        .read_buffer_size(args.read_buffer)
        .write_buffer_size(args.write_buffer);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, pairing.clone(), config, args.nagle));
            }
            // E.g. out of file descriptors: say so, and keep serving the sockets already open.
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
