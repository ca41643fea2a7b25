//! The gRPC service.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use lookaside_proto::admin::v1 as pb;
use lookaside_proto::admin::v1::admin_server::Admin;

use super::convert;
use crate::load::LoadTable;
use crate::snapshot::{ResourceType, Snapshot};
use crate::sources::SourceStatus;
use crate::xds::Clients;

/// Implements `lookaside.admin.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: Clients,
    sources: SourceStatus,
    loads: LoadTable,
}

impl AdminService {
    /// A service reading the given state.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        clients: Clients,
        sources: SourceStatus,
        loads: LoadTable,
    ) -> Self {
        Self {
            snapshots,
            clients,
            sources,
            loads,
        }
    }

    /// The server to add to a tonic router.
    pub fn into_server(self) -> pb::admin_server::AdminServer<Self> {
        pb::admin_server::AdminServer::new(self)
    }

    fn assignment_version(snapshot: &Snapshot, name: &str) -> String {
        snapshot
            .get(ResourceType::Assignment, name)
            .map(|r| r.version.clone())
            .unwrap_or_default()
    }

    fn clients(&self, cluster: &str) -> Vec<pb::Client> {
        self.clients
            .all()
            .iter()
            .filter(|c| cluster.is_empty() || c.subscribes_to(cluster))
            .map(convert::client)
            .collect()
    }

    fn sources(&self) -> Vec<pb::Source> {
        self.sources
            .all()
            .iter()
            .map(|(name, state)| convert::source(name, state))
            .collect()
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_assignment(
        &self,
        request: Request<pb::GetAssignmentRequest>,
    ) -> Result<Response<pb::GetAssignmentResponse>, Status> {
        let wanted = request.into_inner().cluster;
        let snapshot = self.snapshots.borrow().clone();
        let clusters: Vec<pb::ClusterAssignment> = snapshot
            .weighted
            .clusters
            .values()
            .filter(|c| wanted.is_empty() || c.name == wanted)
            .map(|c| convert::cluster(c, Self::assignment_version(&snapshot, &c.name), &self.loads))
            .collect();
        if !wanted.is_empty() && clusters.is_empty() {
            return Err(Status::not_found(format!(
                "no cluster named {wanted:?}; ListClusters shows the known ones"
            )));
        }
        Ok(Response::new(pb::GetAssignmentResponse {
            snapshot_version: snapshot.version.clone(),
            snapshot_time: Some(convert::timestamp(snapshot.built_at)),
            clusters,
            clients: self.clients(&wanted),
            sources: self.sources(),
        }))
    }

    async fn list_clusters(
        &self,
        _request: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let snapshot = self.snapshots.borrow().clone();
        let clusters = snapshot
            .weighted
            .clusters
            .values()
            .map(|c| pb::ClusterSummary {
                name: c.name.clone(),
                endpoints: u32::try_from(c.endpoints.len()).unwrap_or(u32::MAX),
                healthy_endpoints: u32::try_from(
                    c.endpoints
                        .iter()
                        .filter(|e| e.health == crate::registry::Health::Healthy)
                        .count(),
                )
                .unwrap_or(u32::MAX),
                assignment_version: Self::assignment_version(&snapshot, &c.name),
            })
            .collect();
        Ok(Response::new(pb::ListClustersResponse {
            snapshot_version: snapshot.version.clone(),
            clusters,
        }))
    }

    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        let cluster = request.into_inner().cluster;
        Ok(Response::new(pb::ListClientsResponse {
            clients: self.clients(&cluster),
        }))
    }

    async fn list_sources(
        &self,
        _request: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesResponse>, Status> {
        Ok(Response::new(pb::ListSourcesResponse {
            sources: self.sources(),
        }))
    }
}
