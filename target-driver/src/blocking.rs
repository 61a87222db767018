//! The blocking API for superloops and RTIC: the application calls [`Client::poll`] from its main loop with the
//! current time; every other call returns at once.

use embassy_time::Instant;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin, PinState};
use protocol::driver::{blocking as link, Progress, Timing};
use protocol::QoS;

use crate::asynch::Pins;
use crate::config::Config;
use crate::core::{Core, DriverStats, Event, Outcome, Token};
use crate::error::Error;

/// Link exchanges one [`Client::poll`] runs at most, so that the main loop keeps its rhythm.
pub const EXCHANGES_PER_POLL: u32 = 2048;

/// The blocking client: owns the pins, the link driver and the core.
pub struct Client<
    'c,
    TC,
    TD,
    BC,
    BD,
    RST,
    D,
    const T: usize = { crate::DEFAULT_TOPIC },
    const P: usize = { crate::DEFAULT_PAYLOAD },
    const PUBS: usize = { crate::DEFAULT_PUBS },
    const SUBS: usize = { crate::DEFAULT_SUBS },
    const TX: usize = { crate::DEFAULT_TX },
    const RX: usize = { crate::DEFAULT_RX },
    const POOL: usize = { crate::DEFAULT_POOL },
> {
    core: Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>,
    link: link::Master<TC, TD, BC, BD, D>,
    rst: RST,
}

impl<
        'c,
        E,
        TC,
        TD,
        BC,
        BD,
        RST,
        D,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Client<'c, TC, TD, BC, BD, RST, D, T, P, PUBS, SUBS, TX, RX, POOL>
where
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E>,
    BD: InputPin<Error = E>,
    RST: OutputPin,
    D: DelayNs,
{
    /// Takes the pins; the first [`Client::poll`] starts by resetting the bridge.
    pub fn new(
        pins: Pins<TC, TD, BC, BD, RST>,
        delay: D,
        config: Config<'c>,
        timing: Timing,
        now: Instant,
    ) -> Result<Self, protocol::driver::Error<E>> {
        let link = link::Master::new(pins.t_clk, pins.t_dat, pins.b_clk, pins.b_dat, delay, timing)?;
        Ok(Client {
            core: Core::new(config, now),
            link,
            rst: pins.rst,
        })
    }

    /// Does the driver's work: timers, RST, the link (up to [`EXCHANGES_PER_POLL`] exchanges), received frames.
    /// Call it often (every millisecond or so while busy, and when [`Client::poll_at`] comes).
    // Out of line: inlined into the application's loop (its only caller), the link engine's code shares registers
    // with the application's and reloads more (the superloop example: 26 bytes of the driver's code less, a stack
    // frame of 172 bytes instead of 180).
    #[inline(never)]
    pub fn poll(&mut self, now: Instant) {
        // A frame that arrived counts before a deadline that passed meanwhile (a Pong, a Ready).
        self.core.handle_frame(now);
        self.core.handle_timeout(now);
        let _ = self.rst.set_state(PinState::from(self.core.rst_level()));
        if self.core.take_link_reset() {
            let _ = self.link.reset();
        }
        self.core.flush();
        let mut budget = if self.core.link_enabled() {
            EXCHANGES_PER_POLL
        } else {
            0
        };
        while budget > 0 {
            let before = self.link.stats().exchanges;
            match self.link.poll(self.core.port(), budget) {
                Ok(Progress::Idle) => break,
                Ok(Progress::Busy) => {}
                Ok(Progress::RxFull) => {
                    self.core.handle_frame(now);
                    if self.core.port().received().is_some() {
                        break;
                    }
                }
                Err(_) => {
                    self.core.handle_link_error(now);
                    break;
                }
            }
            budget = budget
                .saturating_sub((self.link.stats().exchanges - before) as u32)
                .min(budget - 1);
        }
        self.core.handle_frame(now);
        self.core.flush();
    }

    /// When to call [`Client::poll`] at the latest if nothing else happens (the bridge asking for service shows as
    /// B_DAT low: an interrupt on it may also trigger a poll).
    pub fn poll_at(&self) -> Instant {
        self.core.poll_at()
    }

    /// Starts a publication; [`Error::WouldBlock`] when no slot is free or the bridge's queue is full (retry after
    /// a poll). Follow it with [`Client::outcome`].
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<Token, Error> {
        self.core.publish(topic, payload, qos, retain)
    }

    /// Starts a subscription; follow it with [`Client::outcome`]. [`Error::WouldBlock`] while the subscription
    /// table is full and one of its entries waits for an answer, or an earlier subscribe or unsubscribe of this
    /// filter is unanswered (retry after a poll); [`Error::TooManySubscriptions`] when it is full and none waits.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<Token, Error> {
        self.core.subscribe(filter, qos)
    }

    /// Starts an unsubscription; follow it with [`Client::outcome`]. [`Error::WouldBlock`] as for
    /// [`Client::subscribe`].
    pub fn unsubscribe(&mut self, filter: &str) -> Result<Token, Error> {
        self.core.unsubscribe(filter)
    }

    /// The outcome of an operation, once known.
    pub fn outcome(&mut self, token: Token) -> Option<Result<Outcome, Error>> {
        self.core.outcome(token)
    }

    /// The next message or status change, if any. A message is lent from the driver's receive buffer, not copied:
    /// it borrows the client, and its frame is freed at the next call to `next_event` or [`Client::poll`] (the
    /// link holds until then). Taking a QoS 1 message acknowledges it (the acknowledgement goes out with the next
    /// poll).
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        self.core.borrow_event()
    }

    /// Asks the bridge for the time; [`Client::time`] gives the answer after a few polls.
    pub fn request_time(&mut self) {
        self.core.request_time();
    }

    /// The answer to [`Client::request_time`], once.
    pub fn time(&mut self) -> Option<Option<u64>> {
        self.core.take_time()
    }

    /// Whether the bridge is up and configured.
    pub fn bridge_up(&self) -> bool {
        self.core.bridge_up()
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.core.stats()
    }
}
