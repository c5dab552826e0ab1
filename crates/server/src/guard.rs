//! What protects the account endpoints: request rates per client address and per username
//! (governor's GCRA limiters), and a bounded pool for password hashing, so that a flood of
//! sign-ins can neither guess passwords quickly nor pile up argon2 work without end.
//!
//! The numbers are in `docs/protocol.md` §1 and on the command line (`Config`).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use papo_protocol::ErrorCode;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Governor's clock on tokio's time, so that `tokio::time::pause` drives the limiters in tests.
/// Instants are the time since the clock was made.
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.start)
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, TokioClock, NoOpMiddleware<Duration>>;

/// A per-key limit of `per_minute` requests (a burst of that many, then one every
/// 60/`per_minute` seconds); `None` when switched off (0).
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: Option<Keyed<K>>,
    clock: TokioClock,
    /// Checks since the last sweep of idle keys.
    checks: AtomicUsize,
}

/// Idle keys are forgotten after this many checks, so the maps stay small.
const SWEEP_EVERY: usize = 1024;

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_quota(NonZeroU32::new(per_minute).map(Quota::per_minute))
    }

    /// `rate` requests a second sustained, in bursts of up to `burst` (at least 1); a rate of
    /// 0 or less refills nothing after the burst.
    pub fn per_second(rate: f64, burst: f64) -> Self {
        let period = if rate > 0.0 {
            Duration::from_secs_f64((1.0 / rate).min(u32::MAX as f64))
        } else {
            Duration::from_secs(u32::MAX as u64)
        };
        let burst =
            NonZeroU32::new(burst.clamp(1.0, u32::MAX as f64) as u32).unwrap_or(NonZeroU32::MIN);
        Self::with_quota(Quota::with_period(period).map(|q| q.allow_burst(burst)))
    }

    fn with_quota(quota: Option<Quota>) -> Self {
        let clock = TokioClock::default();
        KeyedLimit {
            limiter: quota.map(|q| RateLimiter::hashmap_with_clock(q, clock.clone())),
            clock,
            checks: AtomicUsize::new(0),
        }
    }

    /// Spends one request of `key`'s budget; when it is spent, how long until one is back.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) + 1 >= SWEEP_EVERY {
            self.checks.store(0, Ordering::Relaxed);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys remembered (idle ones go at the next sweep).
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole seconds to announce in `Retry-After`: rounded up, at least 1.
pub fn retry_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's usual
/// allocation; per-address keys would let one host rotate through 2^64 of them).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The numbers, from the command line.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Sign-in and register requests per minute per client address (0 = off).
    pub ip_per_min: u32,
    /// Sign-in attempts per minute per username (0 = off).
    pub user_per_min: u32,
    /// Passwords hashed at once (0 = one per available core).
    pub hash_threads: usize,
    /// Hashing requests allowed to wait for a thread; more are refused at once.
    pub hash_queue: usize,
    /// Longest wait for a hashing thread before the request is refused.
    pub hash_wait: Duration,
}

/// The limits the account endpoints go through.
pub struct AccountGuard {
    pub by_ip: KeyedLimit<IpAddr>,
    pub by_user: KeyedLimit<String>,
    pub hashing: HashPool,
}

impl AccountGuard {
    pub fn new(c: &GuardConfig) -> Self {
        let threads = if c.hash_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            c.hash_threads
        };
        AccountGuard {
            by_ip: KeyedLimit::per_minute(c.ip_per_min),
            by_user: KeyedLimit::per_minute(c.user_per_min),
            hashing: HashPool::new(threads, c.hash_queue, c.hash_wait),
        }
    }

    /// Spends one account request of this client address (`None`: unknown, not limited).
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        self.by_ip.check(&ip_key(ip)).map_err(|wait| {
            tracing::info!(ip = %ip, "account requests rate-limited");
            ApiError::new(
                ErrorCode::RateLimited,
                "too many sign-in or register requests from this address; try again later",
            )
            .retry_after(retry_secs(wait))
        })
    }

    /// Spends one sign-in attempt of this username.
    pub fn check_user(&self, username: &str) -> Result<(), ApiError> {
        self.by_user.check(&username.to_string()).map_err(|wait| {
            tracing::info!(user = %username, "sign-in attempts rate-limited");
            ApiError::new(
                ErrorCode::RateLimited,
                "too many sign-in attempts for this username; try again later",
            )
            .retry_after(retry_secs(wait))
        })
    }
}

/// Why the hashing pool did not run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolRefusal {
    /// Every thread is busy and the queue is full.
    Full,
    /// Waited too long for a thread.
    TimedOut,
    /// The job panicked.
    Failed,
}

impl From<PoolRefusal> for ApiError {
    fn from(r: PoolRefusal) -> Self {
        match r {
            PoolRefusal::Full | PoolRefusal::TimedOut => {
                tracing::warn!(why = ?r, "password hashing pool busy; request refused");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the server is busy checking passwords; nothing was done, try again shortly",
                )
                .retry_after(1)
            }
            PoolRefusal::Failed => ApiError::internal(),
        }
    }
}

/// Runs CPU-heavy jobs (argon2) on at most `threads` blocking threads at once, with at most
/// `queue` more waiting; others are refused at once instead of piling up.
pub struct HashPool {
    permits: Arc<Semaphore>,
    /// Jobs admitted: running plus waiting.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    max_wait: Duration,
}

/// Counts a job as admitted until dropped.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    pub fn new(threads: usize, queue: usize, max_wait: Duration) -> Self {
        let threads = threads.max(1);
        HashPool {
            permits: Arc::new(Semaphore::new(threads)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: threads + queue,
            max_wait,
        }
    }

    /// Jobs running or waiting now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }

    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolRefusal> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(PoolRefusal::Full);
        }
        let _admitted = Admitted(self.admitted.clone());
        let permit = tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| PoolRefusal::TimedOut)?
            .map_err(|_| PoolRefusal::Failed)?;
        // The permit goes with the job: if the caller gives up, the thread stays counted until
        // the hash is done.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "hashing job failed");
            PoolRefusal::Failed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test(start_paused = true)]
    async fn request_budget_allows_bursts_then_refills() {
        let l = KeyedLimit::<i64>::per_second(10.0, 3.0);
        assert!(l.check(&1).is_ok() && l.check(&1).is_ok() && l.check(&1).is_ok());
        assert_eq!(l.check(&1), Err(Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        // A fractional rate is a longer period.
        let slow = KeyedLimit::<i64>::per_second(0.5, 1.0);
        assert!(slow.check(&1).is_ok());
        assert_eq!(slow.check(&1), Err(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn one_budget_per_user_kept_until_refilled() {
        let l = KeyedLimit::<i64>::per_second(1.0, 2.0);
        // Two sockets of user 1 spend the same budget; user 2 has its own.
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        assert!(l.check(&2).is_ok());
        // Every socket gone, budget spent: sweeps keep it, so reconnecting gets it spent.
        for u in 100..(100 + SWEEP_EVERY as i64) {
            let _ = l.check(&u);
        }
        assert!(l.check(&1).is_err());
        // Once refilled it is forgotten at the next sweep (a new one would be the same).
        tokio::time::advance(Duration::from_secs(3)).await;
        for u in 100..(100 + SWEEP_EVERY as i64) {
            let _ = l.check(&u);
        }
        assert!(l.len() < 2 * SWEEP_EVERY, "idle, refilled keys are dropped");
        assert!(l.check(&1).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_gets_its_burst_then_one_request_per_period() {
        let l = KeyedLimit::<String>::per_minute(5);
        let k = "ana".to_string();
        for _ in 0..5 {
            assert_eq!(l.check(&k), Ok(()));
        }
        let wait = l.check(&k).unwrap_err();
        assert!(
            wait > Duration::from_secs(11) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert_eq!(retry_secs(wait), 12);
        // Other keys are not affected.
        assert_eq!(l.check(&"joao".to_string()), Ok(()));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(l.check(&k).is_err(), "one comes back after 12 s, not 11");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.check(&k), Ok(()));
        assert!(l.check(&k).is_err());
        // A full minute restores the whole burst.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert_eq!(l.check(&k), Ok(()));
        }
        assert!(l.check(&k).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_switches_a_limit_off() {
        let l = KeyedLimit::<String>::per_minute(0);
        for _ in 0..1000 {
            assert_eq!(l.check(&"ana".to_string()), Ok(()));
        }
        assert!(l.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept() {
        let l = KeyedLimit::<u32>::per_minute(20);
        for i in 0..1000 {
            l.check(&i).unwrap();
        }
        assert_eq!(l.len(), 1000);
        tokio::time::advance(Duration::from_secs(120)).await;
        for _ in 0..SWEEP_EVERY {
            l.check(&7).unwrap_or(());
        }
        assert!(l.len() < 10, "{}", l.len());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert_eq!(ip_key(mapped), IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_guard_answers_429_with_retry_after() {
        let g = AccountGuard::new(&GuardConfig {
            ip_per_min: 2,
            user_per_min: 1,
            hash_threads: 1,
            hash_queue: 0,
            hash_wait: Duration::from_secs(1),
        });
        let ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        g.check_ip(ip).unwrap();
        g.check_ip(ip).unwrap();
        let e = g.check_ip(ip).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(30));
        g.check_ip(None).unwrap();
        g.check_user("ana").unwrap();
        let e = g.check_user("ana").unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(60)));
    }

    /// A job that runs until told to finish.
    fn gated() -> (
        std::sync::mpsc::Sender<()>,
        impl FnOnce() -> u32 + Send + 'static,
    ) {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        (tx, move || {
            let _ = rx.recv();
            7
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_runs_n_queues_q_and_refuses_the_rest() {
        let pool = Arc::new(HashPool::new(1, 1, Duration::from_secs(3600)));
        let (go1, job1) = gated();
        let (go2, job2) = gated();
        let p = pool.clone();
        let first = tokio::spawn(async move { p.run(job1).await });
        let p = pool.clone();
        let second = tokio::spawn(async move { p.run(job2).await });
        // Both admitted: one running, one waiting.
        while pool.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 1).await, Err(PoolRefusal::Full));
        // Whichever runs first, both finish once let go.
        go1.send(()).unwrap();
        go2.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(7));
        assert_eq!(second.await.unwrap(), Ok(7));
        assert_eq!(pool.admitted(), 0);
        assert_eq!(pool.run(|| 1).await, Ok(1));
        let e: ApiError = PoolRefusal::Full.into();
        assert_eq!((e.code, e.retry_after), (ErrorCode::Unavailable, Some(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_waiting_too_long_for_a_thread_is_refused() {
        let pool = Arc::new(HashPool::new(1, 4, Duration::from_secs(5)));
        let (go, job) = gated();
        let p = pool.clone();
        let running = tokio::spawn(async move { p.run(job).await });
        while pool.admitted() < 1 {
            tokio::task::yield_now().await;
        }
        let p = pool.clone();
        let waiting = tokio::spawn(async move { p.run(|| 1).await });
        while pool.admitted() < 2 {
            tokio::task::yield_now().await;
        }
        // (A running blocking job stops the paused clock from advancing by itself.)
        tokio::time::advance(Duration::from_millis(4900)).await;
        assert!(!waiting.is_finished());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(waiting.await.unwrap(), Err(PoolRefusal::TimedOut));
        assert_eq!(pool.admitted(), 1, "the refused job no longer counts");
        go.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(7));
    }
}
