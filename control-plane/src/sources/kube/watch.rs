//! The watch loop: follows EndpointSlices through kube-runtime's `watcher`
//! and sends this source's whole contribution on every change.
//!
//! The watcher does the protocol work: the initial list, watching from its
//! resourceVersion, bookmarks, and a fresh list after a 410 Gone. A fresh
//! list is buffered until it is complete and then replaces the known slices,
//! so a re-list never publishes a partial set. Events that arrive together
//! are applied together and published once; nothing waits on a timer, so a
//! change reaches the registry as soon as the API server sends it.
//!
//! A watch error marks the source rejected until the next list or event
//! succeeds. The watcher does not report a quiet recovery (a watch that
//! reconnects and sees no change), so the error can outlive it until then.
//!
//! Owns: the known slices and this source's `SourceStatus` entry.
//! Must never: drop the last good clusters because the watch failed; errors
//! are reported, retried with backoff, and the clusters keep serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{KubeOptions, clusters_from_slices, source_id};
use crate::registry::Cluster;
use crate::sources::{SourceError, SourceStatus};
use crate::telemetry::Metrics;

/// Most watch events applied before one publication.
const BATCH: usize = 1024;

/// (namespace, name) of a slice.
type SliceKey = (String, String);

/// A watch of the EndpointSlices of opted-in Services.
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
    /// `(id, clusters)` after the first complete list and after every change.
    pub async fn run(self, updates: mpsc::Sender<(String, Vec<Cluster>)>) {
        let api: Api<EndpointSlice> = match &self.options.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        };
        let config = watcher::Config::default().labels(&self.options.label_selector);
        let events = watcher(api, config).default_backoff().ready_chunks(BATCH);
        tokio::pin!(events);

        let mut slices: BTreeMap<SliceKey, EndpointSlice> = BTreeMap::new();
        // A re-list in progress: filled by `InitApply`, swapped in at `InitDone`.
        let mut listing: Option<BTreeMap<SliceKey, EndpointSlice>> = None;
        let mut synced = false;
        let mut published: Option<Vec<Cluster>> = None;

        while let Some(batch) = events.next().await {
            let mut changed = false;
            for event in batch {
                match event {
                    Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                    Ok(watcher::Event::InitApply(slice)) => {
                        listing
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key(&slice), slice);
                    }
                    Ok(watcher::Event::InitDone) => {
                        slices = listing.take().unwrap_or_default();
                        synced = true;
                        changed = true;
                    }
                    Ok(watcher::Event::Apply(slice)) => {
                        slices.insert(key(&slice), slice);
                        changed = true;
                    }
                    Ok(watcher::Event::Delete(slice)) => {
                        slices.remove(&key(&slice));
                        changed = true;
                    }
                    Err(error) => self.report(&error),
                }
            }
            if !changed || !synced {
                continue;
            }
            let clusters = clusters_from_slices(slices.values(), &self.id);
            let count = u32::try_from(clusters.len()).unwrap_or(u32::MAX);
            self.status.loaded(&self.id, count);
            if published.as_ref() == Some(&clusters) {
                continue;
            }
            info!(source = %self.id, slices = slices.len(), clusters = clusters.len(), "endpoints applied");
            published = Some(clusters.clone());
            if updates.send((self.id.clone(), clusters)).await.is_err() {
                return;
            }
        }
    }

    fn report(&self, error: &watcher::Error) {
        warn!(source = %self.id, %error, "Kubernetes watch failed; retrying with backoff, the last good endpoints keep serving");
        self.metrics
            .config_rejections
            .get_or_create(&Metrics::source(&self.id))
            .inc();
        self.status.rejected(
            &self.id,
            SourceError {
                message: format!("Kubernetes watch of EndpointSlices: {error}"),
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

fn key(slice: &EndpointSlice) -> SliceKey {
    (
        slice.metadata.namespace.clone().unwrap_or_default(),
        slice.metadata.name.clone().unwrap_or_default(),
    )
}
