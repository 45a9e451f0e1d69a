//! gRPC on the wire as the transcoder needs it: messages framed with their 5-byte prefix, the
//! frames of a response body taken apart, and a gRPC status as an HTTP status and the
//! `google.rpc.Status` JSON body (its details decoded from `grpc-status-details-bin` with the
//! descriptors at hand).

use bytes::{Buf, BytesMut};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// The largest message the transcoder takes from an upstream.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Appends `message` to `out` as one gRPC frame (uncompressed), encoded in place.
pub fn put_message(message: &impl prost::Message, out: &mut Vec<u8>) {
    let len = message.encoded_len();
    out.reserve(5 + len);
    out.push(0);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    // A Vec grows as needed: encoding into one cannot run out of room.
    let _ = message.encode(out);
}

/// Takes messages out of a response body as its bytes arrive.
#[derive(Debug, Default)]
pub struct Frames {
    buf: BytesMut,
}

impl Frames {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if one is there.
    pub fn next_message(&mut self) -> Result<Option<BytesMut>, String> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            // We never offer an encoding, so a compressed message breaks the protocol.
            return Err("the upstream sent a compressed message".into());
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(format!("a message of {len} bytes is over {MAX_MESSAGE}"));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        Ok(Some(self.buf.split_to(len)))
    }

    /// Bytes of an unfinished message are left: the body ended in the middle of one.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The HTTP status for a gRPC status code (google.rpc.Code's own mapping).
pub fn http_status(code: u32) -> u16 {
    match code {
        0 => 200,
        1 => 499,          // CANCELLED
        3 | 9 | 11 => 400, // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        4 => 504,          // DEADLINE_EXCEEDED
        5 => 404,          // NOT_FOUND
        6 | 10 => 409,     // ALREADY_EXISTS, ABORTED
        7 => 403,          // PERMISSION_DENIED
        8 => 429,          // RESOURCE_EXHAUSTED
        12 => 501,         // UNIMPLEMENTED
        14 => 503,         // UNAVAILABLE
        16 => 401,         // UNAUTHENTICATED
        _ => 500,          // UNKNOWN, INTERNAL, DATA_LOSS, and codes we do not know
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), what `grpc-status-details-bin` holds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// The `google.rpc.Status` JSON of an error: the code and message of the status, and the
/// details of `grpc-status-details-bin` (decoded from base64 by the caller), each as its proto3
/// JSON with `@type` when `pool` knows its type, as `@type` and the base64 `value` otherwise.
pub fn status_json(
    code: u32,
    message: &str,
    details: Option<&[u8]>,
    pool: &DescriptorPool,
) -> Vec<u8> {
    use prost::Message as _;

    let details: Vec<serde_json::Value> = details
        .and_then(|bytes| RpcStatus::decode(bytes).ok())
        .map(|status| {
            status
                .details
                .iter()
                .map(|any| detail_json(any, pool))
                .collect()
        })
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({ "code": code, "message": message, "details": details }))
        .unwrap_or_default()
}

fn detail_json(any: &prost_types::Any, pool: &DescriptorPool) -> serde_json::Value {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let decoded = pool
        .get_message_by_name(type_name)
        .and_then(|descriptor| DynamicMessage::decode(descriptor, any.value.as_slice()).ok())
        .and_then(|message| {
            message
                .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
                .ok()
        });
    let mut object = serde_json::Map::new();
    object.insert("@type".into(), any.type_url.clone().into());
    match decoded {
        Some(serde_json::Value::Object(fields)) => object.extend(fields),
        // A well-known type with a JSON form of its own.
        Some(other) => {
            object.insert("value".into(), other);
        }
        None => {
            use base64::encode;
            object.insert("value".into(), encode(&any.value).into());
        }
    }
    serde_json::Value::Object(object)
}

/// Standard base64, for bytes the descriptors cannot decode and for
/// `grpc-status-details-bin` (sent without padding).
pub mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Decodes standard base64, with or without padding.
    pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
        let text: Vec<u8> = text.iter().copied().filter(|&b| b != b'=').collect();
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        for chunk in text.chunks(4) {
            if chunk.len() == 1 {
                return None;
            }
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                let v = ALPHABET.iter().position(|&a| a == c)? as u32;
                n |= v << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        Some(out)
    }

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// gRPC's percent-decoding of `grpc-message` (a bad escape is kept as it is).
pub fn decode_message(raw: &[u8]) -> String {
    match super::percent_decode(raw, false) {
        Some(decoded) => String::from_utf8_lossy(&decoded).into_owned(),
        None => String::from_utf8_lossy(raw).into_owned(),
    }
}
