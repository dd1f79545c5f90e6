//! The servers' gRPC codec: tonic-prost's, except that a request message
//! that does not decode is INVALID_ARGUMENT ("fix the request"), not
//! INTERNAL.
//!
//! tonic-prost maps every decode error to INTERNAL, as the gRPC status-code
//! guide suggests for a peer's unparsable message. For a public server that
//! reads as "the operator has a problem" when the caller sent garbage: a
//! truncated message, a wrong wire type, or a `string` field that is not
//! UTF-8 (such as a `key_id`). The message is `request body: <prost's
//! error>`, which names the message and field prost stopped at.
//!
//! Only the generated servers use this codec; clients keep tonic-prost's,
//! for which a response that does not decode is the server's fault.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstEncoder};

/// tonic-prost's codec with decode errors as INVALID_ARGUMENT. `T` is the
/// message encoded (the response), `U` the message decoded (the request).
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

/// Decodes a request message; see [`RequestCodec`].
#[derive(Debug, Clone, Default)]
pub struct RequestDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_request(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes one request message, or INVALID_ARGUMENT `request body: …`.
fn decode_request<U: Message + Default>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    U::decode(buf).map_err(|e| Status::invalid_argument(format!("request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{AppendRequest, GetEntriesRequest, SignedEvent};
    use tonic::Code;

    fn refused<U: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> Status {
        let status = decode_request::<U>(bytes).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with("request body: "), "{status:?}");
        status
    }

    #[test]
    fn a_well_formed_request_decodes() {
        let request = GetEntriesRequest { start: 3, end: 9 };
        let decoded = decode_request::<GetEntriesRequest>(&*request.encode_to_vec()).unwrap();
        assert_eq!(decoded, request);
    }

    #[test]
    fn malformed_requests_are_invalid_arguments_naming_the_body() {
        let signed = AppendRequest {
            event: Some(SignedEvent {
                event: vec![1, 2, 3],
                key_id: "alice+01020304".into(),
                signature: vec![7; 64],
            }),
        }
        .encode_to_vec();
        refused::<AppendRequest>(&signed[..signed.len() - 5]);
        refused::<AppendRequest>(&[0xff; 12]);
        // `key_id` (field 2 of SignedEvent) holding bytes that are not UTF-8.
        let bad_key_id = [0x0a, 0x04, 0x12, 0x02, 0xc3, 0x28];
        let status = refused::<AppendRequest>(&bad_key_id);
        assert!(status.message().contains("key_id"), "{status:?}");
    }
}
