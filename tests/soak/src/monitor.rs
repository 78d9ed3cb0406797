//! Resident memory and open file descriptors of this process over the run,
//! and the verdict on whether they stayed flat.
//!
//! Read from `/proc/self` (Linux): the client process alone, the server runs
//! in a child process so its in-memory store does not count.

use std::time::Duration;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: u64,
}

/// This process now, if `/proc` can tell.
pub fn read(at: Duration) -> Option<Sample> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(Sample { at, rss_kib, fds })
}

/// Memory may settle during the first quarter (allocator arenas, pools,
/// buffers reaching their working size); after that it must stay within
/// this share of the second quarter's median, plus [`RSS_SLACK_KIB`].
const RSS_GROWTH: f64 = 0.20;
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Descriptors in flight vary with the connections open at the moment.
const FD_SLACK: u64 = 16;

/// What went wrong with the samples, if anything. `baseline_fds` was read
/// before the client existed, `end_fds` after it was dropped and its
/// connections closed.
pub fn verdict(samples: &[Sample], baseline_fds: u64, end_fds: u64) -> Vec<String> {
    let mut out = Vec::new();
    if samples.len() < 8 {
        out.push(format!("only {} samples: too few to judge", samples.len()));
        return out;
    }
    let q = samples.len() / 4;
    let (second, last) = (&samples[q..2 * q], &samples[samples.len() - q..]);
    let median = |s: &[Sample]| {
        let mut v: Vec<u64> = s.iter().map(|x| x.rss_kib).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (early, late) = (median(second), median(last));
    let allowed = (early as f64 * (1.0 + RSS_GROWTH)) as u64 + RSS_SLACK_KIB;
    if late > allowed {
        out.push(format!(
            "RSS grew: median {late} KiB in the last quarter against {early} KiB in the \
             second (allowed {allowed} KiB)"
        ));
    }
    let max_fds = |s: &[Sample]| s.iter().map(|x| x.fds).max().unwrap_or(0);
    let (early, late) = (max_fds(second), max_fds(last));
    if late > early + FD_SLACK {
        out.push(format!(
            "open descriptors grew: at most {late} in the last quarter against {early} in \
             the second"
        ));
    }
    if end_fds > baseline_fds {
        out.push(format!(
            "{} descriptor(s) still open after the client was dropped ({end_fds} against \
             {baseline_fds} before it was built)",
            end_fds - baseline_fds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: impl Fn(u64) -> u64, fds: impl Fn(u64) -> u64) -> Vec<Sample> {
        (0..40)
            .map(|i| Sample {
                at: Duration::from_secs(i),
                rss_kib: rss(i),
                fds: fds(i),
            })
            .collect()
    }

    #[test]
    fn this_process_can_be_read() {
        let s = read(Duration::ZERO).expect("/proc/self");
        assert!(s.rss_kib > 0 && s.fds >= 3, "{s:?}");
    }

    #[test]
    fn flat_series_pass_and_warm_up_is_forgiven() {
        // Grows in the first quarter, then flat with noise.
        let s = series(
            |i| {
                if i < 10 {
                    10_000 + i * 3_000
                } else {
                    40_000 + (i % 3) * 500
                }
            },
            |i| 20 + i % 5,
        );
        assert!(verdict(&s, 10, 10).is_empty(), "{:?}", verdict(&s, 10, 10));
    }

    #[test]
    fn steady_growth_and_leaked_descriptors_are_caught() {
        let s = series(|i| 40_000 + i * 2_000, |i| 20 + i);
        let v = verdict(&s, 10, 12);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].starts_with("RSS grew"));
        assert!(v[1].starts_with("open descriptors grew"));
        assert!(v[2].contains("2 descriptor(s) still open"));
    }
}
