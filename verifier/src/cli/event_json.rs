//! Events as `verifier submit` reads them: the protobuf JSON mapping of
//! `tlog.v1.Event`, parsed strictly.
//!
//! Why hand-written rather than generated with `pbjson-build` (0.9 does
//! work with prost 0.14): its generated code needs the well-known
//! `google.protobuf.Timestamp` mapped to `pbjson_types::Timestamp`, which
//! would change the type of `Event::occurred_at` for every crate in the
//! workspace (a Cargo feature could not contain that: features unify), and
//! it brings in `chrono`. Five small messages do not justify either; the
//! mapping below is plain serde.
//!
//! The rules, from the proto3 JSON mapping:
//! - field names in lowerCamelCase (`occurredAt`), or the proto name
//!   (`occurred_at`); a missing field takes its default; a field that is
//!   unknown or given twice is refused;
//! - `occurredAt` is an RFC 3339 time in UTC, `2026-01-31T12:00:00Z`, with 0
//!   to 9 fractional digits (this reader refuses other offsets);
//! - bytes are base64, standard or URL-safe, padded or not;
//! - `recordCount` (uint64) is a number or a decimal string;
//! - `null` is accepted for message fields only.
//!
//! The input is one JSON object or several (JSON lines); errors name the
//! line and the field's path, such as `dataFlow.source.region`.

use crate::proto::{event::Kind, CodeRelease, DataFlow, Event, Location, ReviewerAttestation};
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
use base64::{alphabet, Engine as _};
use prost_types::Timestamp;
use serde::de::{self, Deserializer, IgnoredAny, Unexpected, Visitor};
use serde::Deserialize;

/// Parses every event in `input`, each with the line it starts on.
///
/// Linear in the input: events are read in order and line numbers are
/// counted forward by one [`LineCounter`], never from the start again.
pub fn parse_events(input: &[u8]) -> Result<Vec<(usize, Event)>, String> {
    let mut events = Vec::new();
    let mut lines = LineCounter::new(input);
    let mut stream = serde_json::Deserializer::from_slice(input).into_iter::<IgnoredAny>();
    let mut start = 0;
    while let Some(value) = stream.next() {
        value.map_err(|e| format!("line {}: not JSON: {}", e.line(), without_position(&e)))?;
        let end = stream.byte_offset();
        let first_line = lines.line_at(start);
        let text = &input[start..end];
        let Object(event): Object<EventJson> =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(text))
                .map_err(|e| {
                    let line = first_line + e.inner().line() - 1;
                    match e.path().to_string().as_str() {
                        "." => format!("line {line}: {}", without_position(e.inner())),
                        path => format!("line {line}: {path}: {}", without_position(e.inner())),
                    }
                })?;
        let leading = text.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let line = lines.line_at(start + leading);
        let event = event
            .into_event()
            .map_err(|e| format!("line {line}: {e}"))?;
        events.push((line, event));
        start = end;
    }
    if events.is_empty() {
        return Err("no events in the input".into());
    }
    Ok(events)
}

/// The 1-based line of byte offsets of one input, asked in increasing
/// order: each call counts the newlines between the last offset and this
/// one, so the whole input is scanned once however many events it holds.
struct LineCounter<'a> {
    input: &'a [u8],
    /// The offset last asked for, and the line it is on.
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            offset: 0,
            line: 1,
        }
    }

    /// The line byte `offset` is on; `offset` may not be less than the one
    /// asked for before, which is what keeps the count linear.
    fn line_at(&mut self, offset: usize) -> usize {
        assert!(
            offset >= self.offset,
            "line numbers are counted forward only"
        );
        let newlines = self.input[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.line += newlines;
        self.offset = offset;
        self.line
    }
}

/// serde_json's message without its " at line L column C", which counts
/// from the start of one event rather than of the input.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message.strip_suffix(&suffix).unwrap_or(&message).to_owned()
}

/// A message, read from a JSON object only: serde's derive would also
/// read a struct from an array of its fields in order, which is not the
/// protobuf JSON mapping.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectOnly(std::marker::PhantomData))
            .map(Object)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventJson {
    #[serde(default, alias = "occurred_at", deserialize_with = "timestamp")]
    occurred_at: Option<Timestamp>,
    #[serde(alias = "data_flow")]
    data_flow: Option<Object<DataFlowJson>>,
    #[serde(alias = "code_release")]
    code_release: Option<Object<CodeReleaseJson>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct DataFlowJson {
    #[serde(alias = "flow_id")]
    flow_id: String,
    #[serde(alias = "data_category")]
    data_category: String,
    source: Option<Object<LocationJson>>,
    destination: Option<Object<LocationJson>>,
    purpose: String,
    #[serde(alias = "legal_basis")]
    legal_basis: String,
    #[serde(alias = "record_count", deserialize_with = "uint64")]
    record_count: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct LocationJson {
    system: String,
    #[serde(alias = "data_centre")]
    data_centre: String,
    region: String,
    organisation: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct CodeReleaseJson {
    #[serde(alias = "artifact_name")]
    artifact_name: String,
    version: String,
    #[serde(alias = "artifact_sha256", deserialize_with = "bytes")]
    artifact_sha256: Vec<u8>,
    #[serde(alias = "source_repository")]
    source_repository: String,
    #[serde(alias = "source_commit")]
    source_commit: String,
    #[serde(alias = "build_provenance_sha256", deserialize_with = "bytes")]
    build_provenance_sha256: Vec<u8>,
    #[serde(alias = "release_channel")]
    release_channel: String,
    attestations: Vec<Object<AttestationJson>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct AttestationJson {
    #[serde(alias = "reviewer_key_id")]
    reviewer_key_id: String,
    #[serde(deserialize_with = "bytes")]
    signature: Vec<u8>,
}

impl EventJson {
    fn into_event(self) -> Result<Event, String> {
        let kind = match (self.data_flow, self.code_release) {
            (Some(_), Some(_)) => {
                return Err("dataFlow and codeRelease are one of: give only one".into())
            }
            (Some(Object(flow)), None) => Some(Kind::DataFlow(flow.into())),
            (None, Some(Object(release))) => Some(Kind::CodeRelease(release.into())),
            (None, None) => None,
        };
        Ok(Event {
            occurred_at: self.occurred_at,
            kind,
        })
    }
}

impl From<DataFlowJson> for DataFlow {
    fn from(f: DataFlowJson) -> Self {
        Self {
            flow_id: f.flow_id,
            data_category: f.data_category,
            source: f.source.map(|Object(l)| l.into()),
            destination: f.destination.map(|Object(l)| l.into()),
            purpose: f.purpose,
            legal_basis: f.legal_basis,
            record_count: f.record_count,
        }
    }
}

impl From<LocationJson> for Location {
    fn from(l: LocationJson) -> Self {
        Self {
            system: l.system,
            data_centre: l.data_centre,
            region: l.region,
            organisation: l.organisation,
        }
    }
}

impl From<CodeReleaseJson> for CodeRelease {
    fn from(r: CodeReleaseJson) -> Self {
        Self {
            artifact_name: r.artifact_name,
            version: r.version,
            artifact_sha256: r.artifact_sha256,
            source_repository: r.source_repository,
            source_commit: r.source_commit,
            build_provenance_sha256: r.build_provenance_sha256,
            release_channel: r.release_channel,
            attestations: r
                .attestations
                .into_iter()
                .map(|Object(a)| ReviewerAttestation {
                    reviewer_key_id: a.reviewer_key_id,
                    signature: a.signature,
                })
                .collect(),
        }
    }
}

fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse_rfc3339_utc(&text).map_err(de::Error::custom))
        .transpose()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z`: RFC 3339, UTC only, 1 to 9
/// fractional digits, no leap second.
fn parse_rfc3339_utc(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("{text:?} is not an RFC 3339 UTC time such as 2026-01-31T12:00:00Z");
    let rest = text.strip_suffix('Z').ok_or_else(bad)?;
    let (main, fraction) = match rest.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (rest, None),
    };
    let b = main.as_bytes();
    let shaped = b.len() == 19
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')]
            .iter()
            .all(|&(i, c)| b[i] == c);
    let field = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = main.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        field(0..4),
        field(5..7),
        field(8..10),
        field(11..13),
        field(14..16),
        field(17..19),
    ) else {
        return Err(bad());
    };
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<i32>().map_err(|_| bad())? * 10_i32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(bad()),
    };
    let valid = shaped
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return Err(bad());
    }
    let seconds = days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(Timestamp { seconds, nanos })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A uint64 as a JSON number or a decimal string.
fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Uint64;
    impl Visitor<'_> for Uint64 {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an unsigned 64-bit integer, as a number or a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse().ok())
                .flatten()
                .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(Uint64)
}

/// Base64 in any of the forms the proto3 JSON mapping accepts.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    const CONFIG: general_purpose::GeneralPurposeConfig =
        general_purpose::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
    let text = String::deserialize(d)?;
    STANDARD
        .decode(&text)
        .or_else(|_| URL_SAFE.decode(&text))
        .map_err(|_| de::Error::custom(format!("{text:?} is not base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_parsed_exactly() {
        let t = |s: &str| parse_rfc3339_utc(s).map(|t| (t.seconds, t.nanos));
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok((0, 0)));
        assert_eq!(t("2026-01-01T00:00:00Z"), Ok((1_767_225_600, 0)));
        assert_eq!(
            t("2024-02-29T23:59:59.5Z"),
            Ok((1_709_251_199, 500_000_000))
        );
        assert_eq!(t("2000-03-01T00:00:00.000000001Z"), Ok((951_868_800, 1)));
        for bad in [
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2026-1-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "+026-01-01T00:00:00Z",
        ] {
            assert!(t(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn events_map_every_field() {
        let input = br#"{"occurredAt": "2026-01-01T00:00:01Z", "codeRelease": {
            "artifactName": "app", "version": "1.0", "artifactSha256": "AAECAw==",
            "source_repository": "git.example/app", "sourceCommit": "abc",
            "buildProvenanceSha256": "_-8", "releaseChannel": "stable",
            "attestations": [{"reviewerKeyId": "rev+00000001", "signature": "AQ"}]}}
            {"dataFlow": {"recordCount": "18446744073709551615", "source": null}}"#;
        let events = parse_events(input).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, 1);
        let Some(Kind::CodeRelease(release)) = &events[0].1.kind else {
            panic!("{events:?}")
        };
        assert_eq!(release.artifact_sha256, [0, 1, 2, 3]);
        assert_eq!(release.source_repository, "git.example/app");
        assert_eq!(release.build_provenance_sha256, [0xff, 0xef]);
        assert_eq!(release.attestations[0].signature, [1]);
        assert_eq!(events[1].0, 6);
        let Some(Kind::DataFlow(flow)) = &events[1].1.kind else {
            panic!("{events:?}")
        };
        assert_eq!(flow.record_count, u64::MAX);
        assert_eq!(events[1].1.occurred_at, None);
    }

    #[test]
    fn lines_are_counted_forward_once() {
        let event = r#"{"dataFlow": {"flowId": "a"}}"#;
        let (mut input, mut expected, mut line) = (String::new(), Vec::new(), 1);
        for n in 0..20_000 {
            if n % 7 == 0 {
                input.push('\n');
                line += 1;
            }
            expected.push((input.len(), line));
            input.push_str(event);
            input.push('\n');
            line += 1;
        }
        let input = input.as_bytes();
        let mut counter = LineCounter::new(input);
        let mut examined = 0;
        for &(offset, line) in &expected {
            examined += offset - counter.offset;
            assert_eq!(counter.line_at(offset), line);
        }
        assert!(examined < input.len(), "each byte is examined at most once");
        let lines: Vec<usize> = parse_events(input)
            .unwrap()
            .into_iter()
            .map(|(line, _)| line)
            .collect();
        assert_eq!(
            lines,
            expected.iter().map(|&(_, line)| line).collect::<Vec<_>>()
        );
    }

    #[test]
    #[should_panic(expected = "counted forward only")]
    fn the_line_counter_never_goes_back() {
        let mut counter = LineCounter::new(b"a\nb\n");
        counter.line_at(3);
        counter.line_at(1);
    }

    #[test]
    fn an_error_on_the_last_of_many_lines_names_it() {
        let event = r#"{"dataFlow": {"flowId": "a"}}"#;
        let mut input = format!("{event}\n").repeat(19_999);
        input.push_str(r#"{"dataFlow": {"flowID": "a"}}"#);
        let error = parse_events(input.as_bytes()).unwrap_err();
        assert!(
            error.starts_with("line 20000: dataFlow.flowID: unknown field"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let error = |input: &str| parse_events(input.as_bytes()).unwrap_err();
        let flow = r#"{"dataFlow": {"flowId": "a"}}"#;
        let cases = [
            (
                format!("{flow}\n{{\"dataFlow\": {{\"source\": {{\"regoin\": \"EU\"}}}}}}"),
                "line 2: dataFlow.source.regoin: unknown field `regoin`",
            ),
            (
                format!("{flow}\n\n{{\"dataFlow\": {{\"recordCount\": -1}}}}"),
                "line 3: dataFlow.recordCount: invalid type: integer `-1`",
            ),
            (
                r#"{"dataFlow": {"recordCount": "1e3"}}"#.to_owned(),
                "line 1: dataFlow.recordCount: invalid value: string \"1e3\"",
            ),
            (
                r#"{"dataFlow": {"flowId": "a", "flow_id": "b"}}"#.to_owned(),
                "line 1: dataFlow: duplicate field `flowId`",
            ),
            (
                r#"{"occurredAt": "2026-01-01T00:00:00+01:00"}"#.to_owned(),
                "line 1: occurredAt: \"2026-01-01T00:00:00+01:00\" is not an RFC 3339 UTC time",
            ),
            (
                r#"{"codeRelease": {"artifactSha256": "not base64!"}}"#.to_owned(),
                "line 1: codeRelease.artifactSha256: \"not base64!\" is not base64",
            ),
            (
                format!("{flow}\n{flow}\n{{\"dataFlow\": {{}}, \"codeRelease\": {{}}}}"),
                "line 3: dataFlow and codeRelease are one of",
            ),
            (format!("{flow}\n{{\"dataFlow\": "), "line 2: not JSON: EOF"),
            (
                "[1]".to_owned(),
                "line 1: invalid type: sequence, expected a JSON object",
            ),
            (
                r#"{"dataFlow": ["a", "b"]}"#.to_owned(),
                "line 1: dataFlow: invalid type: sequence, expected a JSON object",
            ),
            (" \n".to_owned(), "no events in the input"),
        ];
        for (input, expected) in cases {
            let message = error(&input);
            assert!(message.starts_with(expected), "{input:?} gave {message:?}");
        }
    }
}
