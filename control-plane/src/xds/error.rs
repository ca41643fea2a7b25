//! Errors that end an ADS stream.

use tonic::Status;

/// Why a stream was closed by the server.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    /// A request named more resources than allowed.
    #[error("request names {count} resources; the limit is {limit} (--xds-max-names-per-request)")]
    TooManyNames {
        /// Names in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A stream subscribed to more resources than allowed.
    #[error(
        "stream is subscribed to {count} resources; the limit is {limit} (--xds-max-subscriptions-per-stream)"
    )]
    TooManySubscriptions {
        /// Names subscribed, over every type.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A request did not say which type it is for.
    #[error("request has no type_url; ADS requires one")]
    MissingTypeUrl,
    /// Too many distinct unknown type URLs on one stream.
    #[error(
        "stream asked for {count} unknown type URLs (latest {type_url:?}); this server serves LDS, RDS, CDS and EDS"
    )]
    TooManyUnknownTypes {
        /// Distinct unknown types so far.
        count: usize,
        /// The latest one.
        type_url: String,
    },
    /// A stream sent requests faster than allowed.
    #[error(
        "stream sent more than {limit} requests per second (--xds-max-requests-per-second); a healthy client sends a few"
    )]
    TooManyRequests {
        /// The limit.
        limit: u32,
    },
    /// The server has as many streams as it accepts.
    #[error("server has {limit} ADS streams, its limit (--xds-max-streams); try another replica")]
    TooManyStreams {
        /// The limit.
        limit: usize,
    },
}

impl XdsError {
    /// The name of the limit this error reports, if it is one (the
    /// `limit` label of `lookaside_xds_limit_hits_total`).
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            XdsError::TooManyNames { .. } => Some("names_per_request"),
            XdsError::TooManySubscriptions { .. } => Some("subscriptions_per_stream"),
            XdsError::TooManyStreams { .. } => Some("streams"),
            XdsError::TooManyRequests { .. } => Some("requests_per_second"),
            XdsError::TooManyUnknownTypes { .. } => Some("unknown_types"),
            XdsError::MissingTypeUrl => None,
        }
    }
}

impl From<XdsError> for Status {
    fn from(error: XdsError) -> Self {
        match error {
            XdsError::TooManyNames { .. }
            | XdsError::TooManySubscriptions { .. }
            | XdsError::TooManyStreams { .. }
            | XdsError::TooManyRequests { .. } => Status::resource_exhausted(error.to_string()),
            XdsError::MissingTypeUrl | XdsError::TooManyUnknownTypes { .. } => {
                Status::invalid_argument(error.to_string())
            }
        }
    }
}
