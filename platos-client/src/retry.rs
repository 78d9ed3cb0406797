//! Retry policy arithmetic (docs/wire.md §2): which answers are retried, how long
//! to wait, and what a server's `Retry-After` means. No I/O here.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method};

use crate::config::RetryConfig;

/// Statuses worth another try: rate limits and server errors.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// How an operation may be sent again (`x-platos-idempotency` in the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Carries an auto-minted `idempotency-key`, reused on every try; the
    /// server de-duplicates, so retries are safe.
    Key,
    /// Sent once: a repeat could act twice and the server does not
    /// de-duplicate it.
    Once,
    /// Safe to repeat by its nature (GET, PUT, DELETE, and the like).
    Natural,
}

impl Idempotency {
    /// The rule of a request with no spec entry (`bgo().raw`): by method.
    pub(crate) fn of_method(method: &Method) -> Self {
        match *method {
            Method::POST | Method::PATCH => Idempotency::Key,
            _ => Idempotency::Natural,
        }
    }
}

/// Whether a request may be sent again without risking a duplicate effect:
/// by nature, or under an idempotency key the server de-duplicates.
pub(crate) fn is_replay_safe(rule: Idempotency, has_idempotency_key: bool) -> bool {
    match rule {
        Idempotency::Natural => true,
        Idempotency::Key | Idempotency::Once => has_idempotency_key,
    }
}

/// Why a call that failed retryably is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Sending it again could act twice (a POST or PATCH without a key).
    NotReplaySafe,
    /// The configured retries are used up.
    RetriesUsed,
    /// The server asked for a longer wait than the client will make: the
    /// caller is told at once instead of being held.
    RetryAfterBeyondCap,
    /// The next wait would take the call past its total wait budget.
    WaitBudgetUsed,
    /// The next wait would end at or after the call's timeout: the try
    /// could not run.
    CallTimeout,
}

/// The wait before the next try, if it leaves the call time to make it:
/// `remaining` is what is left of the call's timeout (`None`: no limit).
pub(crate) fn within(wait: Duration, remaining: Option<Duration>) -> Result<Duration, Stop> {
    match remaining {
        Some(left) if wait >= left => Err(Stop::CallTimeout),
        _ => Ok(wait),
    }
}

/// The time limit of the next try: the try's own, cut to what is left of
/// the call's.
pub(crate) fn try_timeout(per_try: Duration, remaining: Option<Duration>) -> Duration {
    remaining.map_or(per_try, |left| per_try.min(left))
}

/// The wait before the next try of a call whose last try failed retryably,
/// or why there is none. `retries` tries were retries so far, `waited` is
/// how long the call already waited between them, `retry_after` what the
/// server asked for.
pub(crate) fn plan(
    config: &RetryConfig,
    retries: u32,
    waited: Duration,
    retry_after: Option<Duration>,
    replay_safe: bool,
) -> Result<Duration, Stop> {
    if !replay_safe {
        return Err(Stop::NotReplaySafe);
    }
    if retries >= config.max_retries {
        return Err(Stop::RetriesUsed);
    }
    let wait = match retry_after {
        Some(asked) if asked > config.max_retry_after => return Err(Stop::RetryAfterBeyondCap),
        Some(asked) => asked,
        None => backoff(config, retries),
    };
    if waited.saturating_add(wait) > config.max_total_wait {
        return Err(Stop::WaitBudgetUsed);
    }
    Ok(wait)
}

/// The delay before retry `n` (0-based): `min(base · 2^n, max)` times a
/// uniform factor in `[1 - jitter, 1 + jitter]`.
pub(crate) fn backoff(config: &RetryConfig, n: u32) -> Duration {
    jittered(
        exponential(config.base_delay, config.max_delay, n),
        config.jitter,
    )
}

/// `min(base · 2^n, max)` without overflow.
pub(crate) fn exponential(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 2u32.checked_pow(n).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

pub(crate) fn jittered(delay: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 {
        return delay;
    }
    let factor = (1.0 - jitter) + 2.0 * jitter * unit_random();
    delay.mul_f64(factor.max(0.0))
}

/// A uniform sample of `[0, 1)` for jitter. std's `RandomState` keys are
/// seeded from the OS once per thread and change with every `new()`, so a
/// hash under fresh keys is a fresh sample: no RNG crate (and its build
/// time) for a backoff delay.
fn unit_random() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8);
    // The top 53 bits: every value a double represents exactly.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After` in either form: delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_timeout_cuts_tries_and_stops_waits_that_cannot_finish() {
        let s = Duration::from_secs;
        assert_eq!(try_timeout(s(30), None), s(30));
        assert_eq!(try_timeout(s(30), Some(s(5))), s(5));
        assert_eq!(try_timeout(s(3), Some(s(5))), s(3));
        assert_eq!(within(s(1), None), Ok(s(1)));
        assert_eq!(within(s(1), Some(s(2))), Ok(s(1)));
        assert_eq!(within(s(2), Some(s(2))), Err(Stop::CallTimeout));
        assert_eq!(
            within(Duration::ZERO, Some(Duration::ZERO)),
            Err(Stop::CallTimeout)
        );
    }

    #[test]
    fn exponential_caps() {
        let base = Duration::from_millis(250);
        let max = Duration::from_secs(10);
        assert_eq!(exponential(base, max, 0), base);
        assert_eq!(exponential(base, max, 3), Duration::from_secs(2));
        assert_eq!(exponential(base, max, 6), max);
        assert_eq!(exponential(base, max, 200), max);
    }

    #[test]
    fn jitter_stays_in_band() {
        let config = RetryConfig::default();
        for n in 0..6 {
            let nominal = exponential(config.base_delay, config.max_delay, n);
            for _ in 0..100 {
                let d = backoff(&config, n);
                assert!(
                    d >= nominal.mul_f64(0.8) && d <= nominal.mul_f64(1.2),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn unit_random_spreads_over_its_range() {
        let samples: Vec<f64> = (0..4000).map(|_| unit_random()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        // Each tenth of the range gets its share (400 expected; a fixed or
        // clustered source fails this).
        let mut bins = [0u32; 10];
        for x in &samples {
            bins[(x * 10.0) as usize] += 1;
        }
        assert!(bins.iter().all(|&n| (250..=550).contains(&n)), "{bins:?}");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        h.insert("retry-after", later.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        h.insert("retry-after", past.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn plans_stop_for_a_reason() {
        let c = RetryConfig::default().with_jitter(0.0);
        let ms = Duration::from_millis;
        assert_eq!(plan(&c, 0, ms(0), None, true), Ok(ms(250)));
        assert_eq!(plan(&c, 2, ms(750), None, true), Ok(ms(1000)));
        assert_eq!(plan(&c, 0, ms(0), None, false), Err(Stop::NotReplaySafe));
        assert_eq!(plan(&c, 3, ms(0), None, true), Err(Stop::RetriesUsed));
        let day = Duration::from_secs(86_400);
        assert_eq!(
            plan(&c, 0, ms(0), Some(day), true),
            Err(Stop::RetryAfterBeyondCap)
        );
        let s = Duration::from_secs;
        assert_eq!(plan(&c, 0, ms(0), Some(s(60)), true), Ok(s(60)));
        assert_eq!(
            plan(&c, 1, s(30), Some(s(31)), true),
            Err(Stop::WaitBudgetUsed)
        );
        assert_eq!(plan(&c, 1, s(30), Some(s(30)), true), Ok(s(30)));
    }

    #[test]
    fn replay_safety() {
        let by = |m: Method| Idempotency::of_method(&m);
        assert!(is_replay_safe(by(Method::GET), false));
        assert!(is_replay_safe(by(Method::DELETE), false));
        assert!(!is_replay_safe(by(Method::POST), false));
        assert!(is_replay_safe(by(Method::POST), true));
        assert!(!is_replay_safe(by(Method::PATCH), false));
        // `once` is sent once even though a caller's key would make it safe to
        // repeat only if the server de-duplicated: it keeps the caller's word.
        assert!(!is_replay_safe(Idempotency::Once, false));
        assert!(is_replay_safe(Idempotency::Once, true));
        assert!(is_replay_safe(Idempotency::Natural, false));
    }
}
