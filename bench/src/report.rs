//! What a measure hands back: its full figures as JSON, and the lines it contributes to the summary
//! table (measure, ours, reference, ratio, target, met?).
//!
//! Why both: the table is for a person reading a terminal (one line per target, so a missed target
//! is seen at once); the JSON keeps every figure behind each line — phases, counts, samples — for
//! `docs/benchmarks.md` and for comparing runs. Benchmarks measure; a missed target is reported
//! here and never turns into a failing exit status.

use serde_json::{json, Value};

/// One line of the summary table.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) measure: String,
    pub(crate) ours: String,
    pub(crate) reference: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: String,
    /// `None` when the line has no target of its own (context for the lines around it).
    pub(crate) met: Option<bool>,
}

impl Line {
    pub(crate) fn new(measure: impl Into<String>, ours: impl Into<String>) -> Line {
        Line {
            measure: measure.into(),
            ours: ours.into(),
            reference: "—".into(),
            ratio: None,
            target: "—".into(),
            met: None,
        }
    }

    pub(crate) fn reference(mut self, reference: impl Into<String>) -> Line {
        self.reference = reference.into();
        self
    }

    pub(crate) fn ratio(mut self, ratio: f64) -> Line {
        self.ratio = ratio.is_finite().then_some(ratio);
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>, met: bool) -> Line {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "measure": self.measure,
            "ours": self.ours,
            "reference": self.reference,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
        })
    }
}

/// A measure's outcome.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) json: Value,
    pub(crate) lines: Vec<Line>,
}

impl Report {
    /// The JSON with the table's lines added under `table`.
    pub(crate) fn into_json(self) -> Value {
        let mut json = self.json;
        if let Value::Object(map) = &mut json {
            let lines: Vec<Value> = self.lines.iter().map(Line::to_json).collect();
            map.insert("table".into(), Value::Array(lines));
        }
        json
    }
}

/// The summary table, as Markdown (readable in a terminal, pasteable into the docs).
pub(crate) fn table(lines: &[Line]) -> String {
    let rows: Vec<[String; 6]> = lines
        .iter()
        .map(|l| {
            [
                l.measure.clone(),
                l.ours.clone(),
                l.reference.clone(),
                l.ratio.map_or_else(|| "—".into(), |r| format!("{r:.3}")),
                l.target.clone(),
                match l.met {
                    Some(true) => "yes".into(),
                    Some(false) => "**no**".into(),
                    None => "".into(),
                },
            ]
        })
        .collect();
    let header = ["measure", "ours", "reference", "ratio", "target", "met?"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = render(&header.map(String::from));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &rows {
        out.push_str(&render(row));
    }
    out
}

/// Seconds with a sensible precision for a table cell.
pub(crate) fn secs(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{seconds:.1} s")
    }
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Thousands as `10k`, `1M`, else the number.
pub(crate) fn count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The machine the run measured: what a reader needs to compare runs (and the load average,
/// since the benchmark machine may be shared).
pub(crate) fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let meminfo = read("/proc/meminfo");
    let mem_kib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "mem_total_mib": mem_kib.map(|kb| kb / 1024),
        "load_average": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}
