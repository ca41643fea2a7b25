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
    /// The server has as many streams as it accepts.
    #[error("server has {limit} ADS streams, its limit (--xds-max-streams); try another replica")]
    TooManyStreams {
        /// The limit.
        limit: usize,
    },
}

impl From<XdsError> for Status {
    fn from(error: XdsError) -> Self {
        match error {
            XdsError::TooManyNames { .. } | XdsError::TooManyStreams { .. } => {
                Status::resource_exhausted(error.to_string())
            }
            XdsError::MissingTypeUrl | XdsError::TooManyUnknownTypes { .. } => {
                Status::invalid_argument(error.to_string())
            }
        }
    }
}
