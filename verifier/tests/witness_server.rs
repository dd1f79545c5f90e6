//! The `verifier witness` binary as an operator runs it: keys from
//! `verifier keygen --cosigner`, state kept across a restart, a clean stop
//! on SIGTERM, and a refusal to start on damaged state. Everything talks
//! to 127.0.0.1 only.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use verifier::checkpoint::Checkpoint;
use verifier::cosignature::{CosignerSigningKey, CosignerVerifierKey};
use verifier::keys::SigningKey;
use verifier::merkle::Hash;
use verifier::witness_protocol::{parse_cosignatures, AddCheckpointRequest, SIZE_CONTENT_TYPE};

const ORIGIN: &str = "log.example.test/witness-server";

/// How long any one step may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

fn log_key() -> SigningKey {
    SigningKey::from_seed(ORIGIN, [0x61; 32]).unwrap()
}

fn verifier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .output()
        .unwrap()
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("witness-server-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An RFC 9162 tree in memory, over `tlog_tiles`' stored hashes.
struct Tree {
    stored: Vec<Hash>,
}

impl tlog_tiles::HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        Ok(indexes.iter().map(|&i| self.stored[i as usize]).collect())
    }
}

impl Tree {
    fn new(n: u64, salt: &str) -> Self {
        let mut tree = Self { stored: Vec::new() };
        for i in 0..n {
            let entry = format!("{salt}entry {i}");
            let hashes = tlog_tiles::stored_hashes(i, entry.as_bytes(), &tree).unwrap();
            tree.stored.extend(hashes);
        }
        tree
    }

    fn note(&self, size: u64) -> Vec<u8> {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: tlog_tiles::tree_hash(size, self).unwrap(),
        }
        .sign(&log_key())
    }

    fn request(&self, old: u64, new: u64) -> AddCheckpointRequest {
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            tlog_tiles::prove_tree(new, old, self).unwrap()
        };
        AddCheckpointRequest::new(old, proof, self.note(new)).unwrap()
    }
}

/// A running `verifier witness`, its stdout lines arriving on a channel.
struct Witness {
    /// `None` once it has been stopped and reaped.
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    cosigner_key: CosignerVerifierKey,
}

impl Witness {
    fn start(key_file: &str, state: &str) -> Self {
        let log = log_key().verifier_key().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_verifier"))
            .args(["witness", "--key", key_file, "--state", state])
            .args(["--log", &log, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let first = lines.recv_timeout(DEADLINE).expect("the cosigner key line");
        let cosigner_key = CosignerVerifierKey::parse(
            first
                .strip_prefix("witness: cosigner key ")
                .unwrap_or_else(|| panic!("unexpected first line {first:?}")),
        )
        .unwrap();
        let serving = lines.recv_timeout(DEADLINE).expect("the serving line");
        assert!(serving.starts_with("witness: serving http://"), "{serving}");
        let listening = lines.recv_timeout(DEADLINE).expect("the listening line");
        let addr = listening
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected line {listening:?}"))
            .parse()
            .unwrap();
        Self {
            child: Some(child),
            lines,
            addr,
            cosigner_key,
        }
    }

    /// Posts `body` to `/add-checkpoint`: the status, the Content-Type and
    /// the body of the answer.
    fn post(&self, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            stream,
            "POST /add-checkpoint HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.addr,
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .split("\r\n")
            .filter_map(|line| line.split_once(": "))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.to_owned())
            .unwrap_or_default();
        (status, content_type, raw[split + 4..].to_vec())
    }

    /// Sends SIGTERM and waits for the exit, and for its last stdout line.
    fn terminate(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (send, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(child.wait().unwrap());
        });
        let status = exited.recv_timeout(DEADLINE).expect("exit after SIGTERM");
        let last = self.lines.recv_timeout(DEADLINE).unwrap_or_default();
        (status, last)
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a witness key with `keygen --cosigner`, returning the file and
/// the cosigner verifier key it printed.
fn keygen_cosigner(dir: &Scratch) -> (String, CosignerVerifierKey) {
    let file = dir.join("witness.key");
    let out = verifier(&[
        "keygen",
        "--name",
        "witness.example.test",
        "--out",
        &file,
        "--cosigner",
    ]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    (file, CosignerVerifierKey::parse(printed.trim()).unwrap())
}

#[test]
fn keygen_cosigner_prints_the_key_a_witness_signs_with() {
    let dir = Scratch::new("keygen");
    let (file, printed) = keygen_cosigner(&dir);
    let key = SigningKey::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(printed, CosignerSigningKey::new(key.clone()).verifier_key());

    let json_file = dir.join("json.key");
    let out = verifier(&["--json", "keygen", "--name", "w.test", "--out", &json_file]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = SigningKey::parse(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
    assert_eq!(json["verifier_key"], key.verifier_key().to_string());
    assert_eq!(
        json["cosigner_verifier_key"],
        CosignerSigningKey::new(key).verifier_key().to_string()
    );
}

#[test]
fn the_witness_keeps_its_state_across_a_restart_and_stops_on_sigterm() {
    let dir = Scratch::new("restart");
    let (key_file, cosigner_key) = keygen_cosigner(&dir);
    let state = dir.join("state");
    let (tree, fork) = (Tree::new(16, ""), Tree::new(16, "fork "));

    let witness = Witness::start(&key_file, &state);
    assert_eq!(witness.cosigner_key, cosigner_key);
    let first = tree.request(0, 8);
    let (status, _, body) = witness.post(&first.to_body());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        parse_cosignatures(&body, &first, &cosigner_key)
            .unwrap()
            .len(),
        1
    );
    let (status, last) = witness.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(last, "witness: stopped");

    let witness = Witness::start(&key_file, &state);
    assert_eq!(
        witness.post(&tree.request(0, 12).to_body()),
        (409, SIZE_CONTENT_TYPE.to_owned(), b"8\n".to_vec()),
        "the restarted witness remembers size 8"
    );
    let rollback = AddCheckpointRequest::new(8, vec![], tree.note(5)).unwrap();
    let (status, _, body) = witness.post(&rollback.to_body());
    assert_eq!(
        (status, String::from_utf8(body).unwrap()),
        (
            400,
            "old size 8 is larger than the checkpoint's size 5\n".into()
        )
    );
    let (status, _, _) = witness.post(&fork.request(8, 12).to_body());
    assert_eq!(status, 422, "a fork of the cosigned tree is never cosigned");
    let next = tree.request(8, 16);
    let (status, _, body) = witness.post(&next.to_body());
    assert_eq!(status, 200);
    assert!(parse_cosignatures(&body, &next, &cosigner_key).is_ok());
}

#[test]
fn a_damaged_state_or_a_bad_log_key_refuses_to_start() {
    let dir = Scratch::new("damaged");
    let (key_file, _) = keygen_cosigner(&dir);
    let state = dir.join("state");
    let witness = Witness::start(&key_file, &state);
    assert_eq!(
        witness.post(&Tree::new(3, "").request(0, 3).to_body()).0,
        200
    );
    drop(witness);

    let stored = find_file(Path::new(&state), "cosigned");
    let mut note = std::fs::read(&stored).unwrap();
    let last = note.len() - 3;
    note[last] ^= 0x20;
    std::fs::write(&stored, note).unwrap();
    let log = log_key().verifier_key().to_string();
    let out = verifier(&[
        "witness",
        "--key",
        &key_file,
        "--state",
        &state,
        "--log",
        &log,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let reason = stderr.lines().last().unwrap();
    assert!(
        reason.starts_with("verifier: could not check: witness state ")
            && reason.contains("is damaged"),
        "{stderr}"
    );
    assert!(reason.contains(&stored.display().to_string()), "{reason}");

    let out = verifier(&[
        "witness",
        "--key",
        &key_file,
        "--state",
        &state,
        "--log",
        "not-a-key",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("--log not-a-key: not a verifier key"),);
}

/// The one file called `name` somewhere under `dir`.
fn find_file(dir: &Path, name: &str) -> PathBuf {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let candidate = path.join(name);
            if candidate.exists() {
                return candidate;
            }
        }
    }
    panic!("no {name} under {}", dir.display());
}
