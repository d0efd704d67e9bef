//! The results of a run and the markdown tables made of them.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::child::Target;
use crate::servers::ServerImpl;
use crate::workloads::Metric;

/// The servers every other one is compared with, in column order.
pub const REFERENCES: [ServerImpl; 3] = [
    ServerImpl::TokioUtilPerFrame,
    ServerImpl::TokioUtilBatched,
    ServerImpl::RawTokio,
];

/// Every value measured, one per round, by metric and target.
#[derive(Debug, Default)]
pub struct Results {
    values: BTreeMap<(Metric, Target), Vec<f64>>,
}

/// The summary of one metric of one target over the rounds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The median over rounds.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Summary {
    /// The median and range of `values` (one per round); `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut values = values.to_vec();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

impl Results {
    /// Records what one measurement of `target` produced.
    pub fn record(&mut self, target: Target, metrics: &[(Metric, f64)]) {
        for &(metric, value) in metrics {
            self.values.entry((metric, target)).or_default().push(value);
        }
    }

    /// The summary of `metric` for `target`, if it was measured.
    pub fn summary(&self, metric: Metric, target: Target) -> Option<Summary> {
        Summary::of(self.values.get(&(metric, target))?)
    }

    /// The median of `metric` for `target`, if it was measured.
    pub fn median(&self, metric: Metric, target: Target) -> Option<f64> {
        self.summary(metric, target).map(|s| s.median)
    }
}

/// The main table: one row per metric and server (all on one thread), with ratios to the
/// reference servers measured in the same run.
pub fn main_table(results: &Results, metrics: &[Metric], servers: &[ServerImpl]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Ratios are this server's median ÷ the reference's median. ↑ marks metrics where higher \
         is better, ↓ where lower is better (latency p50 and p99: a ratio below 1 is faster)."
    );
    let _ = writeln!(out);
    let mut header = String::from("| workload | metric | server | median | min–max |");
    let mut rule = String::from("|---|---|---|---:|---:|");
    for reference in REFERENCES {
        let _ = write!(header, " ÷ {reference} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for &metric in metrics {
        let arrow = if metric.lower_is_better() {
            "↓"
        } else {
            "↑"
        };
        for &imp in servers {
            let target = Target { imp, threads: 1 };
            let Some(s) = results.summary(metric, target) else {
                continue;
            };
            let _ = write!(
                out,
                "| {} | {} {arrow} | {imp} | {} | {}–{} |",
                metric.workload(),
                metric.label(),
                number(s.median),
                number(s.min),
                number(s.max)
            );
            for reference in REFERENCES {
                let reference = Target {
                    imp: reference,
                    threads: 1,
                };
                let ratio = results
                    .median(metric, reference)
                    .filter(|r| *r != 0.0 && !metric.is_instrument())
                    .map(|r| format!("{:.2}", s.median / r));
                let _ = write!(out, " {} |", ratio.as_deref().unwrap_or("–"));
            }
            let _ = writeln!(out);
        }
    }
    out
}

/// The generator CPU use (% of one core) above which it may have set the rate itself.
pub const GENERATOR_SATURATED: f64 = 90.0;

/// Whether the load generator could see each server's ceiling: per workload, every server's
/// rate beside the generator's CPU use and the server's CPU per message, and a verdict on the
/// raw server's figure, the ceiling every ratio is taken against.
pub fn instrument_check(results: &Results, servers: &[ServerImpl]) -> String {
    let mut out = String::new();
    let checks = [
        (
            Metric::SmallRate,
            Metric::SmallGeneratorCpu,
            Metric::SmallServerCpu,
        ),
        (
            Metric::BulkRate,
            Metric::BulkGeneratorCpu,
            Metric::BulkServerCpu,
        ),
    ];
    for (rate, generator, server_cpu) in checks {
        let rows: Vec<(ServerImpl, f64, f64, f64)> = servers
            .iter()
            .filter_map(|&imp| {
                let target = Target { imp, threads: 1 };
                Some((
                    imp,
                    results.median(rate, target)?,
                    results.median(generator, target)?,
                    results.median(server_cpu, target)?,
                ))
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{}: the generator's CPU use beside each server's rate (medians; the server's own \
             CPU use is its rate × its CPU per message).\n",
            rate.workload()
        );
        let _ = writeln!(
            out,
            "| server | {} | server CPU µs/msg | server CPU % of a core | generator CPU % of a core |",
            rate.label()
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        let per_second = |rate_value: f64| match rate {
            // MB/s of payload: messages per second are MB/s ÷ payload size, which the table
            // does not know; the server's CPU share is taken from µs/msg × msg/s instead.
            Metric::BulkRate => None,
            _ => Some(rate_value),
        };
        for &(imp, value, gen, cpu) in &rows {
            let share = per_second(value)
                .map_or("–".to_string(), |msgs| format!("{:.0}", msgs * cpu / 1e4));
            let flag = if gen >= GENERATOR_SATURATED {
                " (saturated)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {imp} | {} | {cpu:.3} | {share} | {gen:.0}{flag} |",
                number(value)
            );
        }
        if let Some(&(_, value, gen, _)) = rows.iter().find(|r| r.0 == ServerImpl::RawTokio) {
            let verdict = if gen >= GENERATOR_SATURATED {
                format!(
                    "**The generator was saturated ({gen:.0} % of a core) while measuring \
                     raw-tokio**: {} is the generator's ceiling, not the server's, so every \
                     ratio to raw-tokio in this run is squeezed toward 1. Compare the servers' \
                     CPU per message instead, which a saturated generator does not change.",
                    number(value)
                )
            } else {
                format!(
                    "The generator had headroom ({gen:.0} % of a core) while raw-tokio served \
                     {}: that is the server's ceiling as this instrument sees it, and ratios to \
                     it hold.",
                    number(value)
                )
            };
            let _ = writeln!(out, "\n{verdict}");
        }
    }
    out
}

/// The scaling table: each getty server on 1 and on 2 threads.
pub fn scaling_table(results: &Results, metrics: &[Metric], servers: &[ServerImpl]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | metric | server | 1 thread (median) | 2 threads (median) | 2 threads min–max | speed-up |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
    for &metric in metrics {
        for &imp in servers {
            let one = results.median(metric, Target { imp, threads: 1 });
            let two = results.summary(metric, Target { imp, threads: 2 });
            let (Some(one), Some(two)) = (one, two) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {imp} | {} | {} | {}–{} | {:.2} |",
                metric.workload(),
                metric.label(),
                number(one),
                number(two.median),
                number(two.min),
                number(two.max),
                two.median / one
            );
        }
    }
    out
}

/// A number for a table: grouped thousands when large, a few decimals when small.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(number(1_523_456.4), "1,523,456");
        assert_eq!(number(-12_345.0), "-12,345");
        assert_eq!(number(1000.4), "1,000");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(24.44), "24.4");
        assert_eq!(number(0.5), "0.50");
    }

    #[test]
    fn the_instrument_check_says_when_the_generator_set_the_rate() {
        let raw = Target {
            imp: ServerImpl::RawTokio,
            threads: 1,
        };
        let getty = Target {
            imp: ServerImpl::GettyTokio,
            threads: 1,
        };
        let servers = [ServerImpl::GettyTokio, ServerImpl::RawTokio];
        let run = |raw_generator: f64| {
            let mut results = Results::default();
            results.record(
                raw,
                &[
                    (Metric::SmallRate, 3_000_000.0),
                    (Metric::SmallServerCpu, 0.30),
                    (Metric::SmallGeneratorCpu, raw_generator),
                ],
            );
            results.record(
                getty,
                &[
                    (Metric::SmallRate, 2_000_000.0),
                    (Metric::SmallServerCpu, 0.50),
                    (Metric::SmallGeneratorCpu, 60.0),
                ],
            );
            instrument_check(&results, &servers)
        };
        let headroom = run(70.0);
        assert!(
            headroom.contains("had headroom (70 % of a core)"),
            "{headroom}"
        );
        // The server's share of a core: 3 M msg/s × 0.3 µs = 90 %.
        assert!(
            headroom.contains("| raw-tokio | 3,000,000 | 0.300 | 90 | 70 |"),
            "{headroom}"
        );
        let saturated = run(97.0);
        assert!(
            saturated.contains("**The generator was saturated (97 %"),
            "{saturated}"
        );
        assert!(saturated.contains("97 (saturated)"), "{saturated}");
        // Only rates with a generator figure are checked.
        assert!(instrument_check(&Results::default(), &servers).is_empty());
    }

    #[test]
    fn instrument_metrics_get_no_ratio() {
        let mut results = Results::default();
        for imp in [ServerImpl::RawTokio, ServerImpl::GettyTokio] {
            results.record(
                Target { imp, threads: 1 },
                &[(Metric::SmallGeneratorCpu, 50.0), (Metric::SmallRate, 2.0)],
            );
        }
        let table = main_table(
            &results,
            &[Metric::SmallRate, Metric::SmallGeneratorCpu],
            &[ServerImpl::GettyTokio, ServerImpl::RawTokio],
        );
        let generator_row = table
            .lines()
            .find(|l| l.contains("generator CPU") && l.contains("getty-tokio"))
            .expect("a generator row");
        assert!(generator_row.ends_with("| – | – | – |"), "{generator_row}");
        let rate_row = table
            .lines()
            .find(|l| l.contains("msg/s") && l.contains("getty-tokio"))
            .expect("a rate row");
        assert!(rate_row.ends_with("| 1.00 |"), "{rate_row}");
    }

    #[test]
    fn summaries_take_the_median() {
        let target = Target {
            imp: ServerImpl::RawTokio,
            threads: 1,
        };
        let mut results = Results::default();
        for v in [3.0, 1.0, 2.0] {
            results.record(target, &[(Metric::SmallRate, v)]);
        }
        let s = results.summary(Metric::SmallRate, target).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert!(results.summary(Metric::BulkRate, target).is_none());
    }
}
