//! Canonical protobuf: one message, one encoding.
//!
//! A signed [`crate::proto::Event`] is stored and hashed as the bytes the
//! submitter sent, so those bytes must mean one thing to every parser in
//! every language. Protobuf parsers tolerate much that makes two readers
//! disagree or lets one event hide in many encodings: unknown fields
//! (kept by some parsers, dropped by others), a field repeated (the last
//! wins), both members of a oneof (the last wins), fields out of order,
//! defaults encoded explicitly, over-long varints. The rule here is the
//! strictest one that needs no schema of its own: bytes are canonical when
//! they decode under the schema and re-encode (prost writes fields in
//! field-number order and omits defaults) to exactly the same bytes.
//!
//! When they do not, [`NonCanonical`] names the first difference by its
//! field-number path (`2.3.4` is field 4 of the message in field 3 of the
//! message in field 2), so a client in another language can find it.

use prost::Message;

/// Why bytes are not the canonical encoding of a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonCanonical {
    /// The bytes do not decode under the schema at all.
    #[error("does not decode: {0}")]
    Malformed(String),
    /// The bytes decode, but another encoding is the canonical one.
    #[error("not canonically encoded: {0}")]
    Encoding(String),
}

/// Decodes `bytes` as `M` only if they are `M`'s canonical encoding.
pub fn decode_canonical<M: Message + Default>(bytes: &[u8]) -> Result<M, NonCanonical> {
    let message = M::decode(bytes).map_err(|e| NonCanonical::Malformed(e.to_string()))?;
    let canonical = message.encode_to_vec();
    if canonical != bytes {
        return Err(NonCanonical::Encoding(first_difference(
            bytes, &canonical, "",
        )));
    }
    Ok(message)
}

/// One field as it appears on the wire.
#[derive(Clone, Copy)]
struct WireField<'a> {
    number: u64,
    wire_type: u8,
    /// The whole field: tag, length prefix if any, value.
    raw: &'a [u8],
    /// The value: for length-delimited fields the bytes after the length.
    value: &'a [u8],
}

/// Splits a message into its top-level fields, or `None` if the bytes are
/// not a sequence of well-formed fields (groups included, which proto3
/// never writes).
fn fields(mut bytes: &[u8]) -> Option<Vec<WireField<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let tag = varint(&mut bytes)?;
        let (number, wire_type) = (tag >> 3, (tag & 7) as u8);
        let value = match wire_type {
            0 => {
                let before = bytes;
                varint(&mut bytes)?;
                &before[..before.len() - bytes.len()]
            }
            1 => take(&mut bytes, 8)?,
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                take(&mut bytes, len)?
            }
            5 => take(&mut bytes, 4)?,
            _ => return None,
        };
        let raw = &start[..start.len() - bytes.len()];
        out.push(WireField {
            number,
            wire_type,
            raw,
            value,
        });
    }
    Some(out)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (value, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(value)
}

/// Describes the first way `sent` departs from `canonical`, two encodings
/// of one message. `path` names the message (empty at the top).
fn first_difference(sent: &[u8], canonical: &[u8], path: &str) -> String {
    let name = |number: u64| {
        if path.is_empty() {
            format!("field {number}")
        } else {
            format!("field {path}.{number}")
        }
    };
    let (Some(sent), Some(canonical)) = (fields(sent), fields(canonical)) else {
        return format!("{} is not a sequence of protobuf fields", at(path));
    };
    for pair in sent.windows(2) {
        if pair[1].number < pair[0].number {
            return format!(
                "{} comes after {}: fields must be in field-number order",
                name(pair[1].number),
                name(pair[0].number)
            );
        }
    }
    for (i, field) in sent.iter().enumerate() {
        let Some(expected) = canonical.get(i) else {
            return extra_field(field, &canonical, &name);
        };
        if field.number != expected.number {
            return if field.number < expected.number {
                extra_field(field, &canonical, &name)
            } else {
                format!(
                    "{} appears where the canonical encoding has {}",
                    name(field.number),
                    name(expected.number)
                )
            };
        }
        if field.raw == expected.raw {
            continue;
        }
        if field.wire_type != expected.wire_type {
            return format!("{} has the wrong wire type", name(field.number));
        }
        if field.wire_type == 2 && field.value != expected.value {
            if fields(field.value).is_some() && fields(expected.value).is_some() {
                let inner = if path.is_empty() {
                    field.number.to_string()
                } else {
                    format!("{path}.{}", field.number)
                };
                return first_difference(field.value, expected.value, &inner);
            }
            return format!(
                "{} does not re-encode to the same bytes",
                name(field.number)
            );
        }
        return format!(
            "{} is not minimally encoded (over-long varint)",
            name(field.number)
        );
    }
    format!("{} ends early", at(path))
}

/// Why `field`, which the canonical encoding does not have, is there.
fn extra_field(
    field: &WireField<'_>,
    canonical: &[WireField<'_>],
    name: &dyn Fn(u64) -> String,
) -> String {
    let is_default = match field.wire_type {
        0 => field.value == [0],
        1 => field.value == [0; 8],
        5 => field.value == [0; 4],
        _ => field.value.is_empty(),
    };
    if canonical.iter().any(|c| c.number == field.number) {
        format!(
            "{} is given more than once (a repeated singular field)",
            name(field.number)
        )
    } else if is_default {
        format!(
            "{} encodes its default value; defaults are left out",
            name(field.number)
        )
    } else {
        format!(
            "{} is unknown to the schema or a second member of a oneof",
            name(field.number)
        )
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the message".into()
    } else {
        format!("field {path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::flow;
    use crate::proto::{event::Kind, CodeRelease, Event};

    fn refused(bytes: &[u8]) -> String {
        match decode_canonical::<Event>(bytes) {
            Err(NonCanonical::Encoding(reason)) => reason,
            other => panic!("expected a non-canonical encoding, got {other:?}"),
        }
    }

    #[test]
    fn the_canonical_encoding_is_accepted() {
        let bytes = flow().encode_to_vec();
        assert_eq!(decode_canonical::<Event>(&bytes).unwrap(), flow());
    }

    #[test]
    fn an_unknown_field_is_named() {
        let mut bytes = flow().encode_to_vec();
        bytes.extend_from_slice(&[0x7a, 3, b'a', b'b', b'c']); // field 15, bytes
        assert_eq!(
            refused(&bytes),
            "field 15 is unknown to the schema or a second member of a oneof"
        );
    }

    #[test]
    fn an_unknown_field_inside_a_nested_message_is_named_by_its_path() {
        let mut event = flow();
        let Some(Kind::DataFlow(flow)) = event.kind.take() else {
            unreachable!()
        };
        let mut inner = flow.encode_to_vec();
        inner.extend_from_slice(&[0x98, 0x01, 1]); // field 19, varint 1
        let mut bytes = Event {
            occurred_at: event.occurred_at,
            kind: None,
        }
        .encode_to_vec();
        bytes.push(0x12);
        prost::encoding::encode_varint(inner.len() as u64, &mut bytes);
        bytes.extend_from_slice(&inner);
        assert_eq!(
            refused(&bytes),
            "field 2.19 is unknown to the schema or a second member of a oneof"
        );
    }

    #[test]
    fn both_oneof_members_are_refused() {
        let mut bytes = flow().encode_to_vec();
        let release = CodeRelease {
            artifact_name: "app".into(),
            ..CodeRelease::default()
        };
        let with_release = Event {
            occurred_at: None,
            kind: Some(Kind::CodeRelease(release)),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&with_release);
        // The last member wins when decoding, so the data flow is the one
        // the canonical encoding has lost.
        assert_eq!(
            refused(&bytes),
            "field 2 is unknown to the schema or a second member of a oneof"
        );
    }

    #[test]
    fn fields_out_of_order_are_refused() {
        let event = flow();
        let time = Event {
            occurred_at: event.occurred_at,
            kind: None,
        }
        .encode_to_vec();
        let kind = Event {
            occurred_at: None,
            kind: event.kind,
        }
        .encode_to_vec();
        let bytes = [kind, time].concat();
        assert_eq!(
            refused(&bytes),
            "field 1 comes after field 2: fields must be in field-number order"
        );
    }

    #[test]
    fn an_explicit_default_is_refused() {
        let mut bytes = vec![0x08, 0]; // a field 1 varint 0 inside the timestamp
        let time = prost_types::Timestamp {
            seconds: 0,
            nanos: 5,
        }
        .encode_to_vec();
        bytes.extend_from_slice(&time);
        let mut event = vec![0x0a];
        prost::encoding::encode_varint(bytes.len() as u64, &mut event);
        event.extend_from_slice(&bytes);
        assert_eq!(
            refused(&event),
            "field 1.1 encodes its default value; defaults are left out"
        );
    }

    #[test]
    fn a_repeated_singular_field_is_refused() {
        let mut bytes = flow().encode_to_vec();
        let time = Event {
            occurred_at: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            kind: None,
        }
        .encode_to_vec();
        bytes.extend_from_slice(&time);
        assert_eq!(
            refused(&bytes),
            "field 1 comes after field 2: fields must be in field-number order"
        );
        let doubled = [time.clone(), time].concat();
        assert_eq!(
            refused(&doubled),
            "field 1 is given more than once (a repeated singular field)"
        );
    }

    #[test]
    fn an_over_long_varint_is_refused() {
        // Timestamp { seconds: 5 } with the value 5 written in two bytes.
        let inner = [0x08, 0x85, 0x00];
        let bytes = [&[0x0a, inner.len() as u8][..], &inner].concat();
        assert_eq!(
            refused(&bytes),
            "field 1.1 is not minimally encoded (over-long varint)"
        );
    }

    #[test]
    fn garbage_is_malformed_not_non_canonical() {
        assert!(matches!(
            decode_canonical::<Event>(&[0xff, 0xff]),
            Err(NonCanonical::Malformed(_))
        ));
    }
}
