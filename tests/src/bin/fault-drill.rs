//! `fault-drill`: the fault drill of issue 6, with real processes. Two
//! `lookaside serve` replicas (A and B) read the SAME config file; three
//! `test-backend` processes serve the cluster (a fourth joins later);
//! `lookaside-client` in this process sends open-loop load (`--rate` calls
//! per second, each call recorded) through a Kubernetes-Service-like proxy
//! in front of the replicas (see `lookaside_tests::drill::proxy` for why).
//!
//! Events, each followed by `--settle-s` seconds of load:
//! 1. kill -9 the replica holding the client's ADS stream;
//! 2. restart it on the same port;
//! 3. drain a backend as Kubernetes does: mark it `draining` in the config,
//!    SIGTERM it `--drain-delay-ms` later (it sends GOAWAY and finishes its
//!    calls), then drop it from the config once it has exited;
//! 4. add a fourth backend to the config;
//! 5. corrupt the config file (truncated mid-entry), then
//! 6. fix it (the last good content back);
//! 7. kill -9 a backend without draining (`--backend-kill false` skips it),
//!    and drop it from the config `--remove-delay-ms` later.
//!
//! Prints a Markdown table: per event, failed calls by status code (calls
//! that ended in the event's window, up to the next event; calls in flight
//! on a SIGKILLed backend are counted apart), and the time to converge in
//! the admin view and in the load (definitions are printed with the table).
//! Reports, never asserts; exits 2 if a call failed where the target is 0
//! or the load did not converge.
//!
//! ```sh
//! scripts/fault-drill.sh                      # builds release binaries, runs this
//! target/release/fault-drill --settle-s 10 --rate 300
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Parser};
use lookaside_client::Client as LbClient;
use lookaside_tests::backend::Backend;
use lookaside_tests::config::{Config, Endpoint};
use lookaside_tests::control_plane::{self, ENDPOINT_TYPE};
use lookaside_tests::drill::analysis::{self, Expectation, Failures};
use lookaside_tests::drill::load::{CallRecord, LoadSpec, OpenLoop};
use lookaside_tests::drill::proxy::ServiceProxy;
use lookaside_tests::drill::replica::{self, Replica};
use lookaside_tests::poll::{self, Check};
use tempfile::TempDir;
use tokio::time::Instant;

/// Node id the drill's client shows the control plane.
const NODE_ID: &str = "fault-drill";

/// How often the admin API is polled while waiting for convergence.
const ADMIN_POLL: Duration = Duration::from_millis(25);

/// Command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fault-drill",
    about = "Kills, restarts, drains, adds and corrupts things under load; prints failed calls and convergence times"
)]
struct Args {
    /// Calls per second (open loop).
    #[arg(long, env = "LOOKASIDE_DRILL_RATE", default_value_t = 300)]
    rate: u32,
    /// Load after each event before the next, in seconds.
    #[arg(long, env = "LOOKASIDE_DRILL_SETTLE_S", default_value_t = 20)]
    settle_s: u64,
    /// Load before the first event, in seconds.
    #[arg(long, env = "LOOKASIDE_DRILL_WARMUP_S", default_value_t = 10)]
    warmup_s: u64,
    /// How long each call takes on the backend, in milliseconds (so calls
    /// are in flight when a backend stops).
    #[arg(long, env = "LOOKASIDE_DRILL_CALL_DELAY_MS", default_value_t = 20)]
    call_delay_ms: u64,
    /// Deadline of each call, in milliseconds.
    #[arg(long, env = "LOOKASIDE_DRILL_CALL_TIMEOUT_MS", default_value_t = 2000)]
    call_timeout_ms: u64,
    /// Calls in flight at most; a call due when the cap is reached is not
    /// sent and counts as failed (`NotSent`).
    #[arg(long, env = "LOOKASIDE_DRILL_MAX_IN_FLIGHT", default_value_t = 2000)]
    max_in_flight: usize,
    /// Between marking a backend draining and sending it SIGTERM, in
    /// milliseconds (a pod's preStop delay).
    #[arg(long, env = "LOOKASIDE_DRILL_DRAIN_DELAY_MS", default_value_t = 2000)]
    drain_delay_ms: u64,
    /// Between SIGKILL of a backend and its removal from the config, in
    /// milliseconds (the endpoint controller noticing the dead pod).
    #[arg(long, env = "LOOKASIDE_DRILL_REMOVE_DELAY_MS", default_value_t = 1000)]
    remove_delay_ms: u64,
    /// Whether to run the last event, kill -9 of a backend without draining.
    #[arg(long, env = "LOOKASIDE_DRILL_BACKEND_KILL", default_value_t = true, action = ArgAction::Set)]
    backend_kill: bool,
    /// The replicas' `--config-poll-ms`.
    #[arg(long, env = "LOOKASIDE_DRILL_CONFIG_POLL_MS", default_value_t = 200)]
    config_poll_ms: u64,
    /// The client's first reconnect backoff towards the control plane, in
    /// milliseconds (the library's default).
    #[arg(
        long,
        env = "LOOKASIDE_DRILL_RECONNECT_INITIAL_MS",
        default_value_t = 200
    )]
    reconnect_initial_ms: u64,
    /// The client's longest reconnect backoff, in milliseconds (the
    /// library's default).
    #[arg(
        long,
        env = "LOOKASIDE_DRILL_RECONNECT_MAX_MS",
        default_value_t = 10_000
    )]
    reconnect_max_ms: u64,
    /// How far a backend's share of the calls after an event may be from its
    /// weight's share, in percentage points.
    #[arg(long, env = "LOOKASIDE_DRILL_TOLERANCE_POINTS", default_value_t = 5.0)]
    tolerance_points: f64,
    /// The cluster name.
    #[arg(long, env = "LOOKASIDE_DRILL_CLUSTER", default_value = "greeter")]
    cluster: String,
    /// Also print calls per second per backend over the whole run.
    #[arg(long, env = "LOOKASIDE_DRILL_TIMELINE")]
    timeline: bool,
}

impl Args {
    fn settle(&self) -> Duration {
        Duration::from_secs(self.settle_s)
    }
}

/// One endpoint line of the config file.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    address: SocketAddr,
    draining: bool,
}

/// What happened at one event and what the drill measured live.
#[derive(Debug, Clone)]
struct Event {
    label: String,
    /// When the drill acted, since the origin.
    at: Duration,
    /// When a backend was SIGKILLed, if this event did.
    kill_at: Option<Duration>,
    /// The backends that should take calls after the event.
    expected: Vec<String>,
    /// Time to converge in the admin view, or why it is not given.
    admin: std::result::Result<Duration, String>,
    /// What else was seen.
    notes: Vec<String>,
}

/// The running drill.
struct Drill {
    args: Args,
    origin: Instant,
    config_path: PathBuf,
    backends: Vec<Backend>,
    members: Vec<Member>,
    replicas: Vec<Replica>,
    /// Index of a replica that is down, if one is.
    down: Option<usize>,
    proxy: ServiceProxy,
    events: Vec<Event>,
    _dir: TempDir,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let met = runtime.block_on(run(args))?;
    runtime.shutdown_timeout(Duration::from_millis(500));
    if !met {
        std::process::exit(2);
    }
    Ok(())
}

async fn run(args: Args) -> Result<bool> {
    let origin = Instant::now();
    let loadavg_before = loadavg();
    let delay = Duration::from_millis(args.call_delay_ms);
    let backends = Backend::start_all_with_delay(&["b1", "b2", "b3"], delay).await?;
    let members: Vec<Member> = backends
        .iter()
        .map(|backend| Member {
            name: backend.name().to_owned(),
            address: backend.address(),
            draining: false,
        })
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("lookaside-drill-")
        .tempdir()
        .context("creating a temporary folder")?;
    let config_path = dir.path().join("lookaside.yaml");
    control_plane::write_atomically(
        &config_path,
        &render_config(&args.cluster, &members).to_yaml(),
    )
    .await?;
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut replicas = Vec::new();
    for name in ["A", "B"] {
        replicas.push(Replica::start(name, &config_path, any_port, args.config_poll_ms).await?);
    }
    let proxy = ServiceProxy::start(replicas.iter().map(Replica::xds_addr).collect()).await?;
    let mut drill = Drill {
        config_path: config_path.clone(),
        backends,
        members,
        replicas,
        down: None,
        proxy,
        events: Vec::new(),
        origin,
        args: args.clone(),
        _dir: dir,
    };
    println!(
        "replica A on {}, replica B on {}, both reading {}; the client dials the proxy on {}",
        drill.replicas[0].xds_addr(),
        drill.replicas[1].xds_addr(),
        config_path.display(),
        drill.proxy.address()
    );

    let lb = LbClient::builder(format!("http://{}", drill.proxy.address()))
        .node_id(NODE_ID)
        .reconnect_backoff(
            Duration::from_millis(args.reconnect_initial_ms),
            Duration::from_millis(args.reconnect_max_ms),
        )
        .build()
        .context("building the lookaside client")?;
    let spec = LoadSpec {
        rate: args.rate,
        call_timeout: Duration::from_millis(args.call_timeout_ms),
        max_in_flight: args.max_in_flight,
    };
    let load = OpenLoop::start(lb.channel(&args.cluster), spec, origin);

    // Warm-up: every backend answers, both replicas agree, the client ACKed.
    let ready = Instant::now() + Duration::from_secs(20);
    loop {
        let (backends, _) = load.summary_since(Duration::ZERO);
        if backends.len() == 3 {
            break;
        }
        if Instant::now() > ready {
            bail!("the load did not reach all three backends within 20 s: {backends:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = drill.expected_admin();
    drill
        .wait_admin(Instant::now(), ready, &expected)
        .await
        .map_err(|seen| anyhow::anyhow!("replicas never agreed on the first config: {seen}"))?;
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;

    drill.kill_replica().await?;
    drill.restart_replica().await?;
    drill.drain_backend("b2").await?;
    drill.add_backend("b4").await?;
    drill.corrupt_config().await?;
    if args.backend_kill {
        drill.kill_backend("b3").await?;
    }

    let ended = drill.since_origin();
    let records = load.stop().await;
    drop(lb);
    let met = report(&drill, &records, ended, &loadavg_before);
    Ok(met)
}

impl Drill {
    fn since_origin(&self) -> Duration {
        self.origin.elapsed()
    }

    fn config(&self) -> Config {
        render_config(&self.args.cluster, &self.members)
    }

    async fn write_config(&self) -> Result<()> {
        control_plane::write_atomically(&self.config_path, &self.config().to_yaml()).await
    }

    /// Backends that should take calls: the members not draining.
    fn serving(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| !member.draining)
            .map(|member| member.name.clone())
            .collect()
    }

    /// What every live replica's GetAssignment should list: (address,
    /// health), sorted.
    fn expected_admin(&self) -> Vec<(String, String)> {
        let mut expected: Vec<(String, String)> = self
            .members
            .iter()
            .map(|member| {
                let health = if member.draining {
                    "DRAINING"
                } else {
                    "HEALTHY"
                };
                (member.address.to_string(), health.to_owned())
            })
            .collect();
        expected.sort();
        expected
    }

    fn live_replicas(&self) -> impl Iterator<Item = &Replica> {
        self.replicas
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != self.down)
            .map(|(_, replica)| replica)
    }

    fn backend(&mut self, name: &str) -> Result<&mut Backend> {
        self.backends
            .iter_mut()
            .find(|backend| backend.name() == name)
            .with_context(|| format!("no backend {name}"))
    }

    /// Waits until every live replica lists `expected` for the cluster, at
    /// the same assignment version; returns the time since `since`, or what
    /// was seen last once `deadline` passed.
    async fn wait_admin(
        &self,
        since: Instant,
        deadline: Instant,
        expected: &[(String, String)],
    ) -> std::result::Result<Duration, String> {
        let cluster = &self.args.cluster;
        loop {
            let mut seen = Vec::new();
            let mut versions = Vec::new();
            let mut matching = true;
            for replica in self.live_replicas() {
                match replica.assignment(cluster).await {
                    Ok(Some(assignment)) => {
                        let mut endpoints: Vec<(String, String)> = assignment
                            .endpoints
                            .iter()
                            .map(|e| (e.address.clone(), e.health.clone()))
                            .collect();
                        endpoints.sort();
                        matching &= endpoints == expected;
                        versions.push(assignment.assignment_version.clone());
                        seen.push(format!("{}: {endpoints:?}", replica.name()));
                    }
                    Ok(None) => {
                        matching = false;
                        seen.push(format!("{}: no cluster {cluster}", replica.name()));
                    }
                    Err(error) => {
                        matching = false;
                        seen.push(format!("{}: {error:#}", replica.name()));
                    }
                }
            }
            versions.dedup();
            if matching && versions.len() == 1 {
                return Ok(since.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!("not within the settle period; last seen {seen:?}"));
            }
            tokio::time::sleep(ADMIN_POLL).await;
        }
    }

    /// The replica whose ListClients shows the drill's client with its
    /// assignment ACKed.
    async fn client_replica(&self) -> Option<usize> {
        for (index, replica) in self.replicas.iter().enumerate() {
            if Some(index) == self.down {
                continue;
            }
            let Ok(clients) = replica.clients().await else {
                continue;
            };
            let acked = clients.iter().any(|client| {
                client.node_id == NODE_ID
                    && client.types.iter().any(|state| {
                        state.type_url == ENDPOINT_TYPE
                            && state.acks > 0
                            && !state.acked_version.is_empty()
                            && state.acked_version == state.sent_version
                            && state.pending_nonce.is_empty()
                    })
            });
            if acked {
                return Some(index);
            }
        }
        None
    }

    /// Records an event, then keeps the load running until its settle
    /// period has passed.
    async fn settle(&mut self, event: Event, started: Instant) {
        println!(
            "{:>8.1} s  {}: admin {}",
            event.at.as_secs_f64(),
            event.label,
            match &event.admin {
                Ok(took) => format!("converged in {} ms", took.as_millis()),
                Err(why) => why.clone(),
            }
        );
        for note in &event.notes {
            println!("            {note}");
        }
        self.events.push(event);
        tokio::time::sleep_until(started + self.args.settle()).await;
    }

    fn event(&self, label: &str, at: Duration) -> Event {
        Event {
            label: label.to_owned(),
            at,
            kill_at: None,
            expected: self.serving(),
            admin: Err("n/a".to_owned()),
            notes: Vec::new(),
        }
    }

    /// Event 1: kill -9 the replica holding the client's ADS stream.
    async fn kill_replica(&mut self) -> Result<()> {
        let victim = poll::until(
            "a replica to list the drill's client with its EDS ACKed",
            Duration::from_secs(10),
            async || {
                Ok(match self.client_replica().await {
                    Some(index) => Check::Done(index),
                    None => Check::NotYet("no replica lists it".to_owned()),
                })
            },
        )
        .await?;
        let other = 1 - victim;
        let routed_before = self.proxy.routed().len();
        let started = Instant::now();
        let at = self.since_origin();
        self.replicas[victim].kill().await?;
        self.down = Some(victim);
        let label = format!(
            "kill -9 replica {} (holds the client's ADS stream)",
            self.replicas[victim].name()
        );
        let mut event = self.event(&label, at);
        let deadline = started + self.args.settle();
        event.admin = loop {
            if self.client_replica().await == Some(other) {
                break Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                break Err("the client never ACKed on the other replica".to_owned());
            }
            tokio::time::sleep(ADMIN_POLL).await;
        };
        let routed: Vec<String> = self.proxy.routed()[routed_before..]
            .iter()
            .map(|routed| {
                let to = routed.upstream.map_or("nowhere".to_owned(), |upstream| {
                    self.replica_named(upstream)
                });
                format!("+{} ms to {to}", (routed.at - started).as_millis())
            })
            .collect();
        event.notes.push(format!(
            "admin = until replica {}'s ListClients shows the client with its EDS ACKed; new \
             connections through the proxy: {routed:?}",
            self.replicas[other].name()
        ));
        self.settle(event, started).await;
        Ok(())
    }

    fn replica_named(&self, address: SocketAddr) -> String {
        self.replicas
            .iter()
            .find(|replica| replica.xds_addr() == address)
            .map_or_else(|| address.to_string(), |r| r.name().to_owned())
    }

    /// Event 2: restart the killed replica on its port.
    async fn restart_replica(&mut self) -> Result<()> {
        let victim = self.down.context("no replica is down")?;
        let started = Instant::now();
        let at = self.since_origin();
        self.replicas[victim].restart().await?;
        let listening = started.elapsed();
        self.down = None;
        let label = format!("restart replica {}", self.replicas[victim].name());
        let mut event = self.event(&label, at);
        let expected = self.expected_admin();
        event.admin = self
            .wait_admin(started, started + self.args.settle(), &expected)
            .await;
        event.notes.push(format!(
            "listening {} ms after the start; admin = until both replicas' GetAssignment list \
             the 3 endpoints at one version; the client stays where it is (on {})",
            listening.as_millis(),
            self.client_replica()
                .await
                .map_or("no replica".to_owned(), |index| self.replicas[index]
                    .name()
                    .to_owned())
        ));
        self.settle(event, started).await;
        Ok(())
    }

    /// Event 3: drain a backend the Kubernetes way.
    async fn drain_backend(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let at = self.since_origin();
        for member in self.members.iter_mut().filter(|m| m.name == name) {
            member.draining = true;
        }
        self.write_config().await?;
        let label = format!("drain backend {name} (draining in config, SIGTERM after)");
        let mut event = self.event(&label, at);
        let deadline = started + self.args.settle();
        let expected = self.expected_admin();
        let index = self
            .backends
            .iter()
            .position(|backend| backend.name() == name)
            .with_context(|| format!("no backend {name}"))?;
        let mut victim = self.backends.remove(index);
        // The SIGTERM comes after the delay whether or not the replicas have
        // caught up, as the kubelet's does.
        let sigterm_at = started + Duration::from_millis(self.args.drain_delay_ms);
        let (admin, (sigterm, terminated, exited)) =
            tokio::join!(self.wait_admin(started, deadline, &expected), async {
                tokio::time::sleep_until(sigterm_at).await;
                let sigterm = started.elapsed();
                let terminated = victim.terminate().await;
                (sigterm, terminated, started.elapsed())
            });
        self.backends.push(victim);
        event.admin = admin;
        event.notes.push(match terminated {
            Ok(status) => format!(
                "SIGTERM at +{} ms; {name} drained and exited ({status}) {} ms later",
                sigterm.as_millis(),
                (exited - sigterm).as_millis()
            ),
            Err(error) => format!(
                "SIGTERM at +{} ms; {name} did NOT stop gracefully: {error:#}",
                sigterm.as_millis()
            ),
        });
        self.members.retain(|member| member.name != name);
        self.write_config().await?;
        let removed_at = Instant::now();
        let expected = self.expected_admin();
        let removed = self.wait_admin(removed_at, deadline, &expected).await;
        event.notes.push(format!(
            "admin = until both replicas list {name} as DRAINING; after its exit it was dropped \
             from the config at +{} ms, gone from both replicas {}",
            (removed_at - started).as_millis(),
            match removed {
                Ok(took) => format!("{} ms later", took.as_millis()),
                Err(why) => why,
            }
        ));
        self.settle(event, started).await;
        Ok(())
    }

    /// Event 4: a new backend joins.
    async fn add_backend(&mut self, name: &str) -> Result<()> {
        let delay = Duration::from_millis(self.args.call_delay_ms);
        let backend = Backend::start_with_delay(name, delay).await?;
        self.members.push(Member {
            name: name.to_owned(),
            address: backend.address(),
            draining: false,
        });
        self.backends.push(backend);
        let started = Instant::now();
        let at = self.since_origin();
        self.write_config().await?;
        let label = format!("add backend {name} to the config");
        let mut event = self.event(&label, at);
        let expected = self.expected_admin();
        event.admin = self
            .wait_admin(started, started + self.args.settle(), &expected)
            .await;
        event
            .notes
            .push(format!("admin = until both replicas list {name}"));
        self.settle(event, started).await;
        Ok(())
    }

    /// Events 5 and 6: corrupt the config file, then fix it.
    async fn corrupt_config(&mut self) -> Result<()> {
        let good = self.config().to_yaml();
        let victim = self
            .members
            .get(1)
            .context("fewer than two endpoints in the config")?;
        let line = self
            .config()
            .line_of(&victim.address.to_string())
            .context("the endpoint's line")?;
        // Truncated in the middle of an endpoint, as a half-done edit.
        let line_index = usize::try_from(line)? - 1;
        let mut bad: Vec<String> = good.lines().take(line_index).map(str::to_owned).collect();
        let cut = good.lines().nth(line_index).context("the endpoint line")?;
        bad.push(cut[..cut.len() / 2].to_owned());
        let bad = bad.join("\n") + "\n";
        let log_marks: Vec<usize> = self
            .replicas
            .iter()
            .map(|replica| replica.output().len())
            .collect();

        let started = Instant::now();
        let at = self.since_origin();
        control_plane::write_atomically(&self.config_path, &bad).await?;
        let mut event = self.event("corrupt the config file (truncated mid-entry)", at);
        let deadline = started + self.args.settle();
        event.admin = loop {
            let mut reported = Vec::new();
            for replica in &self.replicas {
                let sources = replica.sources().await.unwrap_or_default();
                reported.push(
                    sources
                        .iter()
                        .find_map(|source| source.error.clone())
                        .map(|error| (replica.name().to_owned(), error.line, error.message)),
                );
            }
            if reported.iter().all(Option::is_some) {
                let reported: Vec<_> = reported.into_iter().flatten().collect();
                event.notes.push(format!(
                    "admin = until both replicas' ListSources report the error; the file was cut \
                     on line {line}; they report {:?}",
                    reported
                        .iter()
                        .map(|(name, line, _)| format!("{name}: line {line}"))
                        .collect::<Vec<_>>()
                ));
                break Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                break Err("no error reported by both replicas".to_owned());
            }
            tokio::time::sleep(ADMIN_POLL).await;
        };
        for (replica, mark) in self.replicas.iter().zip(&log_marks) {
            let logged = replica
                .output()
                .lines()
                .iter()
                .skip(*mark)
                .find_map(|line| replica::rejection(line));
            event.notes.push(format!(
                "replica {} logged: {}",
                replica.name(),
                logged.unwrap_or_else(|| "NOTHING".to_owned())
            ));
        }
        let expected = self.expected_admin();
        // Still the last good config, just before the fix.
        tokio::time::sleep_until(started + self.args.settle() - Duration::from_millis(500)).await;
        let kept = self
            .wait_admin(Instant::now(), Instant::now(), &expected)
            .await;
        event.notes.push(match kept {
            Ok(_) => "both replicas still served the last good config at the end".to_owned(),
            Err(seen) => format!("the last good config was NOT kept: {seen}"),
        });
        self.settle(event, started).await;

        let started = Instant::now();
        let at = self.since_origin();
        control_plane::write_atomically(&self.config_path, &good).await?;
        let mut event = self.event("fix the config file (last good content back)", at);
        let deadline = started + self.args.settle();
        event.admin = loop {
            let mut cleared = true;
            for replica in &self.replicas {
                match replica.sources().await {
                    Ok(sources) => cleared &= sources.iter().all(|s| s.error.is_none()),
                    Err(_) => cleared = false,
                }
            }
            if cleared {
                break Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                break Err("an error is still reported".to_owned());
            }
            tokio::time::sleep(ADMIN_POLL).await;
        };
        event
            .notes
            .push("admin = until neither replica's ListSources reports an error".to_owned());
        self.settle(event, started).await;
        Ok(())
    }

    /// Event 7: kill -9 a backend without draining; the config drops it
    /// later.
    async fn kill_backend(&mut self, name: &str) -> Result<()> {
        let started = Instant::now();
        let at = self.since_origin();
        self.backend(name)?.kill().await?;
        self.members.retain(|member| member.name != name);
        let label = format!("kill -9 backend {name} (no draining)");
        let mut event = self.event(&label, at);
        event.kill_at = Some(at);
        tokio::time::sleep_until(started + Duration::from_millis(self.args.remove_delay_ms)).await;
        self.write_config().await?;
        let removed_at = Instant::now();
        let expected = self.expected_admin();
        event.admin = self
            .wait_admin(removed_at, started + self.args.settle(), &expected)
            .await;
        event.notes.push(format!(
            "admin = from its removal from the config at +{} ms until both replicas no longer \
             list it",
            (removed_at - started).as_millis()
        ));
        self.settle(event, started).await;
        Ok(())
    }
}

/// The config file for `members` of `cluster`: weight 1 each, the static
/// policy (the drill is about faults, not load-driven weights).
fn render_config(cluster: &str, members: &[Member]) -> Config {
    Config::new()
        .cluster(
            cluster,
            members.iter().map(|member| {
                let endpoint = Endpoint::new(member.address, 1);
                if member.draining {
                    endpoint.with_health("draining")
                } else {
                    endpoint
                }
            }),
        )
        .policy(cluster, "static")
}

/// One row of the table: an event, or the warm-up before the first.
struct Row<'a> {
    label: &'a str,
    at: Duration,
    kill_at: Option<Duration>,
    expected: &'a [String],
    admin: String,
    notes: &'a [String],
}

/// Prints the figures; returns whether every target was met.
fn report(drill: &Drill, records: &[CallRecord], ended: Duration, loadavg_before: &str) -> bool {
    let args = &drill.args;
    let failed_total = records.iter().filter(|record| record.failed()).count();
    let first_three = ["b1".to_owned(), "b2".to_owned(), "b3".to_owned()];
    let mut rows = vec![Row {
        label: "warm-up (3 backends, no fault)",
        at: Duration::ZERO,
        kill_at: None,
        expected: &first_three,
        admin: "-".to_owned(),
        notes: &[],
    }];
    rows.extend(drill.events.iter().map(|event| Row {
        label: &event.label,
        at: event.at,
        kill_at: event.kill_at,
        expected: &event.expected,
        admin: match &event.admin {
            Ok(took) => format!("{} ms", took.as_millis()),
            Err(why) => why.clone(),
        },
        notes: &event.notes,
    }));

    println!();
    println!("## Fault drill");
    println!();
    println!(
        "machine: {} cores, load average before {loadavg_before}, after {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        loadavg()
    );
    println!(
        "load: {} calls/s open loop through lookaside-client, {} ms per call on the backend, \
         deadline {} ms; {} calls in {:.1} s, {} failed; policy static, weight 1 each; replicas \
         poll the config every {} ms; settle {} s after each event",
        args.rate,
        args.call_delay_ms,
        args.call_timeout_ms,
        records.len(),
        ended.as_secs_f64(),
        failed_total,
        args.config_poll_ms,
        args.settle_s
    );
    println!();
    println!(
        "| # | event | at (s) | failed calls | in flight at the kill (allowed) | admin \
         converged | load converged | split after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut met = true;
    let mut details = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let until = rows.get(index + 1).map_or(ended, |next| next.at);
        // A call that fails on the way out is still the last event's.
        let failures_until = rows
            .get(index + 1)
            .map_or(ended + Duration::from_secs(60), |next| next.at);
        let failures: Failures = analysis::failures(records, row.at, failures_until, row.kill_at);
        met &= failures.unexpected() == 0;
        let before: &[String] = index
            .checked_sub(1)
            .and_then(|previous| rows.get(previous))
            .map_or(&[], |previous| previous.expected);
        let new: Vec<String> = row
            .expected
            .iter()
            .filter(|name| !before.contains(name))
            .cloned()
            .collect();
        let expectation = Expectation {
            expected: row.expected.iter().map(|name| (name.clone(), 1)).collect(),
            new: if index == 0 { Vec::new() } else { new.clone() },
            kill_at: row.kill_at,
        };
        let converged =
            analysis::load_converged(records, row.at, until, &expectation, args.tolerance_points);
        met &= converged.after.is_some() && converged.split_ok;
        let load = converged.after.map_or("never".to_owned(), |took| {
            format!("{} ms", took.as_millis())
        });
        let in_flight = if row.kill_at.is_some() {
            analysis::describe_counts(&failures.in_flight_at_kill)
        } else {
            "-".to_owned()
        };
        println!(
            "| {index} | {} | {:.1} | {} | {in_flight} | {} | {load} | {}{} |",
            row.label,
            row.at.as_secs_f64(),
            analysis::describe_counts(&failures.by_code),
            row.admin,
            analysis::describe_split(&converged.split),
            if converged.split_ok { "" } else { " (OFF)" }
        );

        if index == 0 {
            continue;
        }
        let mut lines: Vec<String> = row.notes.to_vec();
        for name in &new {
            if let Some(first) = analysis::first_answer(records, name, row.at) {
                lines.push(format!(
                    "first call answered by {name} started {} ms after the event",
                    (first - row.at).as_millis()
                ));
            }
        }
        for name in before.iter().filter(|name| !row.expected.contains(name)) {
            lines.push(match analysis::last_answer(records, name, row.at) {
                Some(last) => format!(
                    "last call answered by {name} started {} ms after the event",
                    (last - row.at).as_millis()
                ),
                None => format!("{name} answered no call started after the event"),
            });
        }
        details.push(format!("- {index}: {}", row.label));
        details.extend(lines.iter().map(|line| format!("  - {line}")));
    }
    println!();
    println!("What each event showed:");
    for line in &details {
        println!("{line}");
    }
    let failed: Vec<&CallRecord> = records.iter().filter(|r| r.failed()).collect();
    if !failed.is_empty() {
        println!();
        println!("Failed calls (first 20):");
        for record in failed.iter().take(20) {
            println!(
                "  started {:.6} s, ended {:.6} s: {:?}",
                record.start.as_secs_f64(),
                record.end.as_secs_f64(),
                record.outcome
            );
        }
    }
    println!();
    println!(
        "Definitions: failed calls = calls that ended between the event and the next one, by \
         status code (NotSent: the generator's in-flight cap was reached); for a SIGKILLed \
         backend, failed calls that ended after the kill and started before the client could \
         know of it (the end of the first call that failed after the kill) are counted apart: \
         in flight at the kill, the only failures allowed. admin converged = from the drill's action until the admin \
         API of the live replicas shows the expected state (each event says which). load \
         converged = from the event to the start of the last call (among those started before \
         the next event) that failed or was answered by a backend that should no longer take \
         calls, or to the first call answered by a backend that joined, whichever is later; 0 \
         when every call matched from the start. split after = successful calls per backend \
         from then to the next event, OFF if a share is more than {} points from its weight's.",
        args.tolerance_points
    );
    if args.timeline {
        print_timeline(records, ended);
    }
    println!();
    println!(
        "target (0 failed calls except in flight on a SIGKILLed backend; load converged): {}",
        if met { "met" } else { "NOT met" }
    );
    met
}

/// Calls per second per backend, and failures, one line per second.
fn print_timeline(records: &[CallRecord], ended: Duration) {
    println!();
    println!("Timeline (calls by start second):");
    let seconds = ended.as_secs() + 1;
    for second in 0..seconds {
        let from = Duration::from_secs(second);
        let until = from + Duration::from_secs(1);
        let split = analysis::split(records, from, until);
        let failed: BTreeMap<String, u64> = records
            .iter()
            .filter(|r| r.start >= from && r.start < until)
            .filter_map(CallRecord::failure_label)
            .fold(BTreeMap::new(), |mut counts, label| {
                *counts.entry(label).or_default() += 1;
                counts
            });
        println!(
            "  {second:>4} s  {split:?}  failed {}",
            analysis::describe_counts(&failed)
        );
    }
}

/// `/proc/loadavg`'s first three fields, or `unknown`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
