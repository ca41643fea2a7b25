//! The watch loop: follows EndpointSlices and Services through two
//! kube-runtime `watcher`s and sends this source's whole contribution on
//! every change.
//!
//! The watchers do the protocol work: the initial list, watching from its
//! resourceVersion, bookmarks, and a fresh list after a 410 Gone. A fresh
//! list is buffered until it is complete and then replaces what was known,
//! so a re-list never publishes a partial set. Nothing is published until
//! both initial lists are complete. Events that arrive together are applied
//! together and published once; nothing waits on a timer, so a change
//! reaches the registry as soon as the API server sends it.
//!
//! A watch error marks the source rejected until the next list or event
//! succeeds. The watcher does not report a quiet recovery (a watch that
//! reconnects and sees no change), so the error can outlive it until then.
//!
//! Owns: the two watches, the re-lists in progress, and this source's
//! `SourceStatus` entry.
//! Must never: drop the last good clusters because a watch failed; errors
//! are reported, retried with backoff, and the clusters keep serving.

use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::slice::SliceEndpoints;
use super::store::Store;
use super::{KubeOptions, source_id};
use crate::registry::Cluster;
use crate::sources::{SourceError, SourceStatus};
use crate::telemetry::Metrics;

/// Most watch events applied before one publication.
const BATCH: usize = 1024;

/// One item of either watch (events boxed: they differ a lot in size).
enum Change {
    Slice(Box<watcher::Event<EndpointSlice>>),
    Service(Box<watcher::Event<Service>>),
    /// A failed request of the watch of this kind; the watcher retries.
    Failed(&'static str, watcher::Error),
}

impl Change {
    fn slice(event: watcher::Result<watcher::Event<EndpointSlice>>) -> Self {
        match event {
            Ok(event) => Change::Slice(Box::new(event)),
            Err(error) => Change::Failed("EndpointSlices", error),
        }
    }

    fn service(event: watcher::Result<watcher::Event<Service>>) -> Self {
        match event {
            Ok(event) => Change::Service(Box::new(event)),
            Err(error) => Change::Failed("Services", error),
        }
    }
}

/// A re-list in progress of one kind: filled by `InitApply`, swapped in at
/// `InitDone`. The first `InitDone` of each kind completes the initial sync.
struct Listing<K> {
    items: Option<Vec<K>>,
    listed: bool,
}

impl<K> Default for Listing<K> {
    fn default() -> Self {
        Self {
            items: None,
            listed: false,
        }
    }
}

/// A watch of the EndpointSlices and Services of opted-in Services.
pub struct KubeSource {
    client: Client,
    options: KubeOptions,
    id: String,
    status: SourceStatus,
    metrics: Arc<Metrics>,
}

impl KubeSource {
    /// A source watching through `client` what `options` select.
    pub fn new(
        client: Client,
        options: KubeOptions,
        status: SourceStatus,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            id: source_id(&options),
            client,
            options,
            status,
            metrics,
        }
    }

    /// This source's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Watches until `updates` closes, sending the full contribution
    /// `(id, clusters)` after the first complete lists of both kinds and
    /// after every change.
    pub async fn run(self, updates: mpsc::Sender<(String, Vec<Cluster>)>) {
        let config = watcher::Config::default().labels(&self.options.label_selector);
        let slices = watcher(self.api::<EndpointSlice>(), config.clone())
            .default_backoff()
            .map(Change::slice);
        let services = watcher(self.api::<Service>(), config)
            .default_backoff()
            .map(Change::service);
        let events = futures::stream::select(slices, services).ready_chunks(BATCH);
        tokio::pin!(events);

        let mut store = Store::new(&self.id);
        let mut slice_listing = Listing::<SliceEndpoints>::default();
        let mut service_listing = Listing::<Service>::default();
        let mut published = false;

        while let Some(batch) = events.next().await {
            let mut changed = false;
            for event in batch {
                match event {
                    Change::Slice(event) => {
                        changed |= apply_slice_event(&mut store, &mut slice_listing, *event);
                    }
                    Change::Service(event) => {
                        changed |= apply_service_event(&mut store, &mut service_listing, *event);
                    }
                    Change::Failed(kind, error) => self.report(kind, &error),
                }
            }
            if !changed || !slice_listing.listed || !service_listing.listed {
                continue;
            }
            let rebuilt = store.rebuild();
            let count = u32::try_from(store.cluster_count()).unwrap_or(u32::MAX);
            self.status.loaded(&self.id, count);
            if published && !rebuilt {
                continue;
            }
            info!(
                source = %self.id,
                services = store.service_count(),
                slices = store.slice_count(),
                clusters = count,
                "endpoints applied"
            );
            published = true;
            if updates
                .send((self.id.clone(), store.clusters()))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match &self.options.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    fn report(&self, kind: &str, error: &watcher::Error) {
        warn!(source = %self.id, kind, %error, "Kubernetes watch failed; retrying with backoff, the last good endpoints keep serving");
        self.metrics
            .config_rejections
            .get_or_create(&Metrics::source(&self.id))
            .inc();
        self.status.rejected(
            &self.id,
            SourceError {
                message: format!("Kubernetes watch of {kind}: {error}"),
                file: String::new(),
                line: 0,
                column: 0,
                at: SystemTime::now(),
            },
        );
    }
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Applies one EndpointSlice event; returns whether the known slices
/// changed. Slices are reduced to what makes clusters as they arrive, so
/// a re-list in progress never holds whole objects.
fn apply_slice_event(
    store: &mut Store,
    listing: &mut Listing<SliceEndpoints>,
    event: watcher::Event<EndpointSlice>,
) -> bool {
    match event {
        watcher::Event::Init => {
            listing.items = Some(Vec::new());
            false
        }
        watcher::Event::InitApply(slice) => {
            listing
                .items
                .get_or_insert_with(Vec::new)
                .push(SliceEndpoints::from_slice(&slice));
            false
        }
        watcher::Event::InitDone => {
            store.replace_slices(listing.items.take().unwrap_or_default());
            listing.listed = true;
            true
        }
        watcher::Event::Apply(slice) => {
            store.apply_slice(SliceEndpoints::from_slice(&slice));
            true
        }
        watcher::Event::Delete(slice) => {
            store.delete_slice(&SliceEndpoints::from_slice(&slice).key);
            true
        }
    }
}

/// Applies one Service event; returns whether the known Services changed.
fn apply_service_event(
    store: &mut Store,
    listing: &mut Listing<Service>,
    event: watcher::Event<Service>,
) -> bool {
    match event {
        watcher::Event::Init => {
            listing.items = Some(Vec::new());
            false
        }
        watcher::Event::InitApply(service) => {
            listing.items.get_or_insert_with(Vec::new).push(service);
            false
        }
        watcher::Event::InitDone => {
            store.replace_services(&listing.items.take().unwrap_or_default());
            listing.listed = true;
            true
        }
        watcher::Event::Apply(service) => {
            store.apply_service(&service);
            true
        }
        watcher::Event::Delete(service) => {
            store.delete_service(&service);
            true
        }
    }
}
