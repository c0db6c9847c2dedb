//! Figures: one sample per variant per round, medians over rounds, ratios
//! to `h2-per-stream` taken within each round.

use std::fmt::Write as _;

use serde::Serialize;

use crate::variants::Variant;

/// UDP datagrams and bytes per call on the client's connection, both
/// directions, during a load phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct WireStats {
    pub(crate) c2s_datagrams: f64,
    pub(crate) s2c_datagrams: f64,
    pub(crate) c2s_bytes: f64,
    pub(crate) s2c_bytes: f64,
}

impl WireStats {
    pub(crate) fn between(a: &quinn::ConnectionStats, b: &quinn::ConnectionStats, n: u64) -> Self {
        let per = |x: u64, y: u64| x.saturating_sub(y) as f64 / n as f64;
        Self {
            c2s_datagrams: per(b.udp_tx.datagrams, a.udp_tx.datagrams),
            s2c_datagrams: per(b.udp_rx.datagrams, a.udp_rx.datagrams),
            c2s_bytes: per(b.udp_tx.bytes, a.udp_tx.bytes),
            s2c_bytes: per(b.udp_rx.bytes, a.udp_rx.bytes),
        }
    }
}

/// One variant in one round.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    /// Calls counted in the load phase.
    pub(crate) calls: u64,
    pub(crate) calls_per_s: f64,
    /// CPU time per call of the client gateway's thread.
    pub(crate) cpu_client_us: f64,
    /// CPU time per call of the server gateway's thread.
    pub(crate) cpu_server_us: f64,
    pub(crate) cpu_sum_us: f64,
    /// CPU time per call of the process's other threads (the coordinator);
    /// near 0 when the two gateway threads did all the work.
    pub(crate) cpu_other_us: f64,
    /// Share of the load phase the client's / server's thread was on a
    /// CPU (1.0: never waiting).
    pub(crate) busy_client: f64,
    pub(crate) busy_server: f64,
    /// One caller, every call timed.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) latency_calls: u64,
    /// CPU time per call in the one-caller phase: nothing to batch with.
    pub(crate) cpu_one_caller_client_us: f64,
    pub(crate) cpu_one_caller_server_us: f64,
    /// Packets the client's connection declared lost in the load phase and
    /// in the one-caller phase (its warm-up included).
    pub(crate) lost_packets_load: u64,
    pub(crate) lost_packets_one_caller: u64,
    pub(crate) wire: WireStats,
}

/// The run's settings and conditions.
#[derive(Debug, Serialize)]
pub(crate) struct Run {
    pub(crate) started_unix_s: u64,
    pub(crate) command: String,
    pub(crate) callers: usize,
    pub(crate) rounds: usize,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) latency_duration_s: f64,
    pub(crate) cpu_clock: &'static str,
    pub(crate) loadavg_start: String,
    pub(crate) loadavg_end: String,
    pub(crate) variants: Vec<&'static str>,
    /// Prefix + today's stream header of one `h2-per-stream` call (the
    /// HTTP/2 preface, SETTINGS and HEADERS come after it).
    pub(crate) h2_stream_header_bytes: usize,
    /// The whole request of one `native` call (prefix + head).
    pub(crate) native_request_bytes: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct Figures {
    pub(crate) calls_per_s: f64,
    pub(crate) cpu_client_us: f64,
    pub(crate) cpu_server_us: f64,
    pub(crate) cpu_sum_us: f64,
    pub(crate) cpu_other_us: f64,
    pub(crate) busy_client: f64,
    pub(crate) busy_server: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) cpu_one_caller_client_us: f64,
    pub(crate) cpu_one_caller_server_us: f64,
    pub(crate) cpu_one_caller_sum_us: f64,
    pub(crate) wire: WireStats,
}

/// Medians of per-round ratios to `h2-per-stream`.
#[derive(Debug, Serialize)]
pub(crate) struct Ratios {
    pub(crate) calls_per_s: f64,
    pub(crate) cpu_client: f64,
    pub(crate) cpu_server: f64,
    pub(crate) cpu_sum: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) cpu_one_caller_sum: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct VariantReport {
    pub(crate) name: &'static str,
    pub(crate) median: Figures,
    pub(crate) ratio_to_h2_per_stream: Option<Ratios>,
    pub(crate) rounds: Vec<Sample>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    pub(crate) run: &'a Run,
    pub(crate) variants: Vec<VariantReport>,
}

/// Nearest-rank percentile of sorted nanoseconds, in µs.
pub(crate) fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_ns.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1e3
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if !xs.len().is_multiple_of(2) {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// `rounds[r][i]` is `variants[i]` in round `r`.
pub(crate) fn build<'a>(run: &'a Run, variants: &[Variant], rounds: &[Vec<Sample>]) -> Report<'a> {
    let base = variants.iter().position(|&v| v == Variant::H2PerStream);
    let variants = variants
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let samples: Vec<Sample> = rounds.iter().filter_map(|r| r.get(i).cloned()).collect();
            let med = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
            let ratio = |f: fn(&Sample) -> f64| -> Option<f64> {
                let b = base?;
                let rs: Vec<f64> = rounds
                    .iter()
                    .filter_map(|r| Some(f(r.get(i)?) / f(r.get(b)?)))
                    .collect();
                Some(median(rs))
            };
            let ratios = base.and_then(|_| {
                Some(Ratios {
                    calls_per_s: ratio(|s| s.calls_per_s)?,
                    cpu_client: ratio(|s| s.cpu_client_us)?,
                    cpu_server: ratio(|s| s.cpu_server_us)?,
                    cpu_sum: ratio(|s| s.cpu_sum_us)?,
                    p50: ratio(|s| s.p50_us)?,
                    p99: ratio(|s| s.p99_us)?,
                    cpu_one_caller_sum: ratio(|s| {
                        s.cpu_one_caller_client_us + s.cpu_one_caller_server_us
                    })?,
                })
            });
            VariantReport {
                name: v.name(),
                median: Figures {
                    calls_per_s: med(|s| s.calls_per_s),
                    cpu_client_us: med(|s| s.cpu_client_us),
                    cpu_server_us: med(|s| s.cpu_server_us),
                    cpu_sum_us: med(|s| s.cpu_sum_us),
                    cpu_other_us: med(|s| s.cpu_other_us),
                    busy_client: med(|s| s.busy_client),
                    busy_server: med(|s| s.busy_server),
                    p50_us: med(|s| s.p50_us),
                    p99_us: med(|s| s.p99_us),
                    cpu_one_caller_client_us: med(|s| s.cpu_one_caller_client_us),
                    cpu_one_caller_server_us: med(|s| s.cpu_one_caller_server_us),
                    cpu_one_caller_sum_us: med(|s| {
                        s.cpu_one_caller_client_us + s.cpu_one_caller_server_us
                    }),
                    wire: WireStats {
                        c2s_datagrams: med(|s| s.wire.c2s_datagrams),
                        s2c_datagrams: med(|s| s.wire.s2c_datagrams),
                        c2s_bytes: med(|s| s.wire.c2s_bytes),
                        s2c_bytes: med(|s| s.wire.s2c_bytes),
                    },
                },
                ratio_to_h2_per_stream: ratios,
                rounds: samples,
            }
        })
        .collect();
    Report { run, variants }
}

/// A number with thousands separators, no decimals.
fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

/// The progress line of one sample.
pub(crate) fn one_line(s: &Sample) -> String {
    format!(
        "{:>9} calls/s  cpu/call {:6.1} + {:6.1} = {:6.1} µs  busy {:3.0}% {:3.0}%  p50 {:6.1} µs  p99 {:6.1} µs",
        thousands(s.calls_per_s),
        s.cpu_client_us,
        s.cpu_server_us,
        s.cpu_sum_us,
        s.busy_client * 100.0,
        s.busy_server * 100.0,
        s.p50_us,
        s.p99_us
    )
}

/// The Markdown tables of a report.
pub(crate) fn table(run: &Run, report: &Report<'_>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} callers, {} rounds of {:.1} s per variant (+{:.1} s warm-up), latency phase {:.1} s with 1 caller; load average {} at start, {} at end; CPU clock {}",
        run.callers,
        run.rounds,
        run.duration_s,
        run.warmup_s,
        run.latency_duration_s,
        run.loadavg_start,
        run.loadavg_end,
        run.cpu_clock
    );
    let _ = writeln!(
        t,
        "Request bytes: h2-per-stream stream header {} (then the HTTP/2 preface, SETTINGS, HEADERS); native request {} in all",
        run.h2_stream_header_bytes, run.native_request_bytes
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| variant | calls/s | x h2 | CPU µs/call client | server | sum | x h2 | p50 µs | x h2 | p99 µs | x h2 |"
    );
    let _ = writeln!(
        t,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for v in &report.variants {
        let m = &v.median;
        let r = v.ratio_to_h2_per_stream.as_ref();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {} |",
            v.name,
            thousands(m.calls_per_s),
            ratio(r.map(|r| r.calls_per_s)),
            m.cpu_client_us,
            m.cpu_server_us,
            m.cpu_sum_us,
            ratio(r.map(|r| r.cpu_sum)),
            m.p50_us,
            ratio(r.map(|r| r.p50)),
            m.p99_us,
            ratio(r.map(|r| r.p99)),
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| variant | 1-caller CPU µs/call client | server | sum | x h2 | UDP datagrams/call c→s | s→c | UDP bytes/call c→s | s→c | busy client | server | other threads' CPU µs/call | lost pkts c→s, all rounds |"
    );
    let _ = writeln!(
        t,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for v in &report.variants {
        let m = &v.median;
        let w = &m.wire;
        let _ = writeln!(
            t,
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {} | {} | {:.0}% | {:.0}% | {:.2} | {} |",
            v.name,
            m.cpu_one_caller_client_us,
            m.cpu_one_caller_server_us,
            m.cpu_one_caller_sum_us,
            ratio(
                v.ratio_to_h2_per_stream
                    .as_ref()
                    .map(|r| r.cpu_one_caller_sum)
            ),
            w.c2s_datagrams,
            w.s2c_datagrams,
            thousands(w.c2s_bytes),
            thousands(w.s2c_bytes),
            m.busy_client * 100.0,
            m.busy_server * 100.0,
            m.cpu_other_us,
            v.rounds
                .iter()
                .map(|s| s.lost_packets_load + s.lost_packets_one_caller)
                .sum::<u64>(),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let ns: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 50.0), 50.0);
        assert_eq!(percentile_us(&ns, 99.0), 99.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
