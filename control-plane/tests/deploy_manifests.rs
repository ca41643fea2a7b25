//! The manifests under `deploy/kubernetes/` against the binary: every
//! document parses into its `k8s-openapi` type with no unknown field, the
//! ClusterRole grants exactly what the Kubernetes source requests
//! (`API_ACCESS`), and the Deployment's flags, environment, ports and probes
//! agree with the `lookaside` CLI and its defaults; the Service, the
//! PodDisruptionBudget and the kustomization point at what exists.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lookaside_control_plane::cli::{Cli, Command, ServeArgs};
use lookaside_control_plane::server::ADS_SERVICE;
use lookaside_control_plane::sources::kube::API_ACCESS;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

/// Every object of `deploy/kubernetes/`, typed.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    disruption_budgets: Vec<PodDisruptionBudget>,
    /// File names, for the kustomization check.
    files: BTreeSet<String>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Parses `doc` as `T`, and checks that nothing was dropped on the way: a
/// misspelt or misplaced field would be ignored by Kubernetes' serde too.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, origin: &str) -> T {
    let object: T = serde_yaml_ng::from_value(doc.clone())
        .unwrap_or_else(|error| panic!("{origin}: does not parse: {error}"));
    let back = serde_yaml_ng::to_value(&object).expect("serializes");
    if let Some(path) = first_difference(doc, &back, String::new()) {
        panic!("{origin}: {path} is lost when parsed (an unknown or misplaced field?)");
    }
    object
}

/// The path of the first field of `written` that `parsed` lacks or holds
/// differently.
fn first_difference(written: &Value, parsed: &Value, path: String) -> Option<String> {
    match (written, parsed) {
        (Value::Mapping(written), Value::Mapping(parsed)) => {
            written.iter().find_map(|(key, value)| {
                let key = key.as_str().unwrap_or("?");
                let path = format!("{path}.{key}");
                match parsed.get(key) {
                    Some(other) => first_difference(value, other, path),
                    None => Some(path),
                }
            })
        }
        (Value::Sequence(written), Value::Sequence(parsed)) if written.len() == parsed.len() => {
            written
                .iter()
                .zip(parsed)
                .enumerate()
                .find_map(|(i, (a, b))| first_difference(a, b, format!("{path}[{i}]")))
        }
        (written, parsed) => (written != parsed).then_some(path),
    }
}

fn load() -> Manifests {
    let mut manifests = Manifests::default();
    let dir = deploy_dir().join("kubernetes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes exists")
        .map(|entry| entry.expect("entry").path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.ends_with(".yaml"),
            "{name}: only .yaml files belong here"
        );
        let text = std::fs::read_to_string(&path).expect("readable");
        let mut documents = 0;
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let doc = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{name}: document {index}: {error}"));
            if doc.is_null() {
                continue;
            }
            documents += 1;
            let origin = format!("{name} document {index}");
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            match kind.as_str() {
                "Namespace" => manifests.namespaces.push(typed(&doc, &origin)),
                "ServiceAccount" => manifests.service_accounts.push(typed(&doc, &origin)),
                "ClusterRole" => manifests.cluster_roles.push(typed(&doc, &origin)),
                "ClusterRoleBinding" => manifests.cluster_role_bindings.push(typed(&doc, &origin)),
                "Deployment" => manifests.deployments.push(typed(&doc, &origin)),
                "Service" => manifests.services.push(typed(&doc, &origin)),
                "PodDisruptionBudget" => manifests.disruption_budgets.push(typed(&doc, &origin)),
                other => panic!("{origin}: kind {other:?} is not checked by this test"),
            }
        }
        assert!(documents > 0, "{name}: empty");
        manifests.files.insert(name);
    }
    manifests
}

fn one<'a, T>(items: &'a [T], what: &str) -> &'a T {
    assert_eq!(items.len(), 1, "expected exactly one {what}");
    &items[0]
}

fn lookaside_container(deployment: &Deployment) -> &Container {
    let spec = deployment.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    pod.containers
        .iter()
        .find(|c| c.name == "lookaside")
        .expect("a container named lookaside")
}

fn container_port(container: &Container, name: &str) -> u16 {
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"));
    assert_eq!(port.protocol.as_deref().unwrap_or("TCP"), "TCP");
    u16::try_from(port.container_port).expect("a port number")
}

/// `lookaside ARGS` as the container runs it: its arguments, then every
/// `LOOKASIDE_*` variable turned into the flag that reads it. A variable no
/// flag reads fails the test (the binary would silently ignore it).
fn serve_args(container: &Container) -> ServeArgs {
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    let mut argv = vec!["lookaside".to_string()];
    argv.extend(container.command.iter().flatten().skip(1).cloned());
    argv.extend(container.args.iter().flatten().cloned());
    assert_eq!(argv.get(1).map(String::as_str), Some("serve"));
    for variable in container.env.iter().flatten() {
        let value = variable
            .value
            .clone()
            .unwrap_or_else(|| panic!("{}: expected a literal value", variable.name));
        if !variable.name.starts_with("LOOKASIDE_") {
            continue;
        }
        let arg = serve
            .get_arguments()
            .find(|arg| {
                arg.get_env()
                    .is_some_and(|env| env == variable.name.as_str())
            })
            .unwrap_or_else(|| panic!("{}: no `lookaside serve` flag reads it", variable.name));
        let flag = format!("--{}", arg.get_long().expect("a long flag"));
        match arg.get_action() {
            ArgAction::SetTrue => match value.as_str() {
                "true" => argv.push(flag),
                "false" => {}
                other => panic!("{}: {other:?} is not true or false", variable.name),
            },
            _ => argv.push(format!("{flag}={value}")),
        }
    }
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Serve(args),
        }) => *args,
        Ok(_) => panic!("{argv:?} is not `serve`"),
        Err(error) => panic!("{argv:?} does not parse: {error}"),
    }
}

/// `lookaside serve --kube` with every other flag at its default.
fn defaults() -> ServeArgs {
    match Cli::try_parse_from(["lookaside", "serve", "--kube"]) {
        Ok(Cli {
            command: Command::Serve(args),
        }) => *args,
        other => panic!("defaults: {other:?}"),
    }
}

fn metrics_port(args: &ServeArgs) -> u16 {
    args.telemetry
        .metrics_listen
        .parse::<std::net::SocketAddr>()
        .expect("metrics enabled on an address")
        .port()
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    let spec = deployment.spec.as_ref().unwrap();
    spec.template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let manifests = load();
    one(&manifests.namespaces, "Namespace");
    one(&manifests.service_accounts, "ServiceAccount");
    one(&manifests.cluster_roles, "ClusterRole");
    one(&manifests.cluster_role_bindings, "ClusterRoleBinding");
    one(&manifests.deployments, "Deployment");
    one(&manifests.services, "Service");
    one(&manifests.disruption_budgets, "PodDisruptionBudget");

    // Every namespaced object lives in the one namespace.
    let namespace = one(&manifests.namespaces, "Namespace")
        .metadata
        .name
        .clone()
        .unwrap();
    let namespaces = [
        &one(&manifests.service_accounts, "").metadata,
        &one(&manifests.deployments, "").metadata,
        &one(&manifests.services, "").metadata,
        &one(&manifests.disruption_budgets, "").metadata,
    ];
    for metadata in namespaces {
        assert_eq!(metadata.namespace.as_ref(), Some(&namespace));
    }
}

#[test]
fn the_cluster_role_grants_exactly_what_the_source_requests() {
    let manifests = load();
    let role = one(&manifests.cluster_roles, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert!(rule.resource_names.is_none(), "resourceNames: {rule:?}");
        assert!(rule.non_resource_urls.is_none(), "URLs: {rule:?}");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        !group.contains('*') && !resource.contains('*') && verb != "*",
                        "wildcard in {rule:?}"
                    );
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let requested: BTreeSet<(String, String, String)> = API_ACCESS
        .iter()
        .flat_map(|access| {
            access.verbs.iter().map(|verb| {
                (
                    access.group.to_string(),
                    access.resource.to_string(),
                    (*verb).to_string(),
                )
            })
        })
        .collect();
    assert_eq!(granted, requested, "ClusterRole rules vs API_ACCESS");
    assert!(
        requested.contains(&(
            "discovery.k8s.io".into(),
            "endpointslices".into(),
            "watch".into()
        )) && requested.contains(&(String::new(), "services".into(), "list".into())),
        "API_ACCESS names the watched kinds: {requested:?}"
    );

    // Bound to the account the Deployment runs as.
    let binding = one(&manifests.cluster_role_bindings, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let account = one(&manifests.service_accounts, "ServiceAccount");
    let deployment = one(&manifests.deployments, "Deployment");
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, account.metadata.namespace);
}

#[test]
fn the_deployment_runs_the_binary_with_its_own_flags_ports_and_probes() {
    let manifests = load();
    let deployment = one(&manifests.deployments, "Deployment");
    let container = lookaside_container(deployment);
    let args = serve_args(container);
    let defaults = defaults();

    // Kubernetes discovery on, every namespace, the documented opt-in label.
    let kube = args.source.kube.options().expect("--kube is on");
    assert_eq!(kube, defaults.source.kube.options().unwrap());
    assert_eq!(args.source.config, None);

    // Container ports are what the flags listen on, and those are the
    // binary's defaults (so the env lines only restate them).
    let grpc = container_port(container, "grpc");
    let metrics = container_port(container, "metrics");
    assert_eq!(args.xds.xds_listen.port(), grpc);
    assert_eq!(defaults.xds.xds_listen.port(), grpc);
    assert_eq!(grpc, 18000);
    assert!(
        args.xds.xds_listen.ip().is_unspecified(),
        "must listen on the pod IP"
    );
    assert_eq!(metrics_port(&args), metrics);
    assert_eq!(metrics_port(&defaults), metrics);
    assert_eq!(metrics, 9090);

    // Readiness: the ADS service, which turns SERVING once every source has
    // listed. Liveness: the server as a whole.
    let readiness = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.grpc.as_ref())
        .expect("a gRPC readiness probe");
    assert_eq!(u16::try_from(readiness.port).ok(), Some(grpc));
    assert_eq!(readiness.service.as_deref(), Some(ADS_SERVICE));
    let liveness = container
        .liveness_probe
        .as_ref()
        .and_then(|p| p.grpc.as_ref())
        .expect("a gRPC liveness probe");
    assert_eq!(u16::try_from(liveness.port).ok(), Some(grpc));
    assert_eq!(liveness.service.as_deref().unwrap_or(""), "");

    // The scrape annotation names the metrics port.
    let template = &deployment.spec.as_ref().unwrap().template;
    let annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port"),
        Some(&metrics.to_string())
    );

    // Kubernetes waits longer than the binary's own shutdown grace.
    let pod = template.spec.as_ref().unwrap();
    let grace = pod.termination_grace_period_seconds.unwrap_or(30);
    assert!(
        u64::try_from(grace).unwrap() * 1000 > args.xds.shutdown_grace_ms,
        "terminationGracePeriodSeconds {grace} s <= --shutdown-grace-ms {}",
        args.xds.shutdown_grace_ms
    );

    // Two replicas, and the selector matches the pods.
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    assert!(selects(&selector, &pod_labels(deployment)));
    let resources = container.resources.as_ref().expect("resources");
    assert!(resources.requests.is_some() && resources.limits.is_some());
}

#[test]
fn the_service_and_the_disruption_budget_target_the_deployment() {
    let manifests = load();
    let deployment = one(&manifests.deployments, "Deployment");
    let container = lookaside_container(deployment);
    let labels = pod_labels(deployment);

    let service = one(&manifests.services, "Service");
    let spec = service.spec.as_ref().unwrap();
    assert!(selects(&spec.selector.clone().unwrap_or_default(), &labels));
    let mut targets = BTreeMap::new();
    for port in spec.ports.iter().flatten() {
        let target = match port.target_port.as_ref() {
            Some(IntOrString::String(name)) => container_port(container, name),
            Some(IntOrString::Int(number)) => u16::try_from(*number).unwrap(),
            None => u16::try_from(port.port).unwrap(),
        };
        assert!(
            container
                .ports
                .iter()
                .flatten()
                .any(|p| i32::from(target) == p.container_port),
            "Service port {:?} targets {target}, which the container does not open",
            port.name
        );
        // Clients use the same port numbers as the pods.
        assert_eq!(u16::try_from(port.port).ok(), Some(target));
        targets.insert(port.name.clone().unwrap_or_default(), target);
    }
    let args = serve_args(container);
    assert_eq!(targets.get("grpc"), Some(&args.xds.xds_listen.port()));
    assert_eq!(targets.get("metrics"), Some(&metrics_port(&args)));

    let budget = one(&manifests.disruption_budgets, "PodDisruptionBudget");
    let spec = budget.spec.as_ref().unwrap();
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(selects(&selector, &labels));
    let replicas = deployment.spec.as_ref().unwrap().replicas.unwrap_or(1);
    match spec.min_available.as_ref() {
        Some(IntOrString::Int(min)) => assert!(*min < replicas, "a drain could never proceed"),
        other => panic!("minAvailable {other:?}: expected a number below the replicas"),
    }
}

#[test]
fn the_kustomization_applies_every_manifest() {
    let manifests = load();
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).expect("exists");
    let kustomization: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| {
            r.as_str()
                .and_then(|r| r.strip_prefix("kubernetes/"))
                .expect("kubernetes/FILE")
                .to_string()
        })
        .collect();
    assert_eq!(resources, manifests.files);
    let namespace = one(&manifests.namespaces, "Namespace")
        .metadata
        .name
        .clone();
    assert_eq!(
        kustomization["namespace"].as_str(),
        namespace.as_deref(),
        "kustomize would move objects to another namespace"
    );
}

#[test]
fn the_tls_overlay_sets_flags_the_binary_reads_from_its_secret_mount() {
    let manifests = load();
    let base = one(&manifests.deployments, "Deployment");
    let text = std::fs::read_to_string(deploy_dir().join("tls/deployment-tls.yaml"))
        .expect("deploy/tls/deployment-tls.yaml");
    // A patch, not a manifest: its `grpc: null` deletes the base's probe,
    // so it is parsed without the round-trip check of `typed`.
    let patch: Deployment = serde_yaml_ng::from_str(&text).expect("the patch is a Deployment");
    // The strategic merge of the env lists: the base's, then the patch's.
    let mut container = lookaside_container(base).clone();
    let patched = lookaside_container(&patch);
    container
        .env
        .get_or_insert_with(Vec::new)
        .extend(patched.env.iter().flatten().cloned());
    let args = serve_args(&container);
    let mount = patched
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "tls")
        .expect("the Secret is mounted")
        .mount_path
        .clone();
    let listener = args.tls.listener().expect("TLS on the gRPC listeners");
    let orca = args.tls.orca().expect("TLS towards ORCA ports");
    for path in [
        Some(listener.cert),
        Some(listener.key),
        listener.client_ca,
        Some(orca.ca),
        orca.cert,
        orca.key,
    ] {
        let path = path.expect("every file named");
        assert!(
            path.starts_with(&mount),
            "{} is outside the Secret mount {mount}",
            path.display()
        );
    }
}
