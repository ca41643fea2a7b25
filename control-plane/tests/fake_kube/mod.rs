//! A fake Kubernetes API server for EndpointSlices and Services, in process
//! on 127.0.0.1: the real list and watch protocol (resourceVersion, newline
//! delimited watch events, bookmarks, label selectors, 410 Gone, watches the
//! server ends), with the state held in memory and changed by the test.
//!
//! Objects are kept as the JSON bytes the server sends, so a benchmark with
//! 100,000 endpoints does not count a parsed copy of them in its RSS.
//!
//! Owns: only what the Kubernetes source asks of an API server; the shared
//! test fixtures live in `fixtures`.
//! Must never: be used outside tests and benchmarks, or sleep to order
//! anything: every watch reads the event log after subscribing to its
//! changes.

#![allow(dead_code, unreachable_pub)]

pub mod fixtures;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// The kinds of object the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `v1` Service.
    Service,
}

impl Kind {
    fn of(object: &Value) -> Self {
        match object["kind"].as_str() {
            Some("Service") => Kind::Service,
            _ => Kind::EndpointSlice,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Service => "Service",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Service => "v1",
        }
    }

    /// The RBAC (API group, resource) of the kind.
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            Kind::EndpointSlice => ("discovery.k8s.io", "endpointslices"),
            Kind::Service => ("", "services"),
        }
    }

    /// The kind a request path names, and its namespace if any.
    fn route(path: &str) -> Option<(Self, Option<String>)> {
        let (kind, rest) = if let Some(rest) = path.strip_prefix("/apis/discovery.k8s.io/v1/") {
            (Kind::EndpointSlice, rest)
        } else if let Some(rest) = path.strip_prefix("/api/v1/") {
            (Kind::Service, rest)
        } else {
            return None;
        };
        let plural = kind.resource().1;
        match rest.split('/').collect::<Vec<_>>()[..] {
            [resource] if resource == plural => Some((kind, None)),
            ["namespaces", namespace, resource] if resource == plural => {
                Some((kind, Some(namespace.to_string())))
            }
            _ => None,
        }
    }
}

/// An object as stored: what filters read, and its JSON.
struct Stored {
    namespace: String,
    labels: BTreeMap<String, String>,
    json: Bytes,
}

impl Stored {
    fn new(object: &Value) -> Self {
        let labels = object["metadata"]["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            labels,
            json: Bytes::from(serde_json::to_vec(object).expect("json")),
        }
    }
}

/// One recorded change, replayed to watches that start before it.
struct Entry {
    version: u64,
    kind: Kind,
    event: &'static str,
    object: Arc<Stored>,
    /// For MODIFIED: the labels before, to tell a watch whose selector the
    /// object entered (ADDED) or left (DELETED), as the API server does.
    previous: Option<BTreeMap<String, String>>,
}

impl Entry {
    /// The event type a watch of `kind` with `filter` sees, if any.
    fn seen_as(&self, kind: Kind, filter: &Filter, bookmarks: bool) -> Option<&'static str> {
        if self.kind != kind {
            return None;
        }
        let namespace = &self.object.namespace;
        match (self.event, &self.previous) {
            ("BOOKMARK", _) => bookmarks.then_some("BOOKMARK"),
            ("MODIFIED", Some(previous)) => match (
                filter.matches(namespace, previous),
                filter.matches(namespace, &self.object.labels),
            ) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
            (event, _) => filter
                .matches(namespace, &self.object.labels)
                .then_some(event),
        }
    }
}

/// One request the fake served, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// API group and resource.
    pub resource: (&'static str, &'static str),
    /// `list` or `watch`.
    pub verb: &'static str,
    /// The label selector asked for.
    pub selector: String,
}

#[derive(Default)]
struct Store {
    version: u64,
    objects: BTreeMap<(Kind, String, String), Arc<Stored>>,
    log: Vec<Entry>,
    /// Watches from a resourceVersion below this get 410 Gone.
    gone_below: u64,
    /// Requests for these kinds fail with 500 and their open watches end.
    failing: HashSet<Kind>,
    /// Watches opened before a change of this end (a server-side timeout).
    generation: u64,
    lists: HashMap<Kind, usize>,
    watches: HashMap<Kind, usize>,
    bookmark_watches: usize,
    requests: Vec<Request>,
}

#[derive(Clone)]
struct Shared {
    store: Arc<Mutex<Store>>,
    changed: watch::Sender<u64>,
}

/// The running fake API server.
pub struct FakeKube {
    shared: Shared,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Starts a server on 127.0.0.1:0.
    pub async fn start() -> Self {
        let (changed, _) = watch::channel(0);
        let shared = Shared {
            store: Arc::default(),
            changed,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let router = Router::new().fallback(serve).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            shared,
            address,
            task,
        }
    }

    /// A client of this server, without authentication.
    pub fn client(&self) -> kube::Client {
        let uri: Uri = format!("http://{}", self.address).parse().expect("uri");
        kube::Client::try_from(kube::Config::new(uri)).expect("client")
    }

    /// Creates or replaces an object (ADDED or MODIFIED); its `kind` says
    /// which: `Service`, else an EndpointSlice.
    pub fn apply(&self, mut object: Value) {
        let kind = Kind::of(&object);
        self.change(|store| {
            store.version += 1;
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            let stored = Arc::new(Stored::new(&object));
            let previous = store.objects.insert(key(kind, &object), stored.clone());
            let version = store.version;
            store.log.push(Entry {
                version,
                kind,
                event: if previous.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                },
                object: stored,
                previous: previous.map(|p| p.labels.clone()),
            });
        });
    }

    /// Deletes a slice (DELETED).
    pub fn delete(&self, namespace: &str, name: &str) {
        self.delete_object(Kind::EndpointSlice, namespace, name);
    }

    /// Deletes a Service (DELETED).
    pub fn delete_service(&self, namespace: &str, name: &str) {
        self.delete_object(Kind::Service, namespace, name);
    }

    fn delete_object(&self, kind: Kind, namespace: &str, name: &str) {
        self.change(|store| {
            let Some(stored) =
                store
                    .objects
                    .remove(&(kind, namespace.to_string(), name.to_string()))
            else {
                return;
            };
            store.version += 1;
            // The API server sends the object with the deletion's version.
            let mut object: Value = serde_json::from_slice(&stored.json).expect("json");
            object["metadata"]["resourceVersion"] = json!(store.version.to_string());
            let version = store.version;
            store.log.push(Entry {
                version,
                kind,
                event: "DELETED",
                object: Arc::new(Stored::new(&object)),
                previous: None,
            });
        });
    }

    /// Sends a BOOKMARK to every watch that asked for bookmarks.
    pub fn bookmark(&self) {
        self.change(|store| {
            store.version += 1;
            let version = store.version;
            for kind in [Kind::EndpointSlice, Kind::Service] {
                let object = json!({
                    "kind": kind.name(),
                    "apiVersion": kind.api_version(),
                    "metadata": { "resourceVersion": version.to_string() },
                });
                store.log.push(Entry {
                    version,
                    kind,
                    event: "BOOKMARK",
                    object: Arc::new(Stored::new(&object)),
                    previous: None,
                });
            }
        });
    }

    /// Replaces every object of `kind` without recording events and forgets
    /// the history (as etcd compaction does, for every kind): open watches
    /// end with an ERROR 410 Gone, and only a fresh list shows the new state.
    pub fn replace_and_expire(&self, kind: Kind, objects: Vec<Value>) {
        self.change(|store| {
            store.version += 1;
            let version = store.version.to_string();
            store.objects.retain(|(k, _, _), _| *k != kind);
            for mut object in objects {
                object["metadata"]["resourceVersion"] = json!(version);
                store
                    .objects
                    .insert(key(kind, &object), Arc::new(Stored::new(&object)));
            }
            store.log.clear();
            store.gone_below = store.version;
        });
    }

    /// Ends every open watch cleanly, as an API server does when a watch
    /// times out or the server restarts: clients watch again from their
    /// last resourceVersion.
    pub fn drop_watches(&self) {
        self.change(|store| store.generation += 1);
    }

    /// While `failing`, every request fails with 500 Internal Server Error
    /// and open watches end.
    pub fn set_failing(&self, failing: bool) {
        for kind in [Kind::EndpointSlice, Kind::Service] {
            self.set_failing_kind(kind, failing);
        }
    }

    /// While `failing`, requests for `kind` fail with 500 Internal Server
    /// Error and its open watches end.
    pub fn set_failing_kind(&self, kind: Kind, failing: bool) {
        self.change(|store| {
            if failing {
                store.failing.insert(kind);
            } else {
                store.failing.remove(&kind);
            }
        });
    }

    /// How many EndpointSlice lists were served.
    pub fn lists(&self) -> usize {
        self.lists_of(Kind::EndpointSlice)
    }

    /// How many lists of `kind` were served.
    pub fn lists_of(&self, kind: Kind) -> usize {
        let store = self.shared.store.lock().expect("lock");
        store.lists.get(&kind).copied().unwrap_or(0)
    }

    /// How many watches of `kind` were opened.
    pub fn watches_of(&self, kind: Kind) -> usize {
        let store = self.shared.store.lock().expect("lock");
        store.watches.get(&kind).copied().unwrap_or(0)
    }

    /// How many watches asked for bookmarks.
    pub fn bookmark_watches(&self) -> usize {
        self.shared.store.lock().expect("lock").bookmark_watches
    }

    /// Label selectors of every request.
    pub fn selectors(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.selector).collect()
    }

    /// Every list and watch request served.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.store.lock().expect("lock").requests.clone()
    }

    fn change(&self, edit: impl FnOnce(&mut Store)) {
        let version = {
            let mut store = self.shared.store.lock().expect("lock");
            edit(&mut store);
            store.version
        };
        self.shared.changed.send_replace(version);
    }
}

fn key(kind: Kind, object: &Value) -> (Kind, String, String) {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (kind, text("namespace"), text("name"))
}

/// Handles lists and watches of EndpointSlices
/// (`/apis/discovery.k8s.io/v1/[namespaces/NS/]endpointslices`) and of
/// Services (`/api/v1/[namespaces/NS/]services`).
async fn serve(State(shared): State<Shared>, uri: Uri) -> Response {
    let Some((kind, namespace)) = Kind::route(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "no such path");
    };
    let query = query(uri.query().unwrap_or_default());
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let watching = query.get("watch").map(String::as_str) == Some("true");
    {
        let mut store = shared.store.lock().expect("lock");
        store.requests.push(Request {
            resource: kind.resource(),
            verb: if watching { "watch" } else { "list" },
            selector: selector.clone(),
        });
        if store.failing.contains(&kind) {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "storage is down");
        }
    }
    let filter = Filter {
        namespace,
        labels: selector
            .split(',')
            .filter(|term| !term.is_empty())
            .filter_map(|term| term.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    if watching {
        let from = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        watch_response(shared, kind, filter, from, bookmarks)
    } else {
        list_response(&shared, kind, &filter)
    }
}

struct Filter {
    namespace: Option<String>,
    labels: Vec<(String, String)>,
}

impl Filter {
    fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(wanted) = &self.namespace
            && wanted != namespace
        {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|value| value == v))
    }
}

fn list_response(shared: &Shared, kind: Kind, filter: &Filter) -> Response {
    let mut store = shared.store.lock().expect("lock");
    *store.lists.entry(kind).or_default() += 1;
    let mut body = format!(
        r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{}"}},"items":["#,
        kind.name(),
        kind.api_version(),
        store.version
    )
    .into_bytes();
    let mut first = true;
    for ((k, _, _), object) in &store.objects {
        if *k != kind || !filter.matches(&object.namespace, &object.labels) {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&object.json);
    }
    body.extend_from_slice(b"]}");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("response")
}

fn watch_response(
    shared: Shared,
    kind: Kind,
    filter: Filter,
    mut from: u64,
    bookmarks: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    // Subscribe before the first read of the log, so no change is missed.
    let mut changed = shared.changed.subscribe();
    let generation = {
        let mut store = shared.store.lock().expect("lock");
        *store.watches.entry(kind).or_default() += 1;
        store.bookmark_watches += usize::from(bookmarks);
        store.generation
    };
    tokio::spawn(async move {
        loop {
            let (lines, gone) = {
                let store = shared.store.lock().expect("lock");
                if store.failing.contains(&kind) || store.generation != generation {
                    return;
                }
                if from < store.gone_below {
                    (Vec::new(), Some(store.gone_below))
                } else {
                    let start = store.log.partition_point(|entry| entry.version <= from);
                    let lines: Vec<Bytes> = store.log[start..]
                        .iter()
                        .filter_map(|entry| {
                            let event = entry.seen_as(kind, &filter, bookmarks)?;
                            Some(event_line(event, &entry.object.json))
                        })
                        .collect();
                    from = from.max(store.log.last().map_or(from, |entry| entry.version));
                    (lines, None)
                }
            };
            for line in lines {
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            if let Some(current) = gone {
                let error = json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("too old resource version: {from} ({current})"),
                    "reason": "Expired",
                    "code": 410,
                });
                let error = serde_json::to_vec(&error).expect("json");
                let _ = tx.send(Ok(event_line("ERROR", &error))).await;
                return;
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .expect("response")
}

/// `{"type":EVENT,"object":OBJECT}` and a newline.
fn event_line(event: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(br#"{"type":""#);
    line.extend_from_slice(event.as_bytes());
    line.extend_from_slice(br#"","object":"#);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn status(code: StatusCode, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

/// Query parameters, percent-decoded.
fn query(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
