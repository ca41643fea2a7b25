//! The calls in flight on one connection, within the server's limit on
//! concurrent streams.
//!
//! Owns: counting a connection's calls in flight (its keepalive pings only
//! while there are some), and holding back, in this client, a call past the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` until one of them ends. h2
//! would queue such a call itself, but when the connection then fails it
//! fails the queued calls like the ones the server was processing (it does
//! not say which streams never left), so they could not be retried. A call
//! held back here was never sent: when the connection ends under it, or
//! the server sends GOAWAY, it goes to the next connection, or to another
//! endpoint (gRPC's transparent retry), as grpc-go does with the calls that
//! wait for stream quota. Calls held back go in the order they came; the
//! first in line also looks at the connection now and then (h2 tells no
//! one when a GOAWAY arrives or the server raises its limit).
//!
//! Each call is also counted on its endpoint's load (for LRS reports):
//! issued when it gets its slot, ended by its outcome (for LRS: succeeded
//! or failed; for failure accrual: whose failure it was),
//! withdrawn (`settle`) when the endpoint refused it unprocessed (the channel counts
//! it failed after all if the call goes nowhere else).
//!
//! Must never: hold a call back while nothing is in flight (the server's
//! limit is then 0, and h2's queue waits for the server to raise it), or
//! keep one waiting on a connection that takes no new stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::load::{EndpointLoad, Outcome};

/// How often the first call held back looks at the connection: whether it
/// still takes new streams (not after GOAWAY) and how many.
const RECHECK: Duration = Duration::from_millis(100);

/// A connection's calls in flight. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub(crate) struct Calls(Arc<Count>);

#[derive(Debug)]
struct Count {
    in_flight: AtomicUsize,
    /// The server's limit as last read from h2. Reading it takes h2's
    /// lock, so it is read again only when a call would go past it (and
    /// while calls wait): a limit the server raises is seen then; one it
    /// lowers (servers seldom do) only once the calls reach the old one,
    /// and h2 queues the calls in between, as it would without this count.
    limit: AtomicUsize,
    /// Calls held back now. While there are some, a new call queues behind
    /// them, and a call that ends tells the first in line.
    waiting: AtomicUsize,
    /// The same, for operators (shared by the endpoint's connections).
    waiting_gauge: metrics::Gauge,
    /// What the endpoint's calls did, for load reports (shared by the
    /// endpoint's connections).
    load: EndpointLoad,
    /// Whose turn it is to be first in line (one permit, handed on in
    /// order).
    turn: Semaphore,
    freed: Notify,
    /// The connection ended, or takes no new stream: no call waits for it
    /// any more.
    ended: AtomicBool,
}

/// What the connection says now: `None` if it takes no new stream (after
/// GOAWAY, or failed), else the server's limit.
pub(crate) type Probe<'a> = &'a (dyn Fn() -> Option<usize> + Send + Sync);

impl Calls {
    /// The calls of a new connection whose server allows `limit` streams
    /// at once (h2's value once the server's SETTINGS are in); calls held
    /// back are counted on `waiting` too, and every call on `load`.
    pub(crate) fn new(limit: usize, waiting: metrics::Gauge, load: EndpointLoad) -> Self {
        Self(Arc::new(Count {
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            waiting: AtomicUsize::new(0),
            waiting_gauge: waiting,
            load,
            turn: Semaphore::new(1),
            freed: Notify::new(),
            ended: AtomicBool::new(false),
        }))
    }

    /// Counts one more call, at once while the server allows another
    /// stream and no call is held back, else once the calls before it have
    /// gone and one ends. `probe` looks at the connection (see [`Probe`]).
    /// `None`: the connection ended, or takes no new stream, while the call
    /// waited (it was not sent).
    pub(crate) async fn start(&self, probe: Probe<'_>) -> Option<InFlight> {
        if self.0.waiting.load(Ordering::SeqCst) == 0
            && let Some(in_flight) = self.try_start(self.0.limit.load(Ordering::Relaxed))
        {
            return Some(in_flight);
        }
        // Boxed: rare, and every call's future would otherwise carry it.
        Box::pin(self.wait(probe)).await
    }

    async fn wait(&self, probe: Probe<'_>) -> Option<InFlight> {
        let count = &*self.0;
        // Counted before the first look at the count: a call that ends
        // after that look sees a waiter and tells it.
        let _waiting = Waiting::new(count);
        // Never closed.
        let _turn = count.turn.acquire().await.ok()?;
        loop {
            let freed = count.freed.notified();
            tokio::pin!(freed);
            // Registered before looking: `end` and a call that ends wake it
            // even if they come between the look and the wait.
            freed.as_mut().enable();
            if count.ended.load(Ordering::SeqCst) {
                return None;
            }
            let Some(limit) = probe() else {
                self.end();
                return None;
            };
            count.limit.store(limit, Ordering::Relaxed);
            // Nothing in flight and still no room: the server allows no
            // stream now; h2 queues the call until it allows one.
            if let Some(in_flight) = self.try_start(limit).or_else(|| self.try_start(1)) {
                return Some(in_flight);
            }
            let _ = tokio::time::timeout(RECHECK, freed).await;
        }
    }

    /// Counts a call if fewer than `limit` are in flight.
    fn try_start(&self, limit: usize) -> Option<InFlight> {
        self.0
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                self.0.load.issued();
                InFlight(Some(self.0.clone()))
            })
    }

    /// Whether any call is in flight.
    pub(crate) fn any(&self) -> bool {
        self.0.in_flight.load(Ordering::Relaxed) > 0
    }

    /// The connection ended (or takes no new stream): calls waiting for it
    /// stop waiting.
    pub(crate) fn end(&self) {
        self.0.ended.store(true, Ordering::SeqCst);
        self.0.freed.notify_waiters();
    }
}

/// One call in flight on a connection; [`finish`](Self::finish)ed when its
/// response ends (or [`settle`](Self::settle)d when the attempt fails),
/// dropped before that when the call is abandoned (counted as given up in
/// the endpoint's load). Counted out once, whichever comes first.
#[derive(Debug)]
pub(crate) struct InFlight(Option<Arc<Count>>);

impl InFlight {
    /// The call ended so.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(count) = self.0.take() {
            count.load.finished(outcome);
            release(&count);
        }
    }

    /// The attempt failed with `error`: if the endpoint
    /// [`refused`](super::EndpointError::refused) it, the call is not
    /// counted as issued here (the channel counts it failed if the call
    /// goes nowhere else); otherwise it failed.
    pub(crate) fn settle(&mut self, error: &super::EndpointError) {
        if let Some(count) = self.0.take() {
            if error.refused() {
                count.load.withdrawn();
            } else {
                count.load.finished(error.outcome());
            }
            release(&count);
        }
    }

    /// Whether the call is counted out (finished or settled).
    pub(crate) fn is_over(&self) -> bool {
        self.0.is_none()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            // Abandoned: the caller dropped it, or its deadline passed.
            count.load.finished(Outcome::GaveUp);
            release(&count);
        }
    }
}

/// A call on `count`'s connection is over: its slot is free.
fn release(count: &Count) {
    count.in_flight.fetch_sub(1, Ordering::SeqCst);
    if count.waiting.load(Ordering::SeqCst) > 0 {
        // Only the first in line waits for this.
        count.freed.notify_one();
    }
}

/// A call held back, counted while it waits (cancelled or not).
struct Waiting<'a>(&'a Count);

impl<'a> Waiting<'a> {
    fn new(count: &'a Count) -> Self {
        count.waiting.fetch_add(1, Ordering::SeqCst);
        count.waiting_gauge.increment(1.0);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.waiting_gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that takes new streams, `limit` at once.
    fn allows(limit: usize) -> impl Fn() -> Option<usize> + Send + Sync {
        move || Some(limit)
    }

    /// Whether `future` is still waiting after everything else has run.
    async fn pending<F: Future + Unpin>(future: &mut F) -> bool {
        tokio::time::timeout(Duration::from_millis(1), future)
            .await
            .is_err()
    }

    /// What `future` gives, failing the test if it waits on: it must be
    /// woken (a call ended, the connection ended) before the first in line
    /// would look at the connection again on its own.
    async fn done<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(RECHECK / 2, future)
            .await
            .expect("still waiting")
    }

    /// What `future` gives once the first in line has looked at the
    /// connection again (nothing wakes it: the server changed its mind).
    async fn rechecked<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(RECHECK * 2, future)
            .await
            .expect("still waiting")
    }

    /// The calls of a connection whose server allows `limit` streams.
    fn counted(limit: usize) -> Calls {
        Calls::new(limit, metrics::Gauge::noop(), EndpointLoad::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_the_servers_limit_waits_until_one_ends() {
        let calls = counted(2);
        let two = allows(2);
        let first = calls.start(&two).await.unwrap();
        let _second = calls.start(&two).await.unwrap();
        let mut third = Box::pin(calls.start(&two));
        assert!(
            pending(&mut third).await,
            "a third stream is past the limit"
        );
        drop(first);
        assert!(
            done(third).await.is_some(),
            "the first call's end makes room"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_limit_is_read_when_a_call_would_go_past_the_known_one() {
        let limit = AtomicUsize::new(1);
        let probe = || Some(limit.load(Ordering::Relaxed));
        let calls = counted(1);
        let _first = calls.start(&probe).await.unwrap();
        limit.store(2, Ordering::Relaxed);
        // At once, not at the first in line's next look.
        assert!(
            done(calls.start(&probe)).await.is_some(),
            "the server allows two now"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_raised_while_calls_wait_lets_them_go() {
        let limit = AtomicUsize::new(1);
        let probe = || Some(limit.load(Ordering::Relaxed));
        let calls = counted(1);
        let _first = calls.start(&probe).await.unwrap();
        let mut waiting = Box::pin(calls.start(&probe));
        assert!(pending(&mut waiting).await);
        // No call ends: the first in line sees it at its next look.
        limit.store(2, Ordering::Relaxed);
        assert!(rechecked(waiting).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_stop_when_the_connection_ends() {
        let calls = counted(1);
        let one = allows(1);
        let _first = calls.start(&one).await.unwrap();
        let mut waiting = Box::pin(calls.start(&one));
        let mut behind = Box::pin(calls.start(&one));
        assert!(pending(&mut waiting).await && pending(&mut behind).await);
        calls.end();
        assert!(
            done(waiting).await.is_none(),
            "not sent: free to go elsewhere"
        );
        assert!(done(behind).await.is_none(), "nor the one behind it");
        assert!(
            calls.start(&one).await.is_none(),
            "no new call waits either"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_stop_when_the_connection_takes_no_new_stream() {
        let open = AtomicBool::new(true);
        let probe = || open.load(Ordering::Relaxed).then_some(1);
        let calls = counted(1);
        let _first = calls.start(&probe).await.unwrap();
        let mut waiting = Box::pin(calls.start(&probe));
        let mut behind = Box::pin(calls.start(&probe));
        assert!(pending(&mut waiting).await && pending(&mut behind).await);
        // GOAWAY: the call in flight goes on, no call ends.
        open.store(false, Ordering::Relaxed);
        assert!(rechecked(waiting).await.is_none());
        assert!(done(behind).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_in_flight_a_call_goes_to_h2s_queue_even_at_a_limit_of_0() {
        let calls = counted(0);
        let none = allows(0);
        let only = calls.start(&none).await;
        assert!(only.is_some(), "nothing would ever make room");
        let mut next = Box::pin(calls.start(&none));
        assert!(pending(&mut next).await, "one is queued in h2 already");
        drop(only);
        assert!(done(next).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn every_ended_call_lets_one_waiting_call_go() {
        let calls = counted(2);
        let two = allows(2);
        let a = calls.start(&two).await.unwrap();
        let b = calls.start(&two).await.unwrap();
        let mut c = Box::pin(calls.start(&two));
        let mut d = Box::pin(calls.start(&two));
        assert!(pending(&mut c).await && pending(&mut d).await);
        drop(a);
        drop(b);
        let (c, d) = done(async { tokio::join!(c, d) }).await;
        assert!(c.is_some() && d.is_some());
        assert!(calls.any());
        drop((c, d));
        assert!(!calls.any(), "every call counted out");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_go_in_the_order_they_came() {
        let calls = counted(1);
        let one = allows(1);
        let first = calls.start(&one).await.unwrap();
        let mut early = Box::pin(calls.start(&one));
        assert!(pending(&mut early).await);
        drop(first);
        // Comes after the slot freed, before the waiting call ran.
        let mut late = Box::pin(calls.start(&one));
        assert!(pending(&mut late).await, "the late call overtook");
        let early = done(early).await;
        assert!(early.is_some());
        assert!(pending(&mut late).await);
        drop(early);
        assert!(done(late).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_that_is_dropped_passes_its_turn_on() {
        let calls = counted(1);
        let one = allows(1);
        let first = calls.start(&one).await.unwrap();
        let mut abandoned = Box::pin(calls.start(&one));
        let mut next = Box::pin(calls.start(&one));
        assert!(pending(&mut abandoned).await && pending(&mut next).await);
        drop(first);
        drop(abandoned);
        assert!(done(next).await.is_some());
    }

    #[tokio::test]
    async fn every_call_counts_on_the_endpoints_load_by_how_it_ended() {
        let load = EndpointLoad::default();
        let calls = Calls::new(10, metrics::Gauge::noop(), load.clone());
        let ten = allows(10);
        let mut succeeded = calls.start(&ten).await.unwrap();
        let mut failed = calls.start(&ten).await.unwrap();
        let abandoned = calls.start(&ten).await.unwrap();
        let mut refused = calls.start(&ten).await.unwrap();
        let _running = calls.start(&ten).await.unwrap();
        succeeded.finish(Outcome::Succeeded);
        failed.finish(Outcome::EndpointFailed);
        drop(abandoned);
        refused.settle(&super::super::EndpointError::Response {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            source: Arc::new(h2::Error::from(h2::Reason::REFUSED_STREAM)),
        });
        let totals = load.totals();
        assert_eq!(
            (totals.issued, totals.succeeded, totals.failed),
            (4, 1, 2),
            "a call dropped before its end failed"
        );
        assert_eq!(totals.in_progress(), 1);
        assert!(calls.any(), "the running call is still in flight");
    }
}
