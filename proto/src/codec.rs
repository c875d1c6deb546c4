//! The gRPC codec of our services: prost, with small initial buffers.
//!
//! tonic gives every stream an encode and a decode buffer of 8 KiB from its
//! first message on. An agent session is one long stream that mostly
//! carries heartbeats, so a coordinator with 10,000 idle sessions held
//! 160 MiB in buffers it did not use (heaptrack, BENCHMARKS.md). Here they
//! start at 1 KiB; a larger message still gets the room it needs (the
//! decoder reserves a message's whole length, the encoder grows as prost
//! writes), so only the idle footprint changes.
use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a stream's encode and decode buffers.
const BUFFER_BYTES: usize = 1024;
/// tonic's default: an encoder yields after this many bytes.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`tonic_prost::ProstCodec`] with [`BUFFER_BYTES`] initial buffers.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
