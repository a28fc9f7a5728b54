//! The bench's report: JSON for machines, a table for people.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub send: Latency,
    pub throughput: Throughput,
    pub delivery: Delivery,
    pub kv: Kv,
}

/// The shared store: set and get latency, and compare-and-set under contention.
#[derive(Debug, Clone, Serialize)]
pub struct Kv {
    /// `PUT /v1/kv`, unconditional; floor: a JetStream publish conditional on the
    /// subject's last sequence.
    pub set: Latency,
    /// `GET /v1/kv/{key_ix}`; floor: a JetStream read of a subject's last message.
    pub get: Latency,
    pub cas: Cas,
}

/// `agents` agents compare-and-set one key back to back.
#[derive(Debug, Clone, Serialize)]
pub struct Cas {
    pub agents: usize,
    pub successes_per_s: f64,
    pub conflicts_per_s: f64,
    /// As many tasks publishing conditionally on one subject, re-reading it when refused.
    pub raw_successes_per_s: f64,
    pub raw_conflicts_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub raw_p50_us: u64,
    pub raw_p99_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub concurrency: usize,
    pub projects: usize,
    pub sends_per_s: f64,
    pub raw_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub subscribers: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub raw_p99_us: u64,
    /// The same bytes to as many plain TCP sockets: the fan-out's own floor.
    pub raw_fanout_p50_us: u64,
    pub raw_fanout_p99_us: u64,
}

impl BenchReport {
    /// A table with each figure, its floor and the target.
    pub fn table(&self) -> String {
        let s = &self.send;
        let t = &self.throughput;
        let d = &self.delivery;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        let send_p50 = ratio(s.p50_us as f64, s.raw_p50_us as f64);
        let send_p99 = ratio(s.p99_us as f64, s.raw_p99_us as f64);
        let share = ratio(t.sends_per_s, t.raw_per_s);
        let kv = &self.kv;
        let kv_rows = format!(
            "kv set p50                   {:>9} µs   {:>9} µs   {:>5.1}x\n\
             kv set p99                   {:>9} µs   {:>9} µs   {:>5.1}x\n\
             kv get p50                   {:>9} µs   {:>9} µs   {:>5.1}x\n\
             kv get p99                   {:>9} µs   {:>9} µs   {:>5.1}x\n\
             kv cas ok ({:>2} agents, 1 key) {:>8.0} /s   {:>9.0} /s   {:>5.0}%\n\
             kv cas conflicts             {:>9.0} /s   {:>9.0} /s\n",
            kv.set.p50_us,
            kv.set.raw_p50_us,
            ratio(kv.set.p50_us as f64, kv.set.raw_p50_us as f64),
            kv.set.p99_us,
            kv.set.raw_p99_us,
            ratio(kv.set.p99_us as f64, kv.set.raw_p99_us as f64),
            kv.get.p50_us,
            kv.get.raw_p50_us,
            ratio(kv.get.p50_us as f64, kv.get.raw_p50_us as f64),
            kv.get.p99_us,
            kv.get.raw_p99_us,
            ratio(kv.get.p99_us as f64, kv.get.raw_p99_us as f64),
            kv.cas.agents,
            kv.cas.successes_per_s,
            kv.cas.raw_successes_per_s,
            ratio(kv.cas.successes_per_s, kv.cas.raw_successes_per_s) * 100.0,
            kv.cas.conflicts_per_s,
            kv.cas.raw_conflicts_per_s,
        );
        let table = format!(
            "figure                         nexysync        raw floor   ratio    target\n\
             send p50                     {:>9} µs   {:>9} µs   {:>5.1}x   ≤ 5x   {}\n\
             send p99                     {:>9} µs   {:>9} µs   {:>5.1}x   ≤ 10x  {}\n\
             throughput ({:>3} senders)   {:>9.0} /s   {:>9.0} /s   {:>5.0}%   ≥ 25%  {}\n\
             delivery p50 ({:>4} subs)    {:>9} µs   {:>9} µs (tcp fan-out)  < 5 ms {}\n\
             delivery p99 ({:>4} subs)    {:>9} µs   {:>9} µs            < 25 ms {}\n\
             tcp fan-out p99                             {:>9} µs\n",
            s.p50_us,
            s.raw_p50_us,
            send_p50,
            verdict(send_p50 <= 5.0),
            s.p99_us,
            s.raw_p99_us,
            send_p99,
            verdict(send_p99 <= 10.0),
            t.concurrency,
            t.sends_per_s,
            t.raw_per_s,
            share * 100.0,
            verdict(share >= 0.25),
            d.subscribers,
            d.p50_us,
            d.raw_fanout_p50_us,
            verdict(d.p50_us < 5_000),
            d.subscribers,
            d.p99_us,
            d.raw_p99_us,
            verdict(d.p99_us < 25_000),
            d.raw_fanout_p99_us,
        );
        table + &kv_rows
    }
}
