//! The witnesses a log asks to cosign its checkpoints: the `--witnesses`
//! file (by default `<data-dir>/witnesses`, if it exists).
//!
//! ```text
//! # <cosigner verifier key> <submission prefix URL>
//! witness.example/w1+1a2b3c4d+BF7y…= http://witness-1.example:7380
//! witness.example/w2+5e6f7a8b+BKq0…= http://witness-2.example:7380/log-a
//! ```
//!
//! One witness per line; blank lines and lines starting with `#` are
//! ignored. The key is a C2SP `cosignature/v1` verifier key (signature type
//! `0x04`); the URL is the witness's C2SP tlog-witness submission prefix,
//! to which `/add-checkpoint` is appended. Anything else on a line, a key
//! listed twice, or a URL this build cannot reach (it speaks plain HTTP
//! only) refuses the whole file with `path:line: reason`: a log that
//! silently skipped a witness would publish checkpoints that fail its
//! clients' quorum.

use crate::data_dir::ConfigError;
use std::path::{Path, PathBuf};
use verifier::cosignature::CosignerVerifierKey;

/// One witness the log asks to cosign each checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// The witness's cosigner key; replies are verified against it.
    pub key: CosignerVerifierKey,
    /// The submission prefix, without a trailing `/`.
    pub url: String,
}

impl Witness {
    /// Where `add-checkpoint` requests go.
    pub fn add_checkpoint_url(&self) -> String {
        format!(
            "{}/{}",
            self.url,
            verifier::witness_protocol::ADD_CHECKPOINT_PATH
        )
    }
}

/// The configured witnesses and the file they came from.
#[derive(Debug, Clone)]
pub struct WitnessList {
    /// Where they were read from, for messages.
    pub path: PathBuf,
    /// The witnesses, in file order.
    pub witnesses: Vec<Witness>,
}

/// Reads the witness file: `explicit` if given (it must exist), otherwise
/// `<data_dir>/witnesses` if that exists. `None` when no file applies.
pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Option<WitnessList>, ConfigError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => {
            let default = data_dir.join("witnesses");
            if !default.exists() {
                return Ok(None);
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let witnesses = parse(&text)
        .map_err(|(line, reason)| ConfigError(format!("{}:{line}: {reason}", path.display())))?;
    Ok(Some(WitnessList { path, witnesses }))
}

/// Parses a witness file. An error carries the 1-based line number and
/// the reason.
pub fn parse(text: &str) -> Result<Vec<Witness>, (usize, String)> {
    let mut witnesses: Vec<(usize, Witness)> = Vec::new();
    for (number, line) in (1..).zip(text.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let witness = parse_line(line).map_err(|reason| (number, reason))?;
        if let Some((first, _)) = witnesses.iter().find(|(_, w)| w.key == witness.key) {
            return Err((
                number,
                format!(
                    "witness key {} is already listed on line {first}",
                    witness.key.key_id()
                ),
            ));
        }
        witnesses.push((number, witness));
    }
    Ok(witnesses.into_iter().map(|(_, w)| w).collect())
}

fn parse_line(line: &str) -> Result<Witness, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [key, url] = fields[..] else {
        return Err(format!(
            "expected `<cosigner verifier key> <URL>`, found {} field(s)",
            fields.len()
        ));
    };
    let key = CosignerVerifierKey::parse(key).map_err(|e| e.to_string())?;
    Ok(Witness {
        key,
        url: parse_url(url)?,
    })
}

/// Checks a submission prefix: `https://host[:port][/path]` (or
/// `http://`), with no query or fragment, returned without a trailing `/`.
fn parse_url(url: &str) -> Result<String, String> {
    let expected = || format!("URL {url}: expected https://host[:port][/path] or http://…");
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(expected());
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(expected());
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "URL {url}: a submission prefix has no query or fragment"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use verifier::cosignature::CosignerSigningKey;
    use verifier::keys::SigningKey;

    fn vkey(seed: u8) -> CosignerVerifierKey {
        let key = SigningKey::from_seed(&format!("witness.example/w{seed}"), [seed; 32]).unwrap();
        CosignerSigningKey::new(key).verifier_key()
    }

    #[test]
    fn witnesses_are_read_in_order_skipping_comments_and_blank_lines() {
        let text = format!(
            "# the log's witnesses\n\n{} http://127.0.0.1:7380/\n   \n  {}\thttp://w2.example/prefix/log-a  \n",
            vkey(1),
            vkey(2)
        );
        let witnesses = parse(&text).unwrap();
        assert_eq!(
            witnesses,
            vec![
                Witness {
                    key: vkey(1),
                    url: "http://127.0.0.1:7380".into()
                },
                Witness {
                    key: vkey(2),
                    url: "http://w2.example/prefix/log-a".into()
                },
            ]
        );
        assert_eq!(
            witnesses[1].add_checkpoint_url(),
            "http://w2.example/prefix/log-a/add-checkpoint"
        );
        assert_eq!(parse("# nobody yet\n"), Ok(vec![]));
    }

    #[test]
    fn every_bad_line_is_refused_with_its_number_and_reason() {
        let log_key = SigningKey::from_seed("log.example", [9; 32])
            .unwrap()
            .verifier_key();
        let cases = [
            (format!("{}\n", vkey(1)), "found 1 field"),
            (
                format!("{} http://a.example extra\n", vkey(1)),
                "found 3 field",
            ),
            ("nonsense http://a.example\n".to_owned(), "cosigner"),
            (format!("{log_key} http://a.example\n"), "0x01"),
            (format!("{} a.example:80\n", vkey(1)), "expected https://"),
            (
                format!("{} ftp://a.example\n", vkey(1)),
                "expected https://",
            ),
            (format!("{} https:///x\n", vkey(1)), "expected https://"),
            (format!("{} http:///x\n", vkey(1)), "expected https://"),
            (format!("{} http://a.example/?x=1\n", vkey(1)), "query"),
            (
                format!(
                    "{} http://a.example\n{} http://b.example\n",
                    vkey(1),
                    vkey(1)
                ),
                "already listed on line 2",
            ),
        ];
        for (text, reason) in cases {
            let text = format!("# header\n{text}");
            let (line, message) = parse(&text).unwrap_err();
            let expected_line = if reason.starts_with("already") { 3 } else { 2 };
            assert_eq!(line, expected_line, "{text}");
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    #[test]
    fn the_file_is_explicit_or_the_data_directory_default() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(None, dir.path()).unwrap().is_none());
        let explicit = dir.path().join("mine");
        assert!(load(Some(&explicit), dir.path())
            .unwrap_err()
            .0
            .contains("cannot read"));

        let default = dir.path().join("witnesses");
        std::fs::write(&default, format!("{} http://a.example\n", vkey(1))).unwrap();
        let list = load(None, dir.path()).unwrap().unwrap();
        assert_eq!(list.path, default);
        assert_eq!(list.witnesses.len(), 1);

        std::fs::write(&explicit, "\n\nbroken\n").unwrap();
        let err = load(Some(&explicit), dir.path()).unwrap_err();
        assert!(
            err.0.starts_with(&format!("{}:3: ", explicit.display())),
            "{err}"
        );
    }
}
