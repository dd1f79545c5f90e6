//! Minimal events for the lookup tests: just the fields the lookups key
//! on, so each test says which digest or flow id it looks for.

use verifier::proto::{event::Kind, CodeRelease, DataFlow, Event, Location};

/// A release of an artifact with `digest`.
pub fn release(digest: [u8; 32]) -> Event {
    Event {
        occurred_at: Some(prost_types::Timestamp::default()),
        kind: Some(Kind::CodeRelease(CodeRelease {
            artifact_name: "app".into(),
            version: "1.0".into(),
            artifact_sha256: digest.to_vec(),
            release_channel: "stable".into(),
            ..CodeRelease::default()
        })),
    }
}

/// A data flow with `id`.
pub fn flow(id: &str) -> Event {
    Event {
        occurred_at: Some(prost_types::Timestamp::default()),
        kind: Some(Kind::DataFlow(DataFlow {
            flow_id: id.into(),
            destination: Some(Location::default()),
            ..DataFlow::default()
        })),
    }
}
