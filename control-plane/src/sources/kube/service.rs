//! What the source keeps of an opted-in Service: the TCP ports clients dial,
//! by port name, and the balancing options its labels ask for.
//!
//! Owns: reducing a `Service` object to that.
//! Must never: keep the whole object (status and managed fields are not
//! needed), or do I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

use super::labels::Balancing;

/// (namespace, name) of a Service.
pub(super) type ServiceKey = (String, String);

/// The parts of a Service that name its clusters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ServicePorts {
    /// The Service port number of each TCP port, by port name. A Service
    /// with a single port may leave it unnamed: its name is `""`, as on the
    /// EndpointSlice ports it maps to.
    pub(super) ports: BTreeMap<String, u16>,
    /// Policy and ORCA port from the Service's labels.
    pub(super) balancing: Balancing,
}

/// The Service's namespace and name.
pub(super) fn service_key(service: &Service) -> ServiceKey {
    (
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

impl ServicePorts {
    /// The ports of `service`; `None` for an `ExternalName` Service, which
    /// has no endpoints of its own to balance.
    pub(super) fn from_service(service: &Service) -> Option<Self> {
        let spec = service.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return None;
        }
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|port| {
                let number = u16::try_from(port.port).ok().filter(|p| *p != 0)?;
                Some((port.name.clone().unwrap_or_default(), number))
            })
            .collect();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        Some(Self {
            ports,
            balancing: Balancing::from_labels(service.metadata.labels.as_ref(), name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn service(type_: Option<&str>, ports: Vec<ServicePort>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: type_.map(str::to_string),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn port(name: Option<&str>, port: i32, protocol: Option<&str>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            port,
            protocol: protocol.map(str::to_string),
            ..ServicePort::default()
        }
    }

    #[test]
    fn tcp_ports_by_name_unnamed_is_empty_and_udp_is_left_out() {
        let ports = ServicePorts::from_service(&service(
            None,
            vec![
                port(Some("grpc"), 80, Some("TCP")),
                port(Some("admin"), 9000, None),
                port(Some("dns"), 53, Some("UDP")),
            ],
        ))
        .map(|s| s.ports);
        assert_eq!(
            ports,
            Some(BTreeMap::from([
                ("admin".to_string(), 9000),
                ("grpc".to_string(), 80),
            ]))
        );
        let unnamed =
            ServicePorts::from_service(&service(Some("ClusterIP"), vec![port(None, 80, None)]))
                .map(|s| s.ports);
        assert_eq!(unnamed, Some(BTreeMap::from([(String::new(), 80)])));
    }

    #[test]
    fn external_name_services_have_no_ports_to_balance() {
        let external = service(Some("ExternalName"), vec![port(None, 80, None)]);
        assert_eq!(ServicePorts::from_service(&external), None);
    }
}
