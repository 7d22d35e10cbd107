//! The container stack for users (`compose/compose.yaml`), checked without a container engine
//! (CI has none): the file is parsed as YAML, with its `<<` merge keys resolved the way Compose
//! resolves them, and every claim it makes is checked against the repository and the binary.
//!
//! - every service a service depends on exists, with the right condition; each sidecar waits for
//!   its own database (healthy), its setup and grants (completed) and Kafka (healthy);
//! - every file or folder it mounts, builds from or reads a config from exists in the
//!   repository; secrets and env files live in `compose/secrets/`, which is never committed and
//!   which `compose/make-secrets` fills;
//! - only Prometheus and Superset publish ports, always on 127.0.0.1;
//! - each region's PostgreSQL runs with `wal_level=logical` and enough slots and senders;
//! - each sidecar applies exactly the other regions, and talks to its own region's database;
//! - Prometheus scrapes every sidecar at its metrics port, and nothing else, for the alert rules;
//! - every flag and `REPLICATOR_*` variable given to `replicator` is in `replicator <cmd> --help`;
//! - the JSON and YAML files it mounts parse, and the sidecar role's grants cover the table policy;
//! - the Dockerfile builds with the toolchain of `rust-toolchain.toml` and runs as a non-root user.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::{Mapping, Value};

type TestResult = Result<(), Box<dyn Error>>;

/// The image the compose file builds from `compose/Dockerfile`.
const REPLICATOR_IMAGE: &str = "replicator:dev";

/// Services allowed to publish a port on the host: what an operator opens in a browser.
fn may_publish(service: &str) -> bool {
    service == "prometheus" || (service.starts_with("superset-") && !service.contains("init"))
}

fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

fn compose_dir() -> PathBuf {
    repo_root().join("compose")
}

fn read(path: &Path) -> Result<String, Box<dyn Error>> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Resolves YAML merge keys (`<<`) like Compose does: shallow, the mapping's own keys win, and a
/// merged mapping may itself merge another (serde_norway's `apply_merge` stops at one level).
fn resolve_merges(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            while let Some(merged) = mapping.remove("<<") {
                let sources = match merged {
                    Value::Sequence(items) => items,
                    other => vec![other],
                };
                for source in sources {
                    if let Value::Mapping(source) = source {
                        for (key, item) in source {
                            if !mapping.contains_key(&key) {
                                mapping.insert(key, item);
                            }
                        }
                    }
                }
            }
            for (_, item) in mapping.iter_mut() {
                resolve_merges(item);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(resolve_merges),
        _ => {}
    }
}

/// `compose/compose.yaml`, merge keys resolved.
struct Stack {
    doc: Value,
}

impl Stack {
    fn load() -> Result<Stack, Box<dyn Error>> {
        let path = compose_dir().join("compose.yaml");
        let mut doc: Value = serde_norway::from_str(&read(&path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        resolve_merges(&mut doc);
        Ok(Stack { doc })
    }

    fn services(&self) -> Result<&Mapping, Box<dyn Error>> {
        self.doc
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| "compose.yaml has no `services` mapping".into())
    }

    fn service(&self, name: &str) -> Result<&Value, Box<dyn Error>> {
        self.services()?
            .get(name)
            .ok_or_else(|| format!("compose.yaml has no service `{name}`").into())
    }

    fn service_names(&self) -> Result<Vec<String>, Box<dyn Error>> {
        Ok(self
            .services()?
            .keys()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }

    /// The regions: one per `sidecar-<region>` service.
    fn regions(&self) -> Result<BTreeSet<String>, Box<dyn Error>> {
        Ok(self
            .service_names()?
            .iter()
            .filter_map(|name| name.strip_prefix("sidecar-"))
            .map(str::to_owned)
            .collect())
    }

    fn top_level(&self, key: &str) -> Option<&Mapping> {
        self.doc.get(key).and_then(Value::as_mapping)
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `command` (or `entrypoint`) as a list of words.
fn words(service: &Value, key: &str) -> Vec<String> {
    match service.get(key) {
        Some(Value::Sequence(items)) => items.iter().filter_map(text).collect(),
        Some(Value::String(line)) => line.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A service's `environment`, in either of Compose's two forms.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match service.get("environment") {
        Some(Value::Mapping(map)) => {
            for (key, value) in map {
                if let (Some(key), Some(value)) = (key.as_str(), text(value)) {
                    env.insert(key.to_owned(), value);
                }
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items.iter().filter_map(Value::as_str) {
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                env.insert(key.to_owned(), value.to_owned());
            }
        }
        _ => {}
    }
    env
}

/// The value after `flag` in a command (`--flag value` or `--flag=value`).
fn flag_value(command: &[String], flag: &str) -> Option<String> {
    let prefixed = format!("{flag}=");
    command.iter().enumerate().find_map(|(i, word)| {
        if word == flag {
            command.get(i + 1).cloned()
        } else {
            word.strip_prefix(&prefixed).map(str::to_owned)
        }
    })
}

fn is_replicator(service: &Value) -> bool {
    service.get("image").and_then(Value::as_str) == Some(REPLICATOR_IMAGE)
}

/// `depends_on` as service → condition (the short list form means `service_started`).
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    let mut deps = BTreeMap::new();
    match service.get("depends_on") {
        Some(Value::Sequence(items)) => {
            for name in items.iter().filter_map(Value::as_str) {
                deps.insert(name.to_owned(), "service_started".to_owned());
            }
        }
        Some(Value::Mapping(map)) => {
            for (name, spec) in map {
                let condition = spec
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                if let Some(name) = name.as_str() {
                    deps.insert(name.to_owned(), condition.to_owned());
                }
            }
        }
        _ => {}
    }
    deps
}

/// A path of the compose file, which Compose resolves against the file's folder.
fn compose_path(path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        compose_dir().join(path)
    }
}

/// Within the repository: `..` resolved lexically (the path may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn fail_on(problems: Vec<String>, what: &str) -> TestResult {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}:\n  - {}", problems.join("\n  - ")).into())
    }
}

#[test]
fn every_dependency_exists_and_each_sidecar_waits_for_its_region() -> TestResult {
    let stack = Stack::load()?;
    let names: BTreeSet<String> = stack.service_names()?.into_iter().collect();
    let mut problems = Vec::new();
    for name in &names {
        let service = stack.service(name)?;
        for (dependency, condition) in depends_on(service) {
            let Some(target) = stack.services()?.get(dependency.as_str()) else {
                problems.push(format!(
                    "{name} depends on `{dependency}`, which is no service"
                ));
                continue;
            };
            if condition == "service_healthy" && target.get("healthcheck").is_none() {
                problems.push(format!(
                    "{name} waits for `{dependency}` to be healthy, which has no healthcheck"
                ));
            }
        }
    }
    let regions = stack.regions()?;
    if regions.len() < 2 {
        problems.push(format!(
            "expected sidecar-<region> services for several regions, found {regions:?}"
        ));
    }
    for region in &regions {
        let expect = [
            (format!("postgres-{region}"), "service_healthy"),
            (format!("grant-{region}"), "service_completed_successfully"),
            ("kafka".to_owned(), "service_healthy"),
        ];
        let chain = [
            (
                format!("grant-{region}"),
                format!("setup-{region}"),
                "service_completed_successfully",
            ),
            (
                format!("setup-{region}"),
                format!("postgres-{region}"),
                "service_healthy",
            ),
        ];
        let sidecar = format!("sidecar-{region}");
        let deps = depends_on(stack.service(&sidecar)?);
        for (dependency, condition) in expect {
            if deps.get(&dependency).map(String::as_str) != Some(condition) {
                problems.push(format!(
                    "{sidecar} must depend on {dependency} with condition {condition} (has {:?})",
                    deps.get(&dependency)
                ));
            }
        }
        for (service, dependency, condition) in chain {
            let deps = depends_on(stack.service(&service)?);
            if deps.get(&dependency).map(String::as_str) != Some(condition) {
                problems.push(format!(
                    "{service} must depend on {dependency} with condition {condition}"
                ));
            }
        }
    }
    fail_on(problems, "service dependencies")
}

/// A path on the host that the stack uses: who uses it, as what, and where it is.
struct HostPath {
    owner: String,
    kind: &'static str,
    path: PathBuf,
}

/// Every host path a service uses: bind mounts, build contexts and Dockerfiles, env files,
/// secrets and configs.
fn host_paths(stack: &Stack) -> Result<Vec<HostPath>, Box<dyn Error>> {
    let named: BTreeSet<String> = stack
        .top_level("volumes")
        .map(|v| {
            v.keys()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut paths = Vec::new();
    for name in stack.service_names()? {
        let service = stack.service(&name)?;
        for volume in service
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = match volume {
                Value::String(short) => short.split(':').next().unwrap_or_default().to_owned(),
                Value::Mapping(_) if volume.get("type").and_then(Value::as_str) == Some("bind") => {
                    volume.get("source").and_then(text).unwrap_or_default()
                }
                Value::Mapping(_) => continue,
                _ => return Err(format!("{name}: a volume entry that is not understood").into()),
            };
            if source.starts_with('.') || source.starts_with('/') {
                paths.push(HostPath {
                    owner: name.clone(),
                    kind: "bind mount",
                    path: compose_path(&source),
                });
            } else if !named.contains(&source) {
                return Err(format!(
                    "{name} mounts volume `{source}`, not declared under top-level `volumes`"
                )
                .into());
            }
        }
        if let Some(build) = service.get("build") {
            let context = build
                .as_str()
                .map(str::to_owned)
                .or_else(|| build.get("context").and_then(text))
                .unwrap_or_else(|| ".".into());
            let context = compose_path(&context);
            let dockerfile = build
                .get("dockerfile")
                .and_then(text)
                .unwrap_or_else(|| "Dockerfile".into());
            paths.push(HostPath {
                owner: name.clone(),
                kind: "build context",
                path: context.clone(),
            });
            paths.push(HostPath {
                owner: name.clone(),
                kind: "Dockerfile",
                path: context.join(dockerfile),
            });
        }
        let env_files = match service.get("env_file") {
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Sequence(items)) => items.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        for file in env_files {
            paths.push(HostPath {
                owner: name.clone(),
                kind: "env file",
                path: compose_path(&file),
            });
        }
    }
    for kind in ["secrets", "configs"] {
        for (key, spec) in stack.top_level(kind).into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            match spec.get("file").and_then(text) {
                Some(file) => paths.push(HostPath {
                    owner: format!("{kind}.{key}"),
                    kind,
                    path: compose_path(&file),
                }),
                None => {
                    return Err(format!(
                        "{kind}.{key}: only `file:` sources are used by this stack (no environment or external ones)"
                    )
                    .into())
                }
            }
        }
    }
    Ok(paths)
}

#[test]
fn every_mounted_file_exists_and_secrets_are_made_not_committed() -> TestResult {
    let stack = Stack::load()?;
    let secrets_dir = compose_dir().join("secrets");
    let make_secrets = read(&compose_dir().join("make-secrets"))?;
    let gitignore = read(&compose_dir().join(".gitignore"))?;
    if !gitignore.lines().any(|line| line.trim() == "/secrets/*") {
        return Err("compose/.gitignore must ignore /secrets/*".into());
    }
    let mut problems = Vec::new();
    for HostPath { owner, kind, path } in host_paths(&stack)? {
        let path = normalize(&path);
        if !path.starts_with(repo_root()) {
            problems.push(format!(
                "{owner}: {kind} {} is outside the repository",
                path.display()
            ));
        } else if path.starts_with(&secrets_dir) {
            // Made by compose/make-secrets on the operator's machine, never committed.
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            if !make_secrets.contains(file) {
                problems.push(format!(
                    "{owner}: {kind} secrets/{file} is not made by compose/make-secrets"
                ));
            }
        } else if !path.exists() {
            problems.push(format!("{owner}: {kind} {} does not exist", path.display()));
        }
    }
    // What services reference must be declared.
    for name in stack.service_names()? {
        let service = stack.service(&name)?;
        for kind in ["secrets", "configs"] {
            for entry in service
                .get(kind)
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let source = entry
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| entry.get("source").and_then(text))
                    .unwrap_or_default();
                if !stack
                    .top_level(kind)
                    .is_some_and(|declared| declared.contains_key(source.as_str()))
                {
                    problems.push(format!(
                        "{name} uses {kind} `{source}`, not declared at the top level"
                    ));
                }
            }
        }
    }
    fail_on(problems, "mounted files")
}

#[test]
fn only_prometheus_and_superset_publish_ports_and_only_on_loopback() -> TestResult {
    let stack = Stack::load()?;
    let mut problems = Vec::new();
    let mut published = BTreeSet::new();
    for name in stack.service_names()? {
        let service = stack.service(&name)?;
        for key in ["network_mode", "pid", "ipc"] {
            if service.get(key).and_then(Value::as_str) == Some("host") {
                problems.push(format!("{name}: `{key}: host` exposes the host"));
            }
        }
        if service.get("privileged").and_then(Value::as_bool) == Some(true) {
            problems.push(format!("{name} is privileged"));
        }
        for port in service
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            published.insert(name.clone());
            let loopback = match port {
                Value::String(short) => short.starts_with("127.0.0.1:"),
                Value::Mapping(_) => {
                    port.get("host_ip").and_then(Value::as_str) == Some("127.0.0.1")
                }
                _ => false,
            };
            if !loopback {
                problems.push(format!(
                    "{name} publishes {port:?}: bind it to 127.0.0.1 (`127.0.0.1:HOST:CONTAINER`)"
                ));
            }
        }
        if !published.contains(&name) {
            continue;
        }
        if !may_publish(&name) {
            problems.push(format!(
                "{name} publishes a port; only Prometheus and Superset are for the operator"
            ));
        }
    }
    if !published.contains("prometheus") {
        problems.push("Prometheus' UI is not published on 127.0.0.1".into());
    }
    fail_on(problems, "published ports")
}

#[test]
fn each_region_database_runs_with_logical_wal_and_a_readiness_check() -> TestResult {
    let stack = Stack::load()?;
    let regions = stack.regions()?;
    let mut problems = Vec::new();
    for region in &regions {
        let name = format!("postgres-{region}");
        let service = stack.service(&name)?;
        let command = words(service, "command");
        let settings: BTreeMap<String, String> = command
            .windows(2)
            .filter(|pair| pair[0] == "-c")
            .filter_map(|pair| pair[1].split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if settings.get("wal_level").map(String::as_str) != Some("logical") {
            problems.push(format!(
                "{name} must run with `-c wal_level=logical` ({command:?})"
            ));
        }
        for setting in ["max_replication_slots", "max_wal_senders"] {
            let value: usize = settings
                .get(setting)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if value < 2 {
                problems.push(format!(
                    "{name} must set `-c {setting}=N` with room for the slot and a spare"
                ));
            }
        }
        let image = service
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !image.starts_with("postgres:15") {
            problems.push(format!(
                "{name} runs {image}; the replicator targets PostgreSQL 15"
            ));
        }
        let check = service
            .get("healthcheck")
            .map(|h| words(h, "test").join(" "))
            .unwrap_or_default();
        if !check.contains("pg_isready") {
            problems.push(format!(
                "{name} needs a pg_isready healthcheck (has {check:?})"
            ));
        }
        let loads_schema = host_paths(&stack)?.iter().any(|used| {
            used.owner == name
                && used
                    .path
                    .ends_with("tests/fixtures/superset-6.1-metadata-schema.sql")
        });
        if !loads_schema {
            problems.push(format!(
                "{name} must load Superset 6.1's schema (tests/fixtures/superset-6.1-metadata-schema.sql)"
            ));
        }
    }
    fail_on(problems, "regional databases")
}

#[test]
fn each_sidecar_applies_exactly_the_other_regions_from_its_own_database() -> TestResult {
    let stack = Stack::load()?;
    let regions = stack.regions()?;
    let mut problems = Vec::new();
    for region in &regions {
        let name = format!("sidecar-{region}");
        let sidecar = stack.service(&name)?;
        let command = words(sidecar, "command");
        let env = environment(sidecar);
        if command.first().map(String::as_str) != Some("run") {
            problems.push(format!("{name} must run `replicator run` ({command:?})"));
        }
        if flag_value(&command, "--region").as_deref() != Some(region.as_str()) {
            problems.push(format!("{name}: `--region` must be {region}"));
        }
        let sources: BTreeSet<String> = flag_value(&command, "--sources")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let others: BTreeSet<String> = regions.iter().filter(|r| *r != region).cloned().collect();
        if sources != others {
            problems.push(format!(
                "{name}: `--sources` names {sources:?}, but the other regions are {others:?}"
            ));
        }
        // The environment is for commands run with `docker compose exec`: it must agree.
        if let Some(env_region) = env.get("REPLICATOR_REGION") {
            if env_region != region {
                problems.push(format!(
                    "{name}: REPLICATOR_REGION={env_region}, not {region}"
                ));
            }
        }
        if let Some(env_sources) = env.get("REPLICATOR_SOURCES") {
            let env_sources: BTreeSet<String> = env_sources.split(',').map(str::to_owned).collect();
            if env_sources != others {
                problems.push(format!("{name}: REPLICATOR_SOURCES names {env_sources:?}"));
            }
        }
        if flag_value(&command, "--kafka-brokers").as_deref() != Some("kafka:9092") {
            problems.push(format!("{name}: `--kafka-brokers` must be kafka:9092"));
        }
        let host = format!("host=postgres-{region} ");
        for service in [name.clone(), format!("setup-{region}")] {
            let env = environment(stack.service(&service)?);
            let url = env
                .get("REPLICATOR_DATABASE_URL")
                .cloned()
                .unwrap_or_default();
            if !url.contains(&host) {
                problems.push(format!(
                    "{service}: REPLICATOR_DATABASE_URL must name its own region's database ({host:?}), has {url:?}"
                ));
            }
            if url.contains("password") {
                problems.push(format!("{service}: a password in REPLICATOR_DATABASE_URL"));
            }
        }
        let setup = words(stack.service(&format!("setup-{region}"))?, "command");
        if setup.first().map(String::as_str) != Some("setup")
            || flag_value(&setup, "--region").as_deref() != Some(region.as_str())
        {
            problems.push(format!("setup-{region} must run `setup --region {region}`"));
        }
        let grant = environment(stack.service(&format!("grant-{region}"))?);
        if grant.get("PGHOST") != Some(&format!("postgres-{region}")) {
            problems.push(format!("grant-{region} must grant in postgres-{region}"));
        }
    }
    fail_on(problems, "sidecars")
}

/// The sidecar's metrics port, from `--metrics-listen` (or `REPLICATOR_METRICS_LISTEN`).
fn metrics_port(sidecar: &Value) -> Option<String> {
    let listen = flag_value(&words(sidecar, "command"), "--metrics-listen").or_else(|| {
        environment(sidecar)
            .get("REPLICATOR_METRICS_LISTEN")
            .cloned()
    })?;
    let (host, port) = listen.rsplit_once(':')?;
    // Loopback inside the container would be unreachable for Prometheus.
    (host != "127.0.0.1" && host != "localhost").then(|| port.to_owned())
}

#[test]
fn prometheus_scrapes_every_sidecar_at_its_metrics_port() -> TestResult {
    let stack = Stack::load()?;
    let config_path = compose_dir().join("prometheus/prometheus.yml");
    let config: Value = serde_norway::from_str(&read(&config_path)?)?;
    let mut problems = Vec::new();
    let mut targets = BTreeSet::new();
    for job in config
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        if job.get("job_name").and_then(Value::as_str) != Some("replicator") {
            continue;
        }
        for static_config in job
            .get("static_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for target in static_config
                .get("targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                targets.insert(target.to_owned());
            }
        }
    }
    let mut expected = BTreeSet::new();
    for region in stack.regions()? {
        let name = format!("sidecar-{region}");
        match metrics_port(stack.service(&name)?) {
            Some(port) => {
                expected.insert(format!("{name}:{port}"));
            }
            None => problems.push(format!(
                "{name} must serve metrics on all interfaces (`--metrics-listen 0.0.0.0:PORT`)"
            )),
        }
    }
    if targets != expected {
        problems.push(format!(
            "job `replicator` scrapes {targets:?}; the sidecars serve {expected:?}"
        ));
    }
    // Prometheus reads this very file and the alert rules beside it.
    let prometheus = stack.service("prometheus")?;
    let config_flag = words(prometheus, "command")
        .iter()
        .find_map(|w| w.strip_prefix("--config.file=").map(str::to_owned))
        .unwrap_or_else(|| "/etc/prometheus/prometheus.yml".into());
    // The host file behind --config.file: the bind mount whose target holds it.
    let mounted = prometheus
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            let inside = Path::new(&config_flag).strip_prefix(target).ok()?;
            Some(normalize(&compose_path(source).join(inside)))
        });
    match mounted {
        Some(file) if file == normalize(&config_path) => {
            for rules in config
                .get("rule_files")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let beside = config_path.parent().unwrap_or(&config_path).join(rules);
                if !beside.exists() {
                    problems.push(format!("rule file {} does not exist", beside.display()));
                }
            }
        }
        other => problems.push(format!(
            "prometheus' --config.file {config_flag} is not compose/prometheus/prometheus.yml mounted from the repository ({other:?})"
        )),
    }
    fail_on(problems, "Prometheus")
}

/// `replicator <subcommand> --help`, from the binary the workspace built.
fn help(subcommand: &str) -> Result<String, Box<dyn Error>> {
    let binary = harness::replicator_binary()?;
    let output = Command::new(&binary)
        .args([subcommand, "--help"])
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`replicator {subcommand} --help` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `help` documents `word` as a whole token (`--sources` is not `--sources-file`).
fn documents(help: &str, word: &str) -> bool {
    help.match_indices(word).any(|(at, _)| {
        let next = help[at + word.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_flag_and_variable_given_to_replicator_is_in_its_help() -> TestResult {
    let stack = Stack::load()?;
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in stack.service_names()? {
        let service = stack.service(&name)?;
        if !is_replicator(service) {
            continue;
        }
        let command = words(service, "command");
        let Some(subcommand) = command.first() else {
            problems.push(format!("{name} runs `replicator` without a subcommand"));
            continue;
        };
        if !helps.contains_key(subcommand) {
            helps.insert(subcommand.clone(), help(subcommand)?);
        }
        let text = &helps[subcommand];
        for flag in command.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap_or(flag);
            checked += 1;
            if !documents(text, flag) {
                problems.push(format!(
                    "{name}: `replicator {subcommand}` has no flag {flag}"
                ));
            }
        }
        for variable in environment(service)
            .keys()
            .filter(|k| k.starts_with("REPLICATOR_"))
        {
            checked += 1;
            if !documents(text, &format!("env: {variable}")) {
                problems.push(format!(
                    "{name}: `replicator {subcommand}` reads no variable {variable}"
                ));
            }
        }
    }
    if checked == 0 {
        problems.push("no `replicator` service found (image replicator:dev)".into());
    }
    fail_on(problems, "replicator command lines")
}

#[test]
fn mounted_json_and_yaml_files_parse() -> TestResult {
    let stack = Stack::load()?;
    let mut problems = Vec::new();
    let mut parsed = 0;
    for HostPath { owner, path, .. } in host_paths(&stack)? {
        let path = normalize(&path);
        let files: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect()
        } else {
            vec![path]
        };
        for file in files {
            let extension = file
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !file.is_file() {
                continue;
            }
            let outcome: Result<(), String> = match extension {
                "json" => serde_json::from_str::<
                    BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
                >(&read(&file)?)
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "not local columns ({{table: {{uuid or name: {{column: value}}}}}}): {e}"
                    )
                }),
                "yml" | "yaml" => serde_norway::from_str::<Value>(&read(&file)?)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                _ => continue,
            };
            parsed += 1;
            if let Err(error) = outcome {
                problems.push(format!("{owner}: {}: {error}", file.display()));
            }
        }
    }
    if parsed == 0 {
        problems.push(
            "no JSON or YAML file is mounted (expected local columns and Prometheus' config)"
                .into(),
        );
    }
    fail_on(problems, "mounted configuration files")
}

/// `GRANT <privileges> ON [SEQUENCE] <objects> TO ...` statements of a psql script: object →
/// privileges.
fn grants(sql: &str) -> BTreeMap<String, BTreeSet<String>> {
    let script: String = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .filter(|line| !line.trim_start().starts_with('\\'))
        .map(|line| line.replace("\\gset", ";"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for statement in script.split(';') {
        let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(rest) = statement.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privileges, rest)) = rest.split_once(" ON ") else {
            continue;
        };
        let Some((objects, _)) = rest.split_once(" TO ") else {
            continue;
        };
        let objects = objects.strip_prefix("SEQUENCE ").unwrap_or(objects);
        for object in objects.split(',').map(str::trim) {
            out.entry(object.to_owned())
                .or_default()
                .extend(privileges.split(',').map(|p| p.trim().to_owned()));
        }
    }
    out
}

#[test]
fn the_sidecar_role_is_granted_what_the_table_policy_replicates_and_no_more() -> TestResult {
    let sql = read(&compose_dir().join("postgres/grant-sidecar.sql"))?;
    let granted = grants(&sql);
    let policy = replicator::policy::superset();
    let mut problems = Vec::new();
    let has = |object: &str, privileges: &[&str]| {
        granted
            .get(object)
            .is_some_and(|have| privileges.iter().all(|p| have.contains(*p)))
    };
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    for (table, table_policy) in policy.replicated() {
        let object = format!("public.{table}");
        if !has(&object, &["SELECT", "INSERT", "UPDATE", "DELETE"]) {
            problems.push(format!(
                "{object}: SELECT, INSERT, UPDATE, DELETE not granted"
            ));
        }
        allowed.insert(object);
        if let Some(id) = table_policy.local_id {
            let sequence = format!("public.{table}_{id}_seq");
            if !has(&sequence, &["USAGE"]) {
                problems.push(format!("{sequence}: USAGE not granted"));
            }
            allowed.insert(sequence);
        }
    }
    for (table, _) in policy.registry() {
        let object = format!("public.{table}");
        if !has(&object, &["SELECT"]) {
            problems.push(format!(
                "{object}: SELECT not granted (users and roles are matched by name)"
            ));
        }
        if granted.get(&object).is_some_and(|p| p.len() > 1) {
            problems.push(format!("{object}: only SELECT is needed"));
        }
        allowed.insert(object);
    }
    // The permission rows the applier derives like Superset's hooks do (docs/apply.md).
    for derived in [
        "public.ab_permission",
        "public.ab_view_menu",
        "public.ab_permission_view",
        "public.ab_permission_view_role",
        "public.ab_permission_id_seq",
        "public.ab_view_menu_id_seq",
        "public.ab_permission_view_id_seq",
    ] {
        allowed.insert(derived.to_owned());
    }
    for object in granted.keys().filter(|o| o.starts_with("public.")) {
        if !allowed.contains(object) {
            problems.push(format!(
                "{object} is granted, but the policy neither replicates it nor derives it"
            ));
        }
    }
    for needed in [
        "SCHEMA replicator",
        "ALL TABLES IN SCHEMA replicator",
        "FUNCTION pg_catalog.pg_replication_origin_create(text)",
        "FUNCTION pg_catalog.pg_replication_origin_session_setup(text)",
    ] {
        if !granted.contains_key(needed) {
            problems.push(format!("nothing granted on {needed}"));
        }
    }
    fail_on(problems, "compose/postgres/grant-sidecar.sql")
}

#[test]
fn the_image_builds_with_the_pinned_toolchain_and_runs_as_a_user() -> TestResult {
    let dockerfile = read(&compose_dir().join("Dockerfile"))?;
    let toolchain = read(&repo_root().join("rust-toolchain.toml"))?;
    let channel = toolchain
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel"))
        .map(|rest| {
            rest.trim_start_matches([' ', '='])
                .trim()
                .trim_matches('"')
                .to_owned()
        })
        .ok_or("rust-toolchain.toml has no channel")?;
    let mut problems = Vec::new();
    if !dockerfile
        .lines()
        .any(|line| line.trim() == format!("ARG RUST_VERSION={channel}"))
    {
        problems.push(format!(
            "compose/Dockerfile must build with Rust {channel} (`ARG RUST_VERSION={channel}`), as rust-toolchain.toml pins"
        ));
    }
    // The last stage is what runs.
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .unwrap_or_default();
    if !runtime.starts_with("debian:bookworm-slim") {
        problems.push("the runtime stage must be debian:bookworm-slim".into());
    }
    let user = runtime
        .lines()
        .filter_map(|line| line.trim().strip_prefix("USER "))
        .next_back()
        .unwrap_or("root");
    if user.starts_with("root") || user.starts_with('0') {
        problems.push(format!(
            "the runtime stage runs as {user}; use a non-root user"
        ));
    }
    if !runtime
        .lines()
        .any(|line| line.trim() == r#"ENTRYPOINT ["replicator"]"#)
    {
        problems.push(r#"the runtime stage must have ENTRYPOINT ["replicator"]"#.into());
    }
    if !runtime.contains("ca-certificates") {
        problems.push("the runtime stage must install ca-certificates".into());
    }
    fail_on(problems, "compose/Dockerfile")
}
