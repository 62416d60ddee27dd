//! Rate limits of sign-ins and sign-ups, per project, after its settings:
//! per client address (password sign-ins and refreshes; new users, which
//! anonymous sign-ins make too) and per account and address (password
//! sign-ins for one email). The account limit is keyed by address too, so
//! that an attacker's tries never lock the owner out of its own address;
//! guessing from many addresses is bounded by the per-address limit of
//! each and by the cost of a hash. Mail (one-time codes, links) is limited
//! per client address and per recipient, so that nobody can bomb an inbox
//! through wok; both count a request whether the recipient has a user or
//! not, so a refusal tells nothing about who has an account. Codes of a
//! second factor are limited per factor (whoever tries them holds a
//! session of its user already), on top of the per-address limit.
//!
//! Each limiter remembers the keys it saw (addresses, emails): at most
//! [`MAX_KEYS`] each; a limiter that is full forgets the keys that are
//! back to their full allowance, and refuses new ones while it stays
//! full, so memory stays bounded whatever a client sends.
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keys a limiter remembers at most.
pub const MAX_KEYS: usize = 100_000;
/// Checks between two sweeps of the keys back to full allowance.
const SWEEP_EVERY: u64 = 4096;

/// How many of each a project allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Password sign-ins and refreshes per address, a minute.
    pub sign_ins_per_address_per_minute: u32,
    /// Password sign-ins per account and address, an hour.
    pub sign_ins_per_account_per_hour: u32,
    /// New users (sign-ups, anonymous sign-ins) per address, an hour.
    pub new_users_per_address_per_hour: u32,
    /// Requests that mail a code, per client address, an hour.
    pub emails_per_address_per_hour: u32,
    /// Requests that mail a code, per recipient, an hour.
    pub emails_per_recipient_per_hour: u32,
    /// Codes tried for one second factor, an hour.
    pub mfa_verifications_per_factor_per_hour: u32,
    /// Sign-ins with a provider begun per address, an hour.
    pub provider_sign_ins_per_address_per_hour: u32,
}

struct Keyed<K: Hash + Eq + Clone> {
    limiter: RateLimiter<K, HashMapStateStore<K>, DefaultClock>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(per: Duration, count: u32) -> Self {
        let count = NonZeroU32::new(count.max(1)).expect("at least one");
        let quota = Quota::with_period(per / count.get())
            .expect("a period above zero")
            .allow_burst(count);
        Self {
            limiter: RateLimiter::hashmap(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// One more for `key`, or how long to wait.
    fn check(&self, key: K) -> Result<(), Duration> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
            || self.limiter.len() >= MAX_KEYS
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        if self.limiter.len() >= MAX_KEYS {
            return Err(Duration::from_secs(60));
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The limiters of one project.
pub(crate) struct Limits {
    pub quotas: Quotas,
    sign_ins: Keyed<IpAddr>,
    accounts: Keyed<(String, IpAddr)>,
    new_users: Keyed<IpAddr>,
    emails: Keyed<IpAddr>,
    recipients: Keyed<String>,
    factors: Keyed<String>,
    provider_sign_ins: Keyed<IpAddr>,
}

impl Limits {
    pub fn new(quotas: Quotas) -> Self {
        Self {
            quotas,
            sign_ins: Keyed::new(
                Duration::from_secs(60),
                quotas.sign_ins_per_address_per_minute,
            ),
            accounts: Keyed::new(
                Duration::from_secs(3600),
                quotas.sign_ins_per_account_per_hour,
            ),
            new_users: Keyed::new(
                Duration::from_secs(3600),
                quotas.new_users_per_address_per_hour,
            ),
            emails: Keyed::new(
                Duration::from_secs(3600),
                quotas.emails_per_address_per_hour,
            ),
            recipients: Keyed::new(
                Duration::from_secs(3600),
                quotas.emails_per_recipient_per_hour,
            ),
            factors: Keyed::new(
                Duration::from_secs(3600),
                quotas.mfa_verifications_per_factor_per_hour,
            ),
            provider_sign_ins: Keyed::new(
                Duration::from_secs(3600),
                quotas.provider_sign_ins_per_address_per_hour,
            ),
        }
    }

    /// A password sign-in for `email` from `address`.
    pub fn sign_in(&self, email: &str, address: IpAddr) -> Result<(), Duration> {
        self.sign_ins.check(address)?;
        self.accounts.check((email.to_owned(), address))
    }

    /// A refresh from `address`.
    pub fn refresh(&self, address: IpAddr) -> Result<(), Duration> {
        self.sign_ins.check(address)
    }

    /// A new user from `address`.
    pub fn new_user(&self, address: IpAddr) -> Result<(), Duration> {
        self.new_users.check(address)
    }

    /// A code tried for the second factor `factor_id`, from `address`.
    pub fn mfa_verify(&self, factor_id: &str, address: IpAddr) -> Result<(), Duration> {
        self.sign_ins.check(address)?;
        self.factors.check(factor_id.to_owned())
    }

    /// A sign-in with a provider begun from `address`.
    pub fn provider_sign_in(&self, address: IpAddr) -> Result<(), Duration> {
        self.provider_sign_ins.check(address)
    }

    /// A request that mails `recipient` a code, from `address`.
    pub fn email(&self, recipient: &str, address: IpAddr) -> Result<(), Duration> {
        self.emails.check(address)?;
        self.recipients.check(recipient.to_owned())
    }
}
