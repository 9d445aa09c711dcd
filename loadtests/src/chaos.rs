//! A chaos proxy for tests: a TCP proxy on 127.0.0.1 in front of Redis, PostgreSQL or an upstream
//! that a test can switch, while traffic flows, between passing bytes through, delaying them,
//! cutting every connection (existing ones are closed, new ones are refused at once) and
//! black-holing them (new connections are accepted and never answered). It is how tests take a
//! dependency away mid-write and give it back, without stopping the real server behind it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Pass, each chunk delayed by this many ms.
    Delay(u64),
    /// Close every connection now and refuse new ones.
    Cut,
    /// Accept new connections and never forward a byte (existing ones are closed).
    BlackHole,
}

/// A running proxy; stops when dropped.
pub struct ChaosProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    /// Bumped on every cut: connection tasks end when it changes.
    epoch: watch::Sender<u64>,
    /// Connections open through the proxy now.
    open: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// Listens on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (epoch, _) = watch::channel(0u64);
        let open = Arc::new(AtomicU64::new(0));
        let (m, d, e, o) = (mode.clone(), delay_ms.clone(), epoch.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (m, d, mut cut, o) = (m.clone(), d.clone(), e.subscribe(), o.clone());
                o.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _open = Open(o);
                    match m.load(Ordering::SeqCst) {
                        2 => drop(client),
                        3 => {
                            // Hold it, silent, until the next cut or mode change ends it.
                            let _ = cut.changed().await;
                            drop(client);
                        }
                        _ => {
                            let Ok(server) = TcpStream::connect(target).await else {
                                return;
                            };
                            tokio::select! {
                                () = pipe(client, server, d) => {}
                                _ = cut.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Ok(ChaosProxy {
            addr,
            mode,
            delay_ms,
            epoch,
            open,
            task,
        })
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Switches the mode; cutting and black-holing also end every open connection.
    pub fn set(&self, mode: Mode) {
        let code = match mode {
            Mode::Pass => 0,
            Mode::Delay(ms) => {
                self.delay_ms.store(ms, Ordering::SeqCst);
                1
            }
            Mode::Cut => 2,
            Mode::BlackHole => 3,
        };
        self.mode.store(code, Ordering::SeqCst);
        if matches!(mode, Mode::Cut | Mode::BlackHole) {
            self.epoch.send_modify(|e| *e += 1);
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.epoch.send_modify(|e| *e += 1);
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<AtomicU64>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Copies both ways until either side closes.
async fn pipe(client: TcpStream, server: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let d2 = delay_ms.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || delayed(&delay_ms).await.is_err() || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || delayed(&d2).await.is_err() || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn delayed(ms: &AtomicU64) -> Result<(), ()> {
    let ms = ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(())
}
