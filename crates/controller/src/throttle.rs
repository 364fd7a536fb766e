//! What keeps login and registration cheap to refuse: token buckets per client address and
//! per username (in bounded maps), and a small fixed pool of threads for Argon2. The service
//! consults an [`AuthGate`] before it hashes a password.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// How fast one key may act: `burst` at once, then `per_minute`. A burst of zero turns the
/// limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens a key starts with, and the most it can save up.
    pub burst: u32,
    /// Tokens a key gets back per minute.
    pub per_minute: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets for at most `max_keys` keys. A key that is absent has a full bucket, so a
/// bucket that has refilled can be forgotten; when the map is full of partly used buckets,
/// the one touched longest ago is forgotten, so cycling through fresh keys costs an attacker
/// its own budget and cannot grow memory.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    max_keys: usize,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// Empty buckets for `rate`, remembering at most `max_keys` keys (at least one).
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            map: HashMap::new(),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second()).min(f64::from(self.rate.burst))
    }

    /// Takes one token for `key`, or says how long until one will be there.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.burst == 0 {
            return Ok(());
        }
        let tokens = match self.map.get(key) {
            Some(bucket) => self.refilled(*bucket, now),
            None => {
                self.make_room(now);
                f64::from(self.rate.burst)
            }
        };
        if tokens < 1.0 {
            let wait = if self.rate.per_minute == 0 {
                Duration::from_secs(3600)
            } else {
                Duration::from_secs_f64((1.0 - tokens) / self.per_second())
            };
            return Err(wait);
        }
        self.map.insert(
            key.clone(),
            Bucket {
                tokens: tokens - 1.0,
                updated: now,
            },
        );
        Ok(())
    }

    /// Returns a token taken for an attempt that turned out not to count.
    pub fn give_back(&mut self, key: &K, now: Instant) {
        let burst = f64::from(self.rate.burst);
        if let Some(bucket) = self.map.get(key).copied() {
            let tokens = (self.refilled(bucket, now) + 1.0).min(burst);
            if tokens >= burst {
                self.map.remove(key);
            } else {
                self.map.insert(
                    key.clone(),
                    Bucket {
                        tokens,
                        updated: now,
                    },
                );
            }
        }
    }

    /// Makes room for one more key: forgets full buckets, then, if that was not enough, the
    /// one touched longest ago.
    fn make_room(&mut self, now: Instant) {
        if self.map.len() < self.max_keys {
            return;
        }
        let burst = f64::from(self.rate.burst);
        let per_second = self.per_second();
        self.map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * per_second < burst
        });
        if self.map.len() >= self.max_keys
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
    }

    /// Keys remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The part of a client address that identifies one client: the whole IPv4 address, or the
/// /64 network of an IPv6 one (a single host usually holds the whole /64).
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Settings of an [`AuthGate`].
#[derive(Debug, Clone, Copy)]
pub struct AuthGateConfig {
    /// Login and registration attempts per client address.
    pub per_address: Rate,
    /// Failed login and registration attempts per username.
    pub per_username: Rate,
    /// Addresses and usernames remembered, each.
    pub tracked_keys_max: usize,
    /// Argon2 computations at once (the threads of the hashing pool).
    pub hashing_concurrency: usize,
    /// Longest a request waits for an Argon2 slot before it is refused.
    pub hashing_wait: Duration,
}

type HashJob = Box<dyn FnOnce() + Send>;

/// Rate limits and the Argon2 threads, shared by every front end of this controller.
///
/// Argon2 runs on threads of its own rather than the runtime's blocking pool: each run
/// allocates about 19 MiB, and the allocator keeps such blocks per thread arena, so hashes
/// spread over hundreds of blocking threads would pin hundreds of MiB. A few long-lived
/// threads reuse the same few blocks.
pub struct AuthGate {
    addresses: Mutex<Buckets<IpAddr>>,
    usernames: Mutex<Buckets<String>>,
    /// One permit per hashing thread; a queued job holds its permit until it has run, so at
    /// most that many jobs are ever queued or running.
    hashing: Arc<Semaphore>,
    hashing_wait: Duration,
    jobs: mpsc::Sender<HashJob>,
}

/// The `Retry-After` of a refusal: whole seconds, at least one.
fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// A login or registration attempt admitted by the gate. Its username token is spent unless
/// [`Attempt::succeeded`] is called, so only failed attempts count against a username.
#[must_use = "call succeeded() when the attempt succeeds"]
pub struct Attempt<'a> {
    gate: &'a AuthGate,
    username: String,
}

impl Attempt<'_> {
    /// The attempt succeeded: its username token goes back.
    pub fn succeeded(self) {
        lock(&self.gate.usernames).give_back(&self.username, Instant::now());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Neither the buckets nor the job queue hold an invariant a panic could break half-way:
    // keep using them rather than fail every later login.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AuthGate {
    /// A gate with `config`, starting its hashing threads; they end when the gate is dropped.
    pub fn new(config: AuthGateConfig) -> Self {
        let threads = config.hashing_concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<HashJob>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = lock(&queue).recv();
                        match job {
                            Ok(job) => job(),
                            Err(mpsc::RecvError) => break,
                        }
                    }
                });
            if let Err(error) = spawned {
                // Fewer threads only means slower logins; with none, every job fails to
                // queue and the request gets a 500 rather than waiting forever.
                tracing::error!(%error, "cannot start a password-hashing thread");
            }
        }
        Self {
            addresses: Mutex::new(Buckets::new(config.per_address, config.tracked_keys_max)),
            usernames: Mutex::new(Buckets::new(config.per_username, config.tracked_keys_max)),
            hashing: Arc::new(Semaphore::new(threads)),
            hashing_wait: config.hashing_wait,
            jobs,
        }
    }

    /// Charges the client's address (when known: a router served without connection info
    /// has none).
    pub fn admit_address(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        match client {
            Some(address) => lock(&self.addresses)
                .take(&client_key(address), Instant::now())
                .map_err(rate_limited),
            None => Ok(()),
        }
    }

    /// Reserves a token of `username` for one attempt.
    pub fn admit_username(&self, username: &str) -> Result<Attempt<'_>, ApiError> {
        let username = username.to_owned();
        lock(&self.usernames)
            .take(&username, Instant::now())
            .map_err(rate_limited)?;
        Ok(Attempt {
            gate: self,
            username,
        })
    }

    /// Runs `work` (a password hash or check) on a hashing thread. Waiting for a free one
    /// is bounded: a request that cannot get one in time is refused with 429 rather than
    /// queueing without end behind an attack. The work runs to its end even if the request
    /// is dropped meanwhile, and keeps its thread's permit until then.
    pub async fn hash<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit: OwnedSemaphorePermit = match tokio::time::timeout(
            self.hashing_wait,
            Arc::clone(&self.hashing).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return Err(ApiError::internal(closed)),
            Err(_) => return Err(rate_limited(self.hashing_wait)),
        };
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _permit = permit;
                // The requester may be gone; then there is nobody to tell.
                let _ = done.send(work());
            }))
            .map_err(|_| ApiError::internal("no password-hashing thread is running"))?;
        result.await.map_err(ApiError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE_PER_MINUTE: Rate = Rate {
        burst: 3,
        per_minute: 3,
    };

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut buckets = Buckets::new(THREE_PER_MINUTE, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take(&"k", t0), Ok(()));
        }
        let wait = buckets.take(&"k", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "one token per 20 s");
        assert!(buckets.take(&"k", t0 + Duration::from_secs(19)).is_err());
        assert_eq!(buckets.take(&"k", t0 + Duration::from_secs(20)), Ok(()));
        assert_eq!(buckets.take(&"other", t0), Ok(()), "keys are independent");
    }

    #[test]
    fn a_returned_token_can_be_spent_again() {
        let mut buckets = Buckets::new(THREE_PER_MINUTE, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            buckets.take(&"k", t0).unwrap();
        }
        buckets.give_back(&"k", t0);
        assert_eq!(buckets.take(&"k", t0), Ok(()));
        assert!(buckets.take(&"k", t0).is_err());
    }

    #[test]
    fn a_zero_burst_turns_the_limit_off() {
        let mut buckets = Buckets::new(
            Rate {
                burst: 0,
                per_minute: 0,
            },
            1,
        );
        let t0 = Instant::now();
        for i in 0..100 {
            assert_eq!(buckets.take(&i, t0), Ok(()));
        }
        assert_eq!(buckets.len(), 0);
    }

    #[test]
    fn cycling_through_keys_never_grows_the_map_past_its_bound() {
        let mut buckets = Buckets::new(THREE_PER_MINUTE, 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            buckets
                .take(&i, t0 + Duration::from_millis(u64::from(i)))
                .unwrap();
            assert!(buckets.len() <= 100);
        }
        // The newest keys are still remembered: the oldest were forgotten first.
        let now = t0 + Duration::from_millis(10_000);
        buckets.take(&9_999, now).unwrap();
        buckets.take(&9_999, now).unwrap();
        assert!(buckets.take(&9_999, now).is_err());
    }

    #[test]
    fn refilled_buckets_are_forgotten_before_busy_ones() {
        let mut buckets = Buckets::new(THREE_PER_MINUTE, 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            buckets.take(&"busy", t0 + Duration::from_secs(60)).unwrap();
        }
        buckets.take(&"idle", t0).unwrap();
        // A minute later "idle" is full again and is the one to go.
        buckets.take(&"new", t0 + Duration::from_secs(60)).unwrap();
        assert!(buckets.take(&"busy", t0 + Duration::from_secs(60)).is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn refusals_carry_whole_seconds() {
        let ApiError::RateLimited { retry_after_secs } = rate_limited(Duration::from_millis(100))
        else {
            panic!("not a rate limit");
        };
        assert_eq!(retry_after_secs, 1);
        let ApiError::RateLimited { retry_after_secs } = rate_limited(Duration::from_millis(2_100))
        else {
            panic!("not a rate limit");
        };
        assert_eq!(retry_after_secs, 3);
    }

    #[tokio::test]
    async fn hashing_is_bounded_and_waiting_for_it_is_too() {
        let gate = Arc::new(AuthGate::new(AuthGateConfig {
            per_address: THREE_PER_MINUTE,
            per_username: THREE_PER_MINUTE,
            tracked_keys_max: 10,
            hashing_concurrency: 2,
            hashing_wait: Duration::from_millis(50),
        }));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut busy = Vec::new();
        for _ in 0..2 {
            let (gate, released, running) = (
                Arc::clone(&gate),
                Arc::clone(&released),
                Arc::clone(&running),
            );
            busy.push(tokio::spawn(async move {
                gate.hash(move || {
                    running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    lock(&released).recv().unwrap();
                    std::thread::current().name().map(str::to_owned)
                })
                .await
            }));
        }
        while running.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = gate.hash(|| ()).await.unwrap_err();
        assert!(matches!(refused, ApiError::RateLimited { .. }), "{refused}");
        release.send(()).unwrap();
        release.send(()).unwrap();
        for job in busy {
            let thread = job.await.unwrap().unwrap().unwrap();
            assert!(thread.starts_with("argon2-"), "{thread}");
        }
        assert_eq!(gate.hash(|| 42).await.unwrap(), 42);
    }

    #[test]
    fn only_failed_attempts_count_against_a_username() {
        let gate = AuthGate::new(AuthGateConfig {
            per_address: Rate {
                burst: 0,
                per_minute: 0,
            },
            per_username: THREE_PER_MINUTE,
            tracked_keys_max: 10,
            hashing_concurrency: 1,
            hashing_wait: Duration::from_millis(1),
        });
        for _ in 0..10 {
            gate.admit_username("alice").unwrap().succeeded();
        }
        for _ in 0..3 {
            drop(gate.admit_username("alice").unwrap());
        }
        assert!(matches!(
            gate.admit_username("alice"),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(gate.admit_username("bob").is_ok());
        assert!(gate.admit_address(None).is_ok());
    }
}
