//! Metrics end to end: two regions with `replicator run` sidecars serving `/metrics` on ports of
//! their own, scraped over HTTP as Prometheus does. While idle, lag is reported for every source
//! region and keeps moving with the heartbeats; every metric of the catalogue that the alert
//! rules use is exposed; a change applied shows in the counters; no sidecar logs a password.

use std::error::Error;
use std::time::Duration;

use harness::{wait_until, HarnessError, Lab, Mesh};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn Error>>;

const WAIT: Duration = Duration::from_secs(90);

/// The alert rules' metric table (the contract the sidecar serves).
const ALERTING_README: &str = include_str!("../../compose/prometheus/README.md");

/// A loopback port free right now.
fn free_port() -> Result<u16, Box<dyn Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `GET /metrics`, as Prometheus does: the body, or `None` while nothing listens yet.
async fn scrape(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .ok()?
    .ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| head.contains("text/plain; version=0.0.4"))
        .filter(|ok| *ok)
        .map(|_| body.to_owned())
}

/// The value of the series of `name` with (at least) these labels.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Scrapes `port` until `check` finds what it needs in the text.
async fn wait_for<T>(
    what: &str,
    port: u16,
    check: impl Fn(&str) -> Option<T>,
) -> Result<T, HarnessError> {
    wait_until(what, WAIT, || {
        let scraped = scrape(port);
        let check = &check;
        async move { Ok(scraped.await.and_then(|text| check(&text))) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_regions_report_lag_and_every_catalogue_metric() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu"], "metrics").await?;
    let mut ports = Vec::new();
    for member in &mut mesh.members {
        let port = free_port()?;
        member.extra_args = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
        ports.push((member.region.clone(), port));
    }
    mesh.start_all()?;
    let result = check_metrics(&mesh, &ports).await;
    if result.is_err() {
        eprintln!("{}", mesh.logs());
    }
    result
}

async fn check_metrics(mesh: &Mesh, ports: &[(String, u16)]) -> TestResult {
    for (target, port) in ports {
        let port = *port;
        let (source, _) = ports
            .iter()
            .find(|(region, _)| region != target)
            .ok_or("two regions")?;
        let pair = [("source", source.as_str()), ("target", target.as_str())];

        // Idle (nothing written): lag is there for the other region, from its heartbeats.
        let first = wait_for(&format!("lag {source} → {target}"), port, |text| {
            sample(text, "replicator_lag_seconds", &pair)?;
            sample(text, "replicator_last_heartbeat_timestamp_seconds", &pair)
        })
        .await?;
        let lag = wait_for("a lag value", port, |t| {
            sample(t, "replicator_lag_seconds", &pair)
        })
        .await?;
        assert!((0.0..60.0).contains(&lag), "lag {source} → {target}: {lag}");
        // Heartbeats keep coming (every 200 ms in the mesh): the timestamp moves on.
        let later = wait_for("a later heartbeat", port, |text| {
            sample(text, "replicator_last_heartbeat_timestamp_seconds", &pair)
                .filter(|t| *t > first)
        })
        .await?;
        assert!(later > first);

        // The probes: this region's slot streams, nothing parked, the consumer lag is read.
        let text = wait_for("the probes' gauges", port, |text| {
            let slot = sample(text, "replicator_slot_active", &[("region", target)])?;
            sample(
                text,
                "replicator_slot_retained_wal_bytes",
                &[("region", target)],
            )?;
            sample(
                text,
                "replicator_consumer_lag_records",
                &[("source", source)],
            )?;
            let parked = sample(
                text,
                "replicator_parked_transactions",
                &[("source", source)],
            )?;
            (slot == 1.0 && parked == 0.0).then(|| text.to_owned())
        })
        .await?;
        let published = sample(
            &text,
            "replicator_events_published_total",
            &[("region", target)],
        );
        assert!(
            published.is_some_and(|n| n > 0.0),
            "heartbeats are published:\n{text}"
        );
        let beats = sample(
            &text,
            "replicator_events_applied_total",
            &[("source", source), ("kind", "heartbeat")],
        );
        assert!(beats.is_some_and(|n| n > 0.0), "{text}");

        // Every metric of the alert rules' catalogue is exposed, with its type.
        for row in ALERTING_README
            .lines()
            .filter(|l| l.starts_with("| `replicator_"))
        {
            let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
            let (name, kind) = (cells.get(1).ok_or("name")?, cells.get(2).ok_or("type")?);
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} ({kind}) missing from {target}'s /metrics:\n{text}"
            );
        }
    }

    // A change in us is counted where it is applied.
    mesh.client("us")
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('counted')",
            &[],
        )
        .await?;
    let eu = ports
        .iter()
        .find(|(r, _)| r == "eu")
        .map(|(_, p)| *p)
        .ok_or("eu")?;
    wait_for("the insert counted in eu", eu, |text| {
        sample(
            text,
            "replicator_events_applied_total",
            &[("source", "us"), ("kind", "insert")],
        )
        .filter(|n| *n >= 1.0)
    })
    .await?;

    // No sidecar logged the database password (it is in every sidecar's database url).
    let password = Lab::get()?.region("us")?.password();
    assert!(password.len() >= 8, "the lab's password is a real one");
    for member in &mesh.members {
        let log = member.sidecar.as_ref().map(|s| s.log()).unwrap_or_default();
        assert!(log.contains("serving metrics"), "{log}");
        assert!(
            !log.contains(password),
            "{}'s log shows the password",
            member.region
        );
    }
    Ok(())
}

/// Two regions cut off from each other (sidecars stopped) both retitle one dashboard: once they
/// are back, each counts exactly one conflict with the other, of kind `field` and column class
/// `text` — counted once it is committed, as the conflict log holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_counted_once_with_its_column_class() -> TestResult {
    let mut mesh = Mesh::new(&["us", "eu"], "metrics_conflict").await?;
    let mut ports = Vec::new();
    for member in &mut mesh.members {
        let port = free_port()?;
        member.extra_args = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
        ports.push((member.region.clone(), port));
    }
    mesh.start_all()?;
    mesh.client("us")
        .execute(
            "INSERT INTO dashboards (dashboard_title) VALUES ('contested')",
            &[],
        )
        .await?;
    mesh.converged(WAIT).await?;
    mesh.kill_all();
    for region in ["us", "eu"] {
        mesh.client(region)
            .execute(
                "UPDATE dashboards SET dashboard_title = $1 WHERE dashboard_title = 'contested'",
                &[&format!("retitled in {region}")],
            )
            .await?;
    }
    mesh.start_all()?;
    mesh.converged(WAIT).await?;
    for (target, port) in &ports {
        let source = if target == "us" { "eu" } else { "us" };
        let labels = [
            ("source", source),
            ("kind", "field"),
            ("column_class", "text"),
        ];
        let counted = wait_for(
            &format!("the conflict counted in {target}"),
            *port,
            |text| sample(text, "replicator_conflicts_total", &labels),
        )
        .await;
        if counted.is_err() {
            eprintln!("{}", mesh.logs());
        }
        assert_eq!(counted?, 1.0, "one conflict in {target}");
        let log = mesh
            .members
            .iter()
            .find(|m| m.region == *target)
            .and_then(|m| m.sidecar.as_ref())
            .map(|s| s.log())
            .unwrap_or_default();
        assert!(
            log.contains("column_class=\"text\"") || log.contains("column_class=text"),
            "{log}"
        );
    }
    Ok(())
}
