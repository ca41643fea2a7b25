//! A fake Kubernetes API server for EndpointSlices, in process on
//! 127.0.0.1: the real list and watch protocol (resourceVersion, newline
//! delimited watch events, bookmarks, label selectors, 410 Gone), with the
//! state held in memory and changed by the test.
//!
//! Owns: only what the Kubernetes source asks of an API server.
//! Must never: be used outside tests, or sleep to order anything: every
//! watch reads the event log after subscribing to its changes.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
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

const PREFIX: &str = "/apis/discovery.k8s.io/v1/";

/// One recorded change, replayed to watches that start before it.
struct Entry {
    version: u64,
    kind: &'static str,
    object: Value,
    /// For MODIFIED: the object before, to tell a watch whose selector it
    /// entered (ADDED) or left (DELETED), as the API server does.
    previous: Option<Value>,
}

impl Entry {
    /// The event type a watch with `filter` sees, if any.
    fn seen_as(&self, filter: &Filter, bookmarks: bool) -> Option<&'static str> {
        match (self.kind, &self.previous) {
            ("BOOKMARK", _) => bookmarks.then_some("BOOKMARK"),
            ("MODIFIED", Some(previous)) => {
                match (filter.matches(previous), filter.matches(&self.object)) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
            (kind, _) => filter.matches(&self.object).then_some(kind),
        }
    }
}

#[derive(Default)]
struct Store {
    version: u64,
    slices: BTreeMap<(String, String), Value>,
    log: Vec<Entry>,
    /// Watches from a resourceVersion below this get 410 Gone.
    gone_below: u64,
    /// Every request fails with 500 and open watches end.
    failing: bool,
    lists: usize,
    watches: usize,
    bookmark_watches: usize,
    selectors: Vec<String>,
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
        let router = Router::new()
            .fallback(endpoint_slices)
            .with_state(shared.clone());
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

    /// Creates or replaces a slice (ADDED or MODIFIED).
    pub fn apply(&self, mut slice: Value) {
        self.change(|store| {
            store.version += 1;
            let key = key(&slice);
            slice["metadata"]["resourceVersion"] = json!(store.version.to_string());
            let previous = store.slices.insert(key, slice.clone());
            let kind = if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            let version = store.version;
            store.log.push(Entry {
                version,
                kind,
                object: slice,
                previous,
            });
        });
    }

    /// Deletes a slice (DELETED).
    pub fn delete(&self, namespace: &str, name: &str) {
        self.change(|store| {
            let Some(mut slice) = store
                .slices
                .remove(&(namespace.to_string(), name.to_string()))
            else {
                return;
            };
            store.version += 1;
            slice["metadata"]["resourceVersion"] = json!(store.version.to_string());
            let version = store.version;
            store.log.push(Entry {
                version,
                kind: "DELETED",
                object: slice,
                previous: None,
            });
        });
    }

    /// Sends a BOOKMARK to watches that asked for bookmarks.
    pub fn bookmark(&self) {
        self.change(|store| {
            store.version += 1;
            let version = store.version;
            store.log.push(Entry {
                version,
                kind: "BOOKMARK",
                object: json!({
                    "kind": "EndpointSlice",
                    "apiVersion": "discovery.k8s.io/v1",
                    "metadata": { "resourceVersion": version.to_string() },
                }),
                previous: None,
            });
        });
    }

    /// Replaces every slice without recording events and forgets the
    /// history: open watches end with an ERROR 410 Gone, and only a fresh
    /// list shows the new state.
    pub fn replace_and_expire(&self, slices: Vec<Value>) {
        self.change(|store| {
            store.version += 1;
            let version = store.version.to_string();
            store.slices = slices
                .into_iter()
                .map(|mut slice| {
                    slice["metadata"]["resourceVersion"] = json!(version);
                    (key(&slice), slice)
                })
                .collect();
            store.log.clear();
            store.gone_below = store.version;
        });
    }

    /// While `failing`, every request fails with 500 Internal Server Error
    /// and open watches end.
    pub fn set_failing(&self, failing: bool) {
        self.change(|store| store.failing = failing);
    }

    /// How many list requests were served.
    pub fn lists(&self) -> usize {
        self.shared.store.lock().expect("lock").lists
    }

    /// How many watches asked for bookmarks.
    pub fn bookmark_watches(&self) -> usize {
        self.shared.store.lock().expect("lock").bookmark_watches
    }

    /// Label selectors of every request.
    pub fn selectors(&self) -> Vec<String> {
        self.shared.store.lock().expect("lock").selectors.clone()
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

fn key(slice: &Value) -> (String, String) {
    let text = |field: &str| {
        slice["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (text("namespace"), text("name"))
}

/// Handles `/apis/discovery.k8s.io/v1/endpointslices` and
/// `/apis/discovery.k8s.io/v1/namespaces/NS/endpointslices`.
async fn endpoint_slices(State(shared): State<Shared>, uri: Uri) -> Response {
    let Some(rest) = uri.path().strip_prefix(PREFIX) else {
        return status(StatusCode::NOT_FOUND, "no such path");
    };
    let namespace = match rest.split('/').collect::<Vec<_>>()[..] {
        ["endpointslices"] => None,
        ["namespaces", namespace, "endpointslices"] => Some(namespace.to_string()),
        _ => return status(StatusCode::NOT_FOUND, "no such path"),
    };
    if shared.store.lock().expect("lock").failing {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "storage is down");
    }
    let query = query(uri.query().unwrap_or_default());
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let filter = Filter {
        namespace,
        labels: selector
            .split(',')
            .filter(|term| !term.is_empty())
            .filter_map(|term| term.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    shared.store.lock().expect("lock").selectors.push(selector);
    if query.get("watch").map(String::as_str) == Some("true") {
        let from = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
        watch_response(shared, filter, from, bookmarks)
    } else {
        list_response(&shared, &filter)
    }
}

struct Filter {
    namespace: Option<String>,
    labels: Vec<(String, String)>,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        if let Some(namespace) = &self.namespace
            && metadata["namespace"].as_str() != Some(namespace)
        {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| metadata["labels"][k].as_str() == Some(v))
    }
}

fn list_response(shared: &Shared, filter: &Filter) -> Response {
    let mut store = shared.store.lock().expect("lock");
    store.lists += 1;
    let items: Vec<Value> = store
        .slices
        .values()
        .filter(|slice| filter.matches(slice))
        .cloned()
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": { "resourceVersion": store.version.to_string() },
            "items": items,
        }),
    )
}

fn watch_response(shared: Shared, filter: Filter, mut from: u64, bookmarks: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    // Subscribe before the first read of the log, so no change is missed.
    let mut changed = shared.changed.subscribe();
    {
        let mut store = shared.store.lock().expect("lock");
        store.watches += 1;
        store.bookmark_watches += usize::from(bookmarks);
    }
    tokio::spawn(async move {
        loop {
            let (lines, gone) = {
                let store = shared.store.lock().expect("lock");
                if store.failing {
                    return;
                }
                if from < store.gone_below {
                    (Vec::new(), Some(store.gone_below))
                } else {
                    let lines: Vec<(u64, Value)> = store
                        .log
                        .iter()
                        .filter(|entry| entry.version > from)
                        .filter_map(|entry| {
                            let kind = entry.seen_as(&filter, bookmarks)?;
                            Some((
                                entry.version,
                                json!({ "type": kind, "object": entry.object }),
                            ))
                        })
                        .collect();
                    from = from.max(store.log.last().map_or(from, |entry| entry.version));
                    (lines, None)
                }
            };
            for (_, line) in lines {
                if tx.send(Ok(line_bytes(&line))).await.is_err() {
                    return;
                }
            }
            if let Some(current) = gone {
                let error = json!({
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": format!("too old resource version: {from} ({current})"),
                        "reason": "Expired",
                        "code": 410,
                    },
                });
                let _ = tx.send(Ok(line_bytes(&error))).await;
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

fn line_bytes(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).expect("json");
    line.push(b'\n');
    Bytes::from(line)
}

fn status(code: StatusCode, message: &str) -> Response {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "code": code.as_u16(),
        }),
    )
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(value).expect("json")))
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
