//! The link to the WiFi bridge, wrapped in the calls the application makes.
//!
//! [`Link`] owns the raw link driver ([`Master`]), the bridge's RST line and the frame queues, and offers
//! `publish`, `subscribe`, `ack` and `next_event`: the same names the `target-driver` crate's client will have, so
//! that switching to it changes the set-up in `main.rs`, not the application. This file is the same in both board
//! examples; it is board-independent (embedded-hal 1.0 pins).
//!
//! Nothing here spawns a task: the link runs while the application awaits [`Link::next_event`], which is
//! cancel-safe, so the application selects it against its own timers.

use embassy_futures::yield_now;
use embassy_time::{Duration, Timer};
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal_async::digital::Wait;
use protocol::driver::asynch::Master;
use protocol::driver::{Progress, Timing};
use protocol::{Config, DecodeError, Event, QoS, Request};

/// The frame queues: 256 bytes of outgoing frames, and received frames of up to 256 bytes (longer ones, such as a
/// big retained message, are dropped and counted by the port). Enough for this example's short topics.
pub type LinkPort = protocol::Port<256, 256>;

/// Exchanges (one bit each way) per call of the driver before it lets other futures run.
const EXCHANGES_PER_RUN: u32 = 512;

/// How long RST is held low to restart the bridge.
const RESET_PULSE: Duration = Duration::from_millis(100);

/// Why a request was not queued. Either way nothing was sent; the caller may try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The bridge has not announced itself (`Event::Ready`) since its last restart.
    NotReady,
    /// The send queue is full (the bridge is not taking frames) or the request is larger than it.
    Queue(protocol::SendError),
}

/// The target's end of the link: driver, RST line, queues and the bridge's configuration.
pub struct Link<'a, TC, TD, BC, BD, RST> {
    master: Master<TC, TD, BC, BD>,
    rst: RST,
    port: &'a mut LinkPort,
    config: Config<'a>,
    /// The bridge must be (re)started before the link is used: at start-up and after a link error.
    restart: bool,
    /// The bridge has sent `Event::Ready` since its last restart, and has been sent the configuration.
    ready: bool,
    /// The received frame was handed out by `next_event`; it is freed on the next call.
    delivered: bool,
    next_id: u16,
}

impl<'a, E, TC, TD, BC, BD, RST> Link<'a, TC, TD, BC, BD, RST>
where
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E> + Wait<Error = E>,
    BD: InputPin<Error = E> + Wait<Error = E>,
    RST: OutputPin,
{
    /// Takes the link's pins: T_CLK and T_DAT outputs, B_CLK and B_DAT inputs that wait for edges, and RST (the
    /// bridge's reset, active low). The bridge is restarted on the first [`Link::next_event`]; `config` is sent to
    /// it each time it announces itself.
    pub fn new(
        t_clk: TC,
        t_dat: TD,
        b_clk: BC,
        b_dat: BD,
        rst: RST,
        config: Config<'a>,
        port: &'a mut LinkPort,
    ) -> Result<Self, protocol::driver::Error<E>> {
        Ok(Link {
            master: Master::new(t_clk, t_dat, b_clk, b_dat, Timing::default())?,
            rst,
            port,
            config,
            restart: true,
            ready: false,
            delivered: false,
            next_id: 1,
        })
    }

    /// Queues a publication; returns its id, which the bridge's `Event::PubAck` echoes.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<u16, SendError> {
        let id = self.take_id();
        self.send(&Request::Publish {
            id,
            topic,
            payload,
            qos,
            retain,
        })?;
        Ok(id)
    }

    /// Queues a subscription; returns its id, which the bridge's `Event::SubAck` echoes.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<u16, SendError> {
        let id = self.take_id();
        self.send(&Request::Subscribe { id, filter, qos })?;
        Ok(id)
    }

    /// Tells the bridge that the QoS 1 message `id` was taken, so that it acknowledges it to the broker.
    pub fn ack(&mut self, id: u16) -> Result<(), SendError> {
        self.send(&Request::Ack { id })
    }

    /// Runs the link until the bridge sends an event, and returns it. The event borrows the receive buffer, which
    /// is freed on the next call.
    ///
    /// `Event::Ready` (the bridge started) is answered here with the configuration before it is returned; the
    /// application then subscribes. Link errors (a timeout: the bridge stalled or was unplugged; a stuck line) are
    /// handled here too, by restarting the bridge. Cancel-safe: every `await` leaves the link consistent.
    pub async fn next_event(&mut self) -> Result<Event<'_>, DecodeError> {
        if core::mem::take(&mut self.delivered) {
            self.port.release();
        }
        loop {
            if self.restart {
                self.restart_bridge().await;
            }
            if self.port.received().is_some() {
                break;
            }
            match self.master.run(self.port, EXCHANGES_PER_RUN).await {
                // Nothing to send or receive: sleep until the bridge asks for service (B_DAT low).
                Ok(Progress::Idle) => {
                    if self.master.wait_request().await.is_err() {
                        self.restart = true;
                    }
                }
                Ok(Progress::RxFull) => {}
                Ok(Progress::Busy) => yield_now().await,
                Err(_) => self.restart = true,
            }
        }
        if let Some(Ok(Event::Ready { .. })) = self.port.received().map(Event::decode) {
            // The configuration goes first after every bridge start; the queue was emptied at the restart (or the
            // bridge restarted by itself and has forgotten everything before this anyway).
            self.ready = true;
            let config = self.config;
            // Cannot fail for lack of room unless the bridge restarted while our queue was full; the next link
            // error then restarts it again.
            let _ = self.send(&Request::Configure(config));
        }
        self.delivered = true;
        Event::decode(self.port.received().unwrap_or(&[]))
    }

    /// Holds the bridge in reset, forgets the link's state, and lets the bridge start again. Cancel-safe: if
    /// cancelled during the pulse, the next call starts over.
    async fn restart_bridge(&mut self) {
        self.ready = false;
        self.delivered = false;
        self.port.clear();
        let _ = self.rst.set_low();
        Timer::after(RESET_PULSE).await;
        // While the bridge is held in reset its lines rest at the pulls (B_CLK low, B_DAT high): adopt them.
        if self.master.reset().is_err() {
            return;
        }
        let _ = self.rst.set_high();
        self.restart = false;
    }

    fn send(&mut self, request: &Request<'_>) -> Result<(), SendError> {
        if !self.ready {
            return Err(SendError::NotReady);
        }
        self.port.send(request).map_err(SendError::Queue)
    }

    /// Ids of publications and subscriptions: 1, 2, …, 65535, 1, … (0 means "no id" in the bridge's errors).
    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }
}
