//! Client-side pacing per AWS API at the account's rate quotas, with adaptive slow-down on throttling and call statistics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Default request-rate quotas (requests per second, per account and region) of the APIs provision calls.
pub const DEFAULT_RATES: &[(&str, f64)] = &[
    ("CreateThing", 100.0),
    ("DescribeThing", 350.0),
    ("ListThings", 10.0),
    ("UpdateThing", 100.0),
    ("DeleteThing", 100.0),
    ("AttachThingPrincipal", 100.0),
    ("DetachThingPrincipal", 100.0),
    ("ListThingPrincipals", 10.0),
    ("CreateKeysAndCertificate", 10.0),
    ("CreateCertificateFromCsr", 15.0),
    ("DescribeCertificate", 10.0),
    ("UpdateCertificate", 10.0),
    ("DeleteCertificate", 10.0),
    ("ListCertificates", 10.0),
    ("CreatePolicy", 10.0),
    ("GetPolicy", 10.0),
    ("DeletePolicy", 10.0),
    ("CreatePolicyVersion", 10.0),
    ("DeletePolicyVersion", 10.0),
    ("ListPolicyVersions", 10.0),
    ("ListPolicies", 10.0),
    ("AttachPolicy", 15.0),
    ("DetachPolicy", 15.0),
    ("ListAttachedPolicies", 15.0),
    ("ListTargetsForPolicy", 10.0),
    ("DescribeEndpoint", 10.0),
    ("GetCallerIdentity", 10.0),
    // IoT domain configurations (assumed: not in the published quota table).
    ("CreateDomainConfiguration", 1.0),
    ("DescribeDomainConfiguration", 10.0),
    ("UpdateDomainConfiguration", 1.0),
    ("DeleteDomainConfiguration", 1.0),
    // ACM: RequestCertificate 5 and DescribeCertificate 10 are documented; the others assumed.
    ("acm:RequestCertificate", 5.0),
    ("acm:DescribeCertificate", 10.0),
    ("acm:ListCertificates", 10.0),
    ("acm:ListTagsForCertificate", 10.0),
    ("acm:AddTagsToCertificate", 10.0),
    ("acm:DeleteCertificate", 10.0),
    // Route 53: 5 requests per second for the whole account, every API together: one lane.
    (ROUTE53_LANE, 5.0),
];

/// The one lane every Route 53 API shares (`route53:<Api>` calls are paced here).
pub const ROUTE53_LANE: &str = "route53:*";

/// The lane an API is paced in: its own, except Route 53's shared one.
pub fn lane_of(api: &'static str) -> &'static str {
    if api.starts_with("route53:") {
        ROUTE53_LANE
    } else {
        api
    }
}

/// Rate for APIs missing from the table.
const FALLBACK_RATE: f64 = 5.0;
/// The lowest fraction of the quota the adaptive slow-down goes to.
const MIN_FACTOR: f64 = 0.1;

struct Lane {
    rate: f64,
    /// Adaptive fraction of `rate` in use (1.0 until AWS throttles).
    factor: f64,
    next_free: Instant,
    calls: u64,
    throttled: u64,
}

/// Paces calls so each API stays at its quota, all APIs running concurrently.
pub struct Limiter {
    lanes: Mutex<HashMap<&'static str, Lane>>,
    rates: HashMap<String, f64>,
    started: Instant,
}

/// Calls made per API and what they imply.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallStats {
    pub apis: BTreeMap<String, ApiStats>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApiStats {
    pub calls: u64,
    pub throttled: u64,
    /// Requests per second this API was paced at (its quota).
    pub rate: f64,
}

impl CallStats {
    pub fn total_calls(&self) -> u64 {
        self.apis.values().map(|a| a.calls).sum()
    }
    pub fn total_throttled(&self) -> u64 {
        self.apis.values().map(|a| a.throttled).sum()
    }
    /// The best possible duration for these calls at these quotas: the largest, over all APIs,
    /// of calls / rate.
    pub fn floor(&self) -> Duration {
        let secs = self
            .apis
            .values()
            .map(|a| (a.calls - a.throttled) as f64 / a.rate)
            .fold(0.0, f64::max);
        Duration::from_secs_f64(secs)
    }
}

impl Limiter {
    /// A limiter at the default quotas, scaled by `scale`, with per-API overrides.
    pub fn new(scale: f64, overrides: &BTreeMap<String, f64>) -> Self {
        let mut rates: HashMap<String, f64> = DEFAULT_RATES
            .iter()
            .map(|(k, v)| (k.to_string(), v * scale))
            .collect();
        for (k, v) in overrides {
            rates.insert(k.clone(), *v);
        }
        Self {
            lanes: Mutex::new(HashMap::new()),
            rates,
            started: Instant::now(),
        }
    }

    fn rate_of(&self, api: &str) -> f64 {
        self.rates
            .get(api)
            .copied()
            .unwrap_or(FALLBACK_RATE)
            .max(0.01)
    }

    /// Wait for this API's next slot. Slots are reserved in order, so concurrent callers
    /// are spread evenly at the rate instead of waking together.
    pub async fn acquire(&self, api: &'static str) {
        let api = lane_of(api);
        let slot = {
            let mut lanes = self.lanes.lock().expect("limiter lock");
            let now = Instant::now();
            let rate = self.rate_of(api);
            let lane = lanes.entry(api).or_insert_with(|| Lane {
                rate,
                factor: 1.0,
                next_free: now,
                calls: 0,
                throttled: 0,
            });
            lane.calls += 1;
            let slot = lane.next_free.max(now);
            lane.next_free = slot + Duration::from_secs_f64(1.0 / (lane.rate * lane.factor));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// AWS throttled this API: slow it down.
    pub fn throttled(&self, api: &'static str) {
        let api = lane_of(api);
        let mut lanes = self.lanes.lock().expect("limiter lock");
        if let Some(lane) = lanes.get_mut(api) {
            lane.throttled += 1;
            lane.factor = (lane.factor * 0.7).max(MIN_FACTOR);
        }
    }

    /// A call succeeded: creep back toward the full quota.
    pub fn succeeded(&self, api: &'static str) {
        let api = lane_of(api);
        let mut lanes = self.lanes.lock().expect("limiter lock");
        if let Some(lane) = lanes.get_mut(api) {
            if lane.factor < 1.0 {
                lane.factor = (lane.factor + 0.02).min(1.0);
            }
        }
    }

    pub fn stats(&self) -> CallStats {
        let lanes = self.lanes.lock().expect("limiter lock");
        CallStats {
            apis: lanes
                .iter()
                .map(|(k, l)| {
                    (
                        k.to_string(),
                        ApiStats {
                            calls: l.calls,
                            throttled: l.throttled,
                            rate: l.rate,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Correctness of pacing (never faster than the quota), not a performance assertion.
    #[tokio::test]
    async fn never_exceeds_the_rate() {
        let mut o = BTreeMap::new();
        o.insert("A".to_string(), 100.0);
        let l = Limiter::new(1.0, &o);
        let start = Instant::now();
        let calls = (0..21).map(|_| l.acquire("A"));
        futures::future::join_all(calls).await;
        // 21 calls at 100/s, even when issued at once: the first immediate, the last at 200 ms.
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.199, "took {took}");
        assert_eq!(l.stats().apis["A"].calls, 21);
    }

    #[tokio::test]
    async fn throttling_slows_the_lane() {
        let mut o = BTreeMap::new();
        o.insert("A".to_string(), 100.0);
        let l = Limiter::new(1.0, &o);
        l.acquire("A").await;
        l.throttled("A");
        let start = Instant::now();
        l.acquire("A").await;
        l.acquire("A").await;
        // After throttling the interval is 1/(100*0.7) s: two more calls take at least 14 ms.
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.014, "took {took}");
        assert_eq!(l.stats().apis["A"].throttled, 1);
    }

    // Route 53's quota is per account, all APIs together: they share one lane.
    #[tokio::test]
    async fn route53_apis_share_one_lane() {
        let mut o = BTreeMap::new();
        o.insert(ROUTE53_LANE.to_string(), 100.0);
        let l = Limiter::new(1.0, &o);
        let start = Instant::now();
        let calls = (0..21).map(|i| {
            l.acquire(if i % 2 == 0 {
                "route53:ChangeResourceRecordSets"
            } else {
                "route53:ListResourceRecordSets"
            })
        });
        futures::future::join_all(calls).await;
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.199, "took {took}");
        assert_eq!(l.stats().apis[ROUTE53_LANE].calls, 21);
        assert_eq!(l.stats().apis.len(), 1);
    }

    #[test]
    fn floor_is_the_slowest_api() {
        let mut s = CallStats::default();
        s.apis.insert(
            "A".into(),
            ApiStats {
                calls: 100,
                throttled: 0,
                rate: 10.0,
            },
        );
        s.apis.insert(
            "B".into(),
            ApiStats {
                calls: 100,
                throttled: 0,
                rate: 100.0,
            },
        );
        assert_eq!(s.floor(), Duration::from_secs(10));
    }
}
