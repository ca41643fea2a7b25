//! Decoding ADS requests: prost with a small initial buffer.
//!
//! tonic reserves 8 KiB per stream for decoding by default. An idle ADS
//! stream reads a few hundred bytes now and then, so the buffer starts at
//! 1 KiB and grows for larger requests. (Responses are not encoded here: see
//! `response` and `body`.)

use tonic::codec::{BufferSettings, Decoder};
use tonic_prost::ProstCodec;

/// Initial decode buffer size.
const BUFFER_SIZE: usize = 1024;
/// tonic's yield threshold (unused for decoding, required by the settings).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A decoder for request messages `U`.
pub(crate) fn request_decoder<U>() -> impl Decoder<Item = U, Error = tonic::Status> + Send + 'static
where
    U: prost::Message + Default + Send + 'static,
{
    ProstCodec::<(), U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
}
