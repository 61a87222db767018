//! Async runner over `embedded-io-async` and `embassy-time`: owns the transport and the reconnect loop.
//!
//! The caller provides a [`Connector`] (embassy-net TCP, a TLS stream, a host socket adapter...) and an
//! [`Application`] that receives events and feeds the session. Time is `embassy_time::Instant::now()`, so the
//! firmware must provide an embassy-time driver; this crate never enables one.
//!
//! The connection's `read` is dropped when a timer or the application wakes the runner first, so it must be
//! cancel-safe (drop the future without losing bytes), as embassy-net's `TcpSocket::read` is.

use core::ops::ControlFlow;

use embassy_futures::select::{select, select3, Either, Either3};
use embassy_time::{with_timeout, Duration as EmbassyDuration, Timer};
use embedded_io_async::{Read, Write};

use crate::session::{Client, Event, MAX_FILTERS_PER_REQUEST};
use crate::time::Instant;

/// Opens transports to the broker.
///
/// A connection may borrow the connector (an embassy-net `TcpSocket` borrows its buffers): it lives until the
/// session drops the link, and the next `connect` comes after it is gone.
#[allow(async_fn_in_trait)] // single-threaded embedded executors: no `Send` bound wanted
pub trait Connector {
    /// A connected byte stream.
    type Connection<'a>: Read + Write
    where
        Self: 'a;
    /// Why a connection could not be opened.
    type Error;
    /// Opens a connection (DNS, TCP, TLS handshake...). An error makes the session back off.
    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error>;
}

/// The application side of the runner.
///
/// Its parameters are the [`Client`]'s sizes (`FILTERS` defaults as the client's does).
#[allow(async_fn_in_trait)]
pub trait Application<
    const QUEUE: usize,
    const STORE: usize,
    const RX: usize,
    const SUBS: usize,
    const FILTERS: usize = MAX_FILTERS_PER_REQUEST,
>
{
    /// Every event of the session, in order. A [`Event::Message`] of QoS 1 is acknowledged by calling
    /// [`Client::ack`] later from [`poll`](Self::poll) (or at once, with `auto_ack`).
    fn on_event(&mut self, event: Event<'_>);

    /// Resolves when the application has something for the session (a publication, an ack...). Must be cancel-safe:
    /// the runner drops it when the network or a timer wakes it first.
    async fn wait(&mut self);

    /// Called at every turn of the runner, after events: publish, subscribe, ack here. `Break` stops the runner.
    fn poll(&mut self, client: &mut Client<QUEUE, STORE, RX, SUBS, FILTERS>, now: Instant) -> ControlFlow<()>;
}

/// A write that takes longer than this ends the connection.
const WRITE_TIMEOUT: EmbassyDuration = EmbassyDuration::from_secs(10);

fn now() -> Instant {
    embassy_time::Instant::now().into()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => Timer::at(at.into()).await,
        None => core::future::pending().await,
    }
}

/// Why [`run`] did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RunError {
    /// `tx_buf` is shorter than [`Client::max_packet_size`].
    TxBufferTooSmall,
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("transmit buffer shorter than max_packet_size")
    }
}

impl core::error::Error for RunError {}

/// Runs the session until the application returns `Break`: connects when the session wants a link, reconnects with
/// its backoff, moves bytes, and sleeps until the next deadline, received bytes or the application.
///
/// `tx_buf` must hold at least [`Client::max_packet_size`] bytes, or nothing starts.
pub async fn run<
    C,
    A,
    const QUEUE: usize,
    const STORE: usize,
    const RX: usize,
    const SUBS: usize,
    const FILTERS: usize,
>(
    client: &mut Client<QUEUE, STORE, RX, SUBS, FILTERS>,
    connector: &mut C,
    app: &mut A,
    tx_buf: &mut [u8],
) -> Result<(), RunError>
where
    C: Connector,
    A: Application<QUEUE, STORE, RX, SUBS, FILTERS>,
{
    if tx_buf.len() < client.max_packet_size() {
        return Err(RunError::TxBufferTooSmall);
    }
    loop {
        if app.poll(client, now()).is_break() {
            return Ok(());
        }
        drain_events(client, app);
        if client.wants_link(now()) {
            match connector.connect().await {
                Ok(mut conn) => {
                    client.handle_link_up(now());
                    if serve(client, &mut conn, app, tx_buf).await.is_break() {
                        return Ok(());
                    }
                }
                Err(_) => client.handle_link_failed(now()),
            }
            continue;
        }
        let deadline = client.poll_at();
        let _ = select(sleep_until(deadline), app.wait()).await;
    }
}

fn drain_events<A, const QUEUE: usize, const STORE: usize, const RX: usize, const SUBS: usize, const FILTERS: usize>(
    client: &mut Client<QUEUE, STORE, RX, SUBS, FILTERS>,
    app: &mut A,
) where
    A: Application<QUEUE, STORE, RX, SUBS, FILTERS>,
{
    let t = now();
    while let Some(event) = client.poll_event(t) {
        app.on_event(event);
    }
}

/// Serves one connection until the session or the transport ends it.
async fn serve<T, A, const QUEUE: usize, const STORE: usize, const RX: usize, const SUBS: usize, const FILTERS: usize>(
    client: &mut Client<QUEUE, STORE, RX, SUBS, FILTERS>,
    conn: &mut T,
    app: &mut A,
    tx_buf: &mut [u8],
) -> ControlFlow<()>
where
    T: Read + Write,
    A: Application<QUEUE, STORE, RX, SUBS, FILTERS>,
{
    loop {
        // Events and the application first, then everything due on the wire.
        loop {
            drain_events(client, app);
            app.poll(client, now())?;
            drain_events(client, app);
            let t = now();
            let mut used = 0;
            while let Some(n) = client.poll_transmit(t, &mut tx_buf[used..]) {
                used += n;
            }
            if used == 0 {
                break;
            }
            let written = with_timeout(WRITE_TIMEOUT, async {
                conn.write_all(&tx_buf[..used]).await?;
                conn.flush().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                client.handle_link_down(now());
            }
        }
        if !client.is_link_up() {
            drain_events(client, app);
            return ControlFlow::Continue(());
        }
        let deadline = client.poll_at();
        let woke = {
            let buf = client.receive_buffer();
            if buf.is_empty() {
                // Full: the session holds reception back until the application acks. Do not read.
                match select(sleep_until(deadline), app.wait()).await {
                    Either::First(()) => Either3::Second(()),
                    Either::Second(()) => Either3::Third(()),
                }
            } else {
                select3(conn.read(buf), sleep_until(deadline), app.wait()).await
            }
        };
        let t = now();
        match woke {
            Either3::First(Ok(0)) | Either3::First(Err(_)) => client.handle_link_down(t),
            Either3::First(Ok(n)) => client.handle_received(n, t),
            Either3::Second(()) => client.handle_timeout(t),
            Either3::Third(()) => {}
        }
    }
}
