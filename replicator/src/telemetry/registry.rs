//! The registry: the current value of every series, and its Prometheus text exposition.
//!
//! **Contract.** One registry per process ([`global`]), written by events and probes, read by the
//! `/metrics` server. A series is a catalogue [`Metric`] with one value per label name; counters
//! only [`add`](Registry::add), gauges are [`set`](Registry::set) or
//! [`remove`](Registry::remove)d (a series that no longer means anything, such as the safe WAL
//! size of a slot without a limit, disappears rather than reading 0). [`render`](Registry::render)
//! writes the text format 0.0.4: every catalogue metric's `# HELP` and `# TYPE`, even before its
//! first series, then its series sorted by label values, so two scrapes differ only in values.
//!
//! **Why hand-rolled.** A dozen series with string labels, written a few times a second: a
//! mutex-guarded map is plenty, and the exposition format is a few lines. Values given with the
//! wrong number of labels are a bug of the event that gives them: they are dropped (and logged),
//! never a panic in the middle of applying.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::catalogue::{Kind, Metric, CATALOGUE};

/// Label values → value, for one metric.
type Series = BTreeMap<Vec<String>, f64>;

/// Every series of the process (module docs).
#[derive(Debug, Default)]
pub struct Registry {
    series: Mutex<BTreeMap<&'static str, Series>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Registry {
    /// Adds `by` (≥ 0) to a counter.
    pub fn add(&self, metric: &'static Metric, labels: &[&str], by: f64) {
        if metric.kind != Kind::Counter || by < 0.0 || !by.is_finite() {
            tracing::error!(
                metric = metric.name,
                by,
                "a bug: not an increase of a counter; ignored"
            );
            return;
        }
        self.update(metric, labels, |value| *value += by);
    }

    /// Sets a gauge.
    pub fn set(&self, metric: &'static Metric, labels: &[&str], value: f64) {
        if metric.kind != Kind::Gauge {
            tracing::error!(
                metric = metric.name,
                "a bug: a counter cannot be set; ignored"
            );
            return;
        }
        self.update(metric, labels, |v| *v = value);
    }

    /// Adds `by` (may be negative) to a gauge, from 0 if it has no value yet.
    pub fn shift(&self, metric: &'static Metric, labels: &[&str], by: f64) {
        if metric.kind != Kind::Gauge {
            return;
        }
        self.update(metric, labels, |v| *v = (*v + by).max(0.0));
    }

    /// Removes a gauge's series.
    pub fn remove(&self, metric: &'static Metric, labels: &[&str]) {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = all.get_mut(metric.name) {
            series.remove(&key);
        }
    }

    /// The value of one series, if it has one (tests and probes read it).
    pub fn get(&self, metric: &'static Metric, labels: &[&str]) -> Option<f64> {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(metric.name).and_then(|s| s.get(&key)).copied()
    }

    fn update(&self, metric: &'static Metric, labels: &[&str], change: impl FnOnce(&mut f64)) {
        if labels.len() != metric.labels.len() {
            tracing::error!(
                metric = metric.name,
                given = labels.len(),
                expected = metric.labels.len(),
                "a bug: wrong number of label values; ignored"
            );
            return;
        }
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        change(
            all.entry(metric.name)
                .or_default()
                .entry(key)
                .or_insert(0.0),
        );
    }

    /// The text exposition of every catalogue metric (module docs).
    pub fn render(&self) -> String {
        let all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for metric in CATALOGUE {
            let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
            let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind.as_str());
            for (values, value) in all.get(metric.name).into_iter().flatten() {
                out.push_str(metric.name);
                if !values.is_empty() {
                    out.push('{');
                    for (i, (name, value)) in metric.labels.iter().zip(values).enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {}", number(*value));
            }
        }
        out
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::{CONFLICTS, EVENTS_APPLIED, LAG_SECONDS, SLOT_SAFE_WAL_SIZE};
    use super::*;

    #[test]
    fn renders_every_metric_and_escapes_labels() {
        let registry = Registry::default();
        registry.add(&EVENTS_APPLIED, &["us", "insert"], 2.0);
        registry.add(&EVENTS_APPLIED, &["us", "insert"], 1.0);
        registry.set(&LAG_SECONDS, &["us", "e\"u"], 0.25);
        registry.add(&CONFLICTS, &["us", "field"], 1.0); // one label short: dropped
        let text = registry.render();
        for metric in CATALOGUE {
            assert!(
                text.contains(&format!(
                    "# TYPE {} {}\n",
                    metric.name,
                    metric.kind.as_str()
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("replicator_events_applied_total{source=\"us\",kind=\"insert\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("replicator_lag_seconds{source=\"us\",target=\"e\\\"u\"} 0.25\n"),
            "{text}"
        );
        assert!(!text.contains("replicator_conflicts_total{"), "{text}");
    }

    #[test]
    fn gauges_can_disappear_and_counters_never_go_down() {
        let registry = Registry::default();
        registry.set(&SLOT_SAFE_WAL_SIZE, &["us"], 1024.0);
        registry.remove(&SLOT_SAFE_WAL_SIZE, &["us"]);
        assert_eq!(registry.get(&SLOT_SAFE_WAL_SIZE, &["us"]), None);
        registry.add(&EVENTS_APPLIED, &["us", "delete"], 1.0);
        registry.add(&EVENTS_APPLIED, &["us", "delete"], -5.0);
        registry.set(&EVENTS_APPLIED, &["us", "delete"], 0.0);
        assert_eq!(registry.get(&EVENTS_APPLIED, &["us", "delete"]), Some(1.0));
    }
}
