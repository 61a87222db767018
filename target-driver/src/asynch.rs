//! The async API, embassy style: [`new`] gives a [`Client`] handle for the application's tasks and a
//! [`Runner`] to run in its own task; the runner drives the link, RST and the watchdog.

use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::task::Poll;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};
use embassy_time::{with_deadline, Instant, Timer};
use embedded_hal::digital::{InputPin, OutputPin, PinState};
use embedded_hal_async::digital::Wait;
use protocol::driver::{asynch as link, Progress, Timing};
use protocol::link::{LinkIo, Wait as LinkWait};
use protocol::QoS;

use crate::config::Config;
use crate::core::{Core, DriverStats, Event, Outcome, Token};
use crate::error::Error;

/// Application tasks that may wait on the client at once.
pub const MAX_WAITERS: usize = 4;

/// The five link pins, taken by value. Set them up first: outputs push-pull (RST may be open-drain), inputs with the
/// pulls `docs/protocol.md` gives.
pub struct Pins<TC, TD, BC, BD, RST> {
    /// Target clock (output).
    pub t_clk: TC,
    /// Target data (output).
    pub t_dat: TD,
    /// Bridge clock (input that can wait for a level).
    pub b_clk: BC,
    /// Bridge data (input that can wait for a level).
    pub b_dat: BD,
    /// Bridge reset (output; low holds the bridge in reset).
    pub rst: RST,
}

struct Inner<
    'c,
    const T: usize,
    const P: usize,
    const PUBS: usize,
    const SUBS: usize,
    const TX: usize,
    const RX: usize,
    const POOL: usize,
> {
    core: Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>,
    waiters: MultiWakerRegistration<MAX_WAITERS>,
    /// Set by a client call that gave the runner work (a request to send, an event taken); cleared when the runner
    /// looks at it. Kept here, under the lock every such call takes anyway, rather than in an
    /// `embassy_sync::signal::Signal`, which brings a mutex and a state of its own.
    runner_due: bool,
    /// The runner's task while it waits.
    runner: WakerRegistration,
}

struct Shared<
    'c,
    M: RawMutex,
    const T: usize,
    const P: usize,
    const PUBS: usize,
    const SUBS: usize,
    const TX: usize,
    const RX: usize,
    const POOL: usize,
> {
    inner: Mutex<M, RefCell<Inner<'c, T, P, PUBS, SUBS, TX, RX, POOL>>>,
}

impl<
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Inner<'_, T, P, PUBS, SUBS, TX, RX, POOL>
{
    /// Makes the runner's wait return: now if it waits, at once if it waits later.
    fn wake_runner(&mut self) {
        self.runner_due = true;
        self.runner.wake();
    }
}

/// The pins in the order `(t_clk, t_dat, b_clk, b_dat, rst)`, as `protocol::sim::target_pins` gives them.
impl<TC, TD, BC, BD, RST> From<(TC, TD, BC, BD, RST)> for Pins<TC, TD, BC, BD, RST> {
    fn from((t_clk, t_dat, b_clk, b_dat, rst): (TC, TD, BC, BD, RST)) -> Self {
        Pins {
            t_clk,
            t_dat,
            b_clk,
            b_dat,
            rst,
        }
    }
}

/// The memory the driver lives in; keep it in a `static` (for example with `static_cell`) or on the stack of a
/// function that never returns.
pub struct Resources<
    'c,
    M: RawMutex,
    const T: usize = { crate::DEFAULT_TOPIC },
    const P: usize = { crate::DEFAULT_PAYLOAD },
    const PUBS: usize = { crate::DEFAULT_PUBS },
    const SUBS: usize = { crate::DEFAULT_SUBS },
    const TX: usize = { crate::DEFAULT_TX },
    const RX: usize = { crate::DEFAULT_RX },
    const POOL: usize = { crate::DEFAULT_POOL },
> {
    shared: Option<Shared<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>>,
}

impl<
        'c,
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Default for Resources<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<
        'c,
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Resources<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
    /// Empty resources.
    pub const fn new() -> Self {
        Resources { shared: None }
    }
}

/// The application's handle: cheap to copy, usable from several tasks at once.
pub struct Client<
    'a,
    'c,
    M: RawMutex,
    const T: usize = { crate::DEFAULT_TOPIC },
    const P: usize = { crate::DEFAULT_PAYLOAD },
    const PUBS: usize = { crate::DEFAULT_PUBS },
    const SUBS: usize = { crate::DEFAULT_SUBS },
    const TX: usize = { crate::DEFAULT_TX },
    const RX: usize = { crate::DEFAULT_RX },
    const POOL: usize = { crate::DEFAULT_POOL },
> {
    shared: &'a Shared<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>,
}

impl<
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Clone for Client<'_, '_, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
    fn clone(&self) -> Self {
        *self
    }
}

impl<
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Copy for Client<'_, '_, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
}

/// The task that drives the link, RST and the watchdog: run [`Runner::run`] in its own task.
///
/// Hand that task a `&'static mut Runner` (from a `static_cell::StaticCell`, say) rather than the runner by value:
/// the compiler keeps a task's by-value argument twice in the task's memory, as the argument and as the local it is
/// moved into (72 bytes of RAM in the STM32F405 example).
pub struct Runner<
    'a,
    'c,
    M: RawMutex,
    TC,
    TD,
    BC,
    BD,
    RST,
    const T: usize = { crate::DEFAULT_TOPIC },
    const P: usize = { crate::DEFAULT_PAYLOAD },
    const PUBS: usize = { crate::DEFAULT_PUBS },
    const SUBS: usize = { crate::DEFAULT_SUBS },
    const TX: usize = { crate::DEFAULT_TX },
    const RX: usize = { crate::DEFAULT_RX },
    const POOL: usize = { crate::DEFAULT_POOL },
> {
    shared: &'a Shared<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>,
    link: link::Master<TC, TD, BC, BD>,
    rst: RST,
}

/// Creates the driver: a [`Client`] for the application and the [`Runner`] for its task. The runner starts by
/// resetting the bridge.
#[allow(clippy::type_complexity)] // the pair of handles, each generic over the same parameters
pub fn new<
    'a,
    'c,
    M,
    E,
    TC,
    TD,
    BC,
    BD,
    RST,
    const T: usize,
    const P: usize,
    const PUBS: usize,
    const SUBS: usize,
    const TX: usize,
    const RX: usize,
    const POOL: usize,
>(
    pins: Pins<TC, TD, BC, BD, RST>,
    config: Config<'c>,
    timing: Timing,
    resources: &'a mut Resources<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>,
) -> Result<
    (
        Client<'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL>,
        Runner<'a, 'c, M, TC, TD, BC, BD, RST, T, P, PUBS, SUBS, TX, RX, POOL>,
    ),
    protocol::driver::Error<E>,
>
where
    M: RawMutex,
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E> + Wait<Error = E>,
    BD: InputPin<Error = E> + Wait<Error = E>,
    RST: OutputPin,
{
    let link = link::Master::new(pins.t_clk, pins.t_dat, pins.b_clk, pins.b_dat, timing)?;
    let core = Core::new(config, Instant::now());
    let shared = resources.shared.insert(Shared {
        inner: Mutex::new(RefCell::new(Inner {
            core,
            waiters: MultiWakerRegistration::new(),
            runner_due: false,
            runner: WakerRegistration::new(),
        })),
    });
    let shared = &*shared;
    Ok((
        Client { shared },
        Runner {
            shared,
            link,
            rst: pins.rst,
        },
    ))
}

impl<
        'c,
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Shared<'c, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
    fn with<R>(&self, f: impl FnOnce(&mut Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>) -> R) -> R {
        self.inner.lock(|i| {
            let mut inner = i.borrow_mut();
            let r = f(&mut inner.core);
            inner.waiters.wake();
            r
        })
    }

    /// [`Inner::wake_runner`], under the lock.
    fn wake_runner(&self) {
        self.inner.lock(|i| i.borrow_mut().wake_runner())
    }
}

impl<
        'a,
        'c,
        M,
        E,
        TC,
        TD,
        BC,
        BD,
        RST,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Runner<'a, 'c, M, TC, TD, BC, BD, RST, T, P, PUBS, SUBS, TX, RX, POOL>
where
    M: RawMutex,
    TC: OutputPin<Error = E>,
    TD: OutputPin<Error = E>,
    BC: InputPin<Error = E> + Wait<Error = E>,
    BD: InputPin<Error = E> + Wait<Error = E>,
    RST: OutputPin,
{
    /// Runs the driver forever.
    pub async fn run(&mut self) -> ! {
        let shared = self.shared;
        loop {
            let (deadline, link_enabled) = self.service();
            // What to wait for before the next turn, besides the application's signal and the deadline: nothing
            // (go on at once), or also the bridge asking for service. One wait point serves every case: each
            // `await` costs the state machine code.
            let wait = if !link_enabled {
                Some(false)
            } else {
                // Up to 512 exchanges, each step under the driver's lock (its frame queues are there) and each
                // wait for the bridge's clock outside it; stops early at `deadline`. Written out here rather than
                // as an async fn of its own: a nested future is a second state machine.
                let exchanges = 'exchanges: {
                    for _ in 0..512 {
                        let wait = match shared.inner.lock(|i| self.link.step(i.borrow_mut().core.port())) {
                            Ok(wait) => wait,
                            Err(e) => break 'exchanges Err(e),
                        };
                        match wait {
                            LinkWait::Idle => break 'exchanges Ok(Progress::Idle),
                            LinkWait::RxFull => break 'exchanges Ok(Progress::RxFull),
                            LinkWait::Fault(fault) => break 'exchanges Err(protocol::driver::Error::Fault(fault)),
                            LinkWait::PeerClk(level) => {
                                match with_deadline(deadline, self.link.wait_clk(level)).await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => break 'exchanges Err(e),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    Ok(Progress::Busy)
                };
                match exchanges {
                    Ok(Progress::Busy) => None,
                    Ok(progress) => {
                        // The frame that just completed may be the last one before the link went quiet (a Ready,
                        // a Pong): handle it now, not when the next deadline wakes us; its answers may need the
                        // link. One closure for both cases: each is a copy of `Shared::with`.
                        let (held, tx_ready) = shared.with(|core| {
                            core.handle_frame(Instant::now());
                            (core.port().received().is_some(), core.port().tx_ready())
                        });
                        if progress == Progress::RxFull {
                            // A message waits for the application; the link holds until it takes it.
                            held.then_some(false)
                        } else {
                            (!tx_ready).then_some(true)
                        }
                    }
                    Err(_) => {
                        shared.with(|core| core.handle_link_error(Instant::now()));
                        None
                    }
                }
            };
            let link = &mut self.link;
            let mut request = pin!((wait == Some(true)).then(|| link.wait_request()));
            let mut timer = Timer::at(deadline);
            let mut yielded = false;
            // The one wait point. It yields first, so that the application's futures run even when every wait is
            // ready at once (a held message, a passed deadline); then it returns at once without a wait, or once
            // the bridge asks for service (if waited for), a client call has woken the runner since it last
            // looked (at once if one has), or the deadline passes. Written out rather than as `yield_now` and a
            // `select3`: each `await` costs the state machine code.
            let link_failed = poll_fn(|cx| {
                if !core::mem::replace(&mut yielded, true) {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if wait.is_none() {
                    return Poll::Ready(false);
                }
                if let Some(Poll::Ready(r)) = request.as_mut().as_pin_mut().map(|r| r.poll(cx)) {
                    return Poll::Ready(r.is_err());
                }
                let woken = shared.inner.lock(|i| {
                    let mut inner = i.borrow_mut();
                    let woken = core::mem::take(&mut inner.runner_due);
                    if !woken {
                        inner.runner.register(cx.waker());
                    }
                    woken
                });
                if woken || Pin::new(&mut timer).poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
                Poll::Pending
            })
            .await;
            if link_failed {
                shared.with(|core| core.handle_link_error(Instant::now()));
            }
        }
    }

    /// Timers, RST, link reset and queued requests; returns when to come back at the latest and whether the link
    /// should run (read under the same lock: a second one would cost a lock, a wake of the waiters and its code).
    fn service(&mut self) -> (Instant, bool) {
        let (rst, reset, deadline, link_enabled) = self.shared.with(|core| {
            let now = Instant::now();
            // A frame that arrived counts before a deadline that passed meanwhile (a Pong, a Ready).
            core.handle_frame(now);
            core.handle_timeout(now);
            core.flush();
            (
                core.rst_level(),
                core.take_link_reset(),
                core.poll_at(),
                core.link_enabled(),
            )
        });
        let _ = self.rst.set_state(PinState::from(rst));
        if reset {
            let _ = self.link.reset();
        }
        (deadline, link_enabled)
    }
}

impl<
        'a,
        'c,
        M: RawMutex,
        const T: usize,
        const P: usize,
        const PUBS: usize,
        const SUBS: usize,
        const TX: usize,
        const RX: usize,
        const POOL: usize,
    > Client<'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL>
{
    /// Waits until `f` gives a value, re-trying it whenever the driver's state changes. A plain function returning
    /// the `poll_fn` rather than an `async fn`: that would be a second state machine around it, holding `self` and
    /// `f` once more in the caller's future.
    fn wait_for<'s, R, F>(
        &'s self,
        mut f: F,
    ) -> impl Future<Output = R> + use<'s, 'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL, R, F>
    where
        F: FnMut(&mut Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>) -> Option<R>,
    {
        poll_fn(move |cx| {
            self.shared.inner.lock(|i| {
                let mut inner = i.borrow_mut();
                match f(&mut inner.core) {
                    Some(r) => Poll::Ready(r),
                    None => {
                        inner.waiters.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
    }

    /// Starts `op`, re-trying it while it gives [`Error::WouldBlock`], and waits for its outcome. Publish and
    /// subscribe share this one future, so that the code that waits is there once rather than once for each; `op`
    /// is taken by reference, so that it is not stored twice in the caller's future (measured: a copy costs RAM and
    /// flash). One `poll_fn` for both halves, with the token as its state, rather than a future to start and one
    /// to finish: one lock per poll, and the runner woken under it.
    fn request<'s>(
        &'s self,
        op: &'s Op<'_>,
    ) -> impl Future<Output = Result<Outcome, Error>> + use<'s, 'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL> {
        let mut token = None;
        poll_fn(move |cx| {
            self.shared.inner.lock(|i| {
                let mut inner = i.borrow_mut();
                let inner = &mut *inner;
                let t = match token {
                    Some(t) => t,
                    None => {
                        let started = match *op {
                            Op::Publish {
                                topic,
                                payload,
                                qos,
                                retain,
                            } => inner.core.publish(topic, payload, qos, retain),
                            Op::Subscribe { filter, qos } => inner.core.subscribe(filter, qos),
                        };
                        match started {
                            Err(Error::WouldBlock) => {
                                inner.waiters.register(cx.waker());
                                return Poll::Pending;
                            }
                            other => {
                                // The runner sends the request (or sees that nothing was queued).
                                inner.wake_runner();
                                match other {
                                    Ok(t) => *token.insert(t),
                                    Err(e) => return Poll::Ready(Err(e)),
                                }
                            }
                        }
                    }
                };
                match inner.core.outcome(t) {
                    Some(r) => Poll::Ready(r),
                    None => {
                        inner.waiters.register(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
    }

    /// Starts `op`, re-trying it while it gives [`Error::WouldBlock`]. A plain function for the reason `wait_for` is
    /// one, so the caller wakes the runner (to send the request) once it has returned.
    fn start<'s, F>(
        &'s self,
        mut op: F,
    ) -> impl Future<Output = Result<Token, Error>> + use<'s, 'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL, F>
    where
        F: FnMut(&mut Core<'c, T, P, PUBS, SUBS, TX, RX, POOL>) -> Result<Token, Error>,
    {
        self.wait_for(move |core| match op(core) {
            Err(Error::WouldBlock) => None,
            other => Some(other),
        })
    }

    /// Waits for the outcome of the operation `token` names; a plain function for the reason `wait_for` is one.
    fn finish<'s>(
        &'s self,
        token: Token,
    ) -> impl Future<Output = Result<Outcome, Error>> + use<'s, 'a, 'c, M, T, P, PUBS, SUBS, TX, RX, POOL> {
        self.wait_for(move |core| core.outcome(token))
    }

    /// Publishes. QoS 1 returns once the broker has acknowledged it, end to end (across bridge resets and lost
    /// frames: an unacknowledged publication is sent again). QoS 0 returns once the bridge has written it to the
    /// broker, or with [`Error::BridgeReset`] or [`Error::Unconfirmed`] when that is not known (it is never sent
    /// twice). Waits while the driver's publication slots or the bridge's queue are full.
    ///
    /// Dropping the future (a timeout around it, say) while it waits for room sends nothing; dropping it later
    /// leaves the publication in flight: it is still delivered (QoS 1: sent again until acknowledged), only its
    /// outcome goes unreported. The same holds for [`Client::subscribe`] and [`Client::unsubscribe`].
    pub async fn publish(&self, topic: &str, payload: &[u8], qos: QoS, retain: bool) -> Result<(), Error> {
        let op = Op::Publish {
            topic,
            payload,
            qos,
            retain,
        };
        self.request(&op).await.map(|_| ())
    }

    /// Subscribes; returns the QoS the broker granted. The subscription is restored after every bridge reset (one
    /// the broker refused is forgotten). Waits as [`Client::unsubscribe`] does.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> Result<QoS, Error> {
        match self.request(&Op::Subscribe { filter, qos }).await? {
            Outcome::Subscribed(q) => Ok(q),
            _ => Ok(qos),
        }
    }

    /// Unsubscribes. Waits while the subscription table is full and one of its entries waits for an answer (which
    /// may free it), or while an earlier subscribe or unsubscribe of this filter is unanswered. A table full of
    /// settled subscriptions gives [`Error::TooManySubscriptions`] at once, for a filter not in it: waiting would
    /// be forever.
    pub async fn unsubscribe(&self, filter: &str) -> Result<(), Error> {
        let token = self.start(|core| core.unsubscribe(filter)).await;
        self.shared.wake_runner();
        self.finish(token?).await.map(|_| ())
    }

    /// The next message or status change; a message is copied into `buf`. Give it at least the receive buffer's size
    /// (`RX`, 212 bytes by default): a QoS 1 message that does not fit is reported as
    /// [`Status::BufferTooSmall`](crate::Status::BufferTooSmall) and kept, holding the link, until a call with a
    /// buffer large enough takes it.
    /// A QoS 1 message is acknowledged to the bridge (and so to the broker) when this returns it.
    pub async fn next_event<'b>(&self, buf: &'b mut [u8]) -> Event<'b> {
        let found = self.wait_for(|core| core.take_event(&mut *buf).map(Owned::from)).await;
        self.shared.wake_runner();
        found.into_event(buf)
    }

    /// The next message or status change, handed to `f` without a copy: a message is read in place from the
    /// driver's receive buffer, so the application needs no buffer of its own and no message is too large for one.
    /// `f` runs with the driver locked (inside the mutex `M`): it cannot await, and should be short (copy out what
    /// must outlive it). A QoS 1 message is acknowledged to the bridge once `f` has had it.
    pub async fn next_event_with<R>(&self, f: impl FnOnce(Event<'_>) -> R) -> R {
        let mut f = Some(f);
        // Written out rather than as `wait_for` and `wake_runner`: the runner is woken under the same lock.
        poll_fn(|cx| {
            self.shared.inner.lock(|i| {
                let mut inner = i.borrow_mut();
                let inner = &mut *inner;
                if let Some(event) = inner.core.borrow_event() {
                    if let Some(f) = f.take() {
                        let r = f(event);
                        // The runner frees the lent message, sends the acknowledgement and lets the link go on.
                        inner.wake_runner();
                        return Poll::Ready(r);
                    }
                }
                inner.waiters.register(cx.waker());
                Poll::Pending
            })
        })
        .await
    }

    /// The wall-clock time from the bridge (Unix milliseconds), or `None` if it does not know it yet.
    pub async fn time(&self) -> Option<u64> {
        self.shared.with(|core| core.request_time());
        self.shared.wake_runner();
        self.wait_for(|core| core.take_time()).await
    }

    /// The bridge's counters.
    pub async fn bridge_stats(&self) -> protocol::Stats {
        self.shared.with(|core| core.request_stats());
        self.shared.wake_runner();
        self.wait_for(|core| core.take_bridge_stats()).await
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.shared.with(|core| core.stats())
    }

    /// Whether the bridge is up and configured.
    pub fn bridge_up(&self) -> bool {
        self.shared.with(|core| core.bridge_up())
    }
}

/// An operation for [`Client::request`]. Unsubscribe is not one: an application that never unsubscribes would
/// link [`Core::unsubscribe`] for nothing (84 bytes in the STM32F405 example); it keeps its own start and finish.
enum Op<'x> {
    Publish {
        topic: &'x str,
        payload: &'x [u8],
        qos: QoS,
        retain: bool,
    },
    Subscribe {
        filter: &'x str,
        qos: QoS,
    },
}

/// An event whose message parts are positions in the caller's buffer.
enum Owned {
    Message {
        topic: usize,
        payload: usize,
        qos: QoS,
        retain: bool,
        dup: bool,
    },
    Status(crate::Status),
}

impl From<Event<'_>> for Owned {
    fn from(ev: Event<'_>) -> Self {
        match ev {
            Event::Message(m) => Owned::Message {
                topic: m.topic.len(),
                payload: m.payload.len(),
                qos: m.qos,
                retain: m.retain,
                dup: m.dup,
            },
            Event::Status(s) => Owned::Status(s),
        }
    }
}

impl Owned {
    fn into_event(self, buf: &[u8]) -> Event<'_> {
        match self {
            Owned::Status(s) => Event::Status(s),
            Owned::Message {
                topic,
                payload,
                qos,
                retain,
                dup,
            } => {
                let (t, rest) = buf.split_at(topic);
                let topic = protocol::wire::utf8(t).unwrap_or("");
                Event::Message(crate::Message {
                    topic,
                    payload: &rest[..payload],
                    qos,
                    retain,
                    dup,
                })
            }
        }
    }
}
