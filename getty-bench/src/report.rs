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
                    .filter(|r| *r != 0.0)
                    .map(|r| format!("{:.2}", s.median / r));
                let _ = write!(out, " {} |", ratio.as_deref().unwrap_or("–"));
            }
            let _ = writeln!(out);
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
