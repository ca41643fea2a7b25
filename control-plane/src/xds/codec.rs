//! The gRPC codec of ADS streams: prost encoding with small initial buffers.
//!
//! tonic reserves 8 KiB per direction per stream by default. An idle ADS
//! stream reads a few hundred bytes now and then, so the decode buffer starts
//! at 1 KiB (it grows for larger requests); the encode buffer grows to the
//! largest response the stream has carried. With 10,000 idle streams this is
//! the difference between ~28 KiB and ~15 KiB each.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Initial buffer size per direction.
const BUFFER_SIZE: usize = 1024;
/// Encoded bytes after which the encoder yields to the transport.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Prost codec with small initial buffers. `T` is encoded, `U` decoded.
#[derive(Debug)]
pub(crate) struct AdsCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for AdsCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for AdsCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
