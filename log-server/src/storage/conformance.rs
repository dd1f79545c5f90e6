//! One behavioural suite for every backend, so the sequencer can rely on
//! the [`Storage`] contract and not on whichever backend it runs on.
//!
//! Each test is a generic function over [`Backend`]; `conformance_suite!`
//! instantiates all of them once per backend, each in its own temporary
//! directory, opened through [`Backend::open`] as the server opens it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;

use tempfile::TempDir;

use super::{Backend, Batch, Digest, LookupRow, Storage, StorageError, TileWrite};

/// Hashes per full level-0 tile.
const TILE_WIDTH: u64 = 256;
/// What an index lookup with no match returns.
const NO_INDEXES: [u64; 0] = [];

/// A backend in a temporary directory that lives as long as the fixture,
/// so a test can drop its store and open the same files again.
struct Fixture {
    backend: Backend,
    dir: TempDir,
}

impl Fixture {
    fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("create temporary directory");
        Self { backend, dir }
    }

    fn open(&self) -> Box<dyn Storage> {
        self.backend.open(self.dir.path()).expect("open store")
    }
}

fn entry(index: u64) -> Vec<u8> {
    format!("entry {index}").into_bytes()
}

fn entries_in(indexes: Range<u64>) -> Vec<Vec<u8>> {
    indexes.map(entry).collect()
}

fn event_id(index: u64) -> Digest {
    digest(b'e', index)
}

fn leaf_hash(index: u64) -> Digest {
    digest(b'l', index)
}

/// A digest whose index prefix is `index`, so distinct entries never
/// share a prefix unless a test makes them.
fn digest(tag: u8, index: u64) -> Digest {
    let mut out = [tag; 32];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out
}

/// The lookup key only entry `index` has.
fn own_key(index: u64) -> Digest {
    digest(b'k', index)
}

/// The lookup key every entry has, as a busy submitter's would be.
const SHARED_KEY: Digest = [b's'; 32];

/// Entry `index`'s lookup rows: its own key and the shared one.
fn lookup_rows(index: u64) -> [LookupRow; 2] {
    [own_key(index), SHARED_KEY].map(|key| LookupRow { key, index })
}

fn checkpoint(size: u64) -> Vec<u8> {
    format!("checkpoint {size}\n").into_bytes()
}

/// Level-0 tile `index` of a log of `size` entries: its leaf hashes so far.
fn level0_tile(index: u64, size: u64) -> Vec<u8> {
    let start = index * TILE_WIDTH;
    let end = size.min(start + TILE_WIDTH);
    (start..end).flat_map(leaf_hash).collect()
}

/// The batch growing a log from `first` to `first + count` entries, with
/// every level-0 tile it touches rewritten whole, as the sequencer does.
fn batch(first: u64, count: u64) -> Batch {
    let size = first + count;
    let indexes = first..size;
    let touched = first / TILE_WIDTH..size.div_ceil(TILE_WIDTH);
    Batch {
        first_index: first,
        entries: indexes.clone().map(entry).collect(),
        event_ids: indexes.clone().map(event_id).collect(),
        leaf_hashes: indexes.clone().map(leaf_hash).collect(),
        lookup_rows: indexes.flat_map(lookup_rows).collect(),
        tiles: touched
            .map(|index| TileWrite {
                level: 0,
                index,
                hashes: level0_tile(index, size),
            })
            .collect(),
        checkpoint: checkpoint(size),
    }
}

/// Grows a new store to `size` entries in batches of `step`.
fn grow(store: &dyn Storage, from: u64, size: u64, step: u64) {
    for first in (from..size).step_by(step as usize) {
        let count = step.min(size - first);
        store.commit(&batch(first, count)).expect("commit batch");
    }
}

/// Asserts the store holds exactly the log `grow` builds up to `size`.
fn assert_log(store: &dyn Storage, size: u64) {
    assert_eq!(store.size().unwrap(), size);
    assert_eq!(store.entries(0, size).unwrap(), entries_in(0..size));
    let expected_checkpoint = (size > 0).then(|| checkpoint(size));
    assert_eq!(store.checkpoint().unwrap(), expected_checkpoint);
    for index in 0..size {
        assert_eq!(store.event_candidates(&event_id(index)).unwrap(), [index]);
        assert_eq!(store.index_of_leaf(&leaf_hash(index)).unwrap(), Some(index));
    }
    assert_eq!(store.event_candidates(&event_id(size)).unwrap(), NO_INDEXES);
    assert_eq!(store.index_of_leaf(&leaf_hash(size)).unwrap(), None);
    assert_lookups(store, size);
    let tiles = size.div_ceil(TILE_WIDTH);
    for index in 0..tiles {
        assert_eq!(
            store.tile(0, index).unwrap(),
            Some(level0_tile(index, size))
        );
    }
    assert_eq!(store.tile(0, tiles).unwrap(), None);
}

/// Asserts the store holds exactly the lookup rows `grow` writes up to
/// `size`, and its marker says so.
fn assert_lookups(store: &dyn Storage, size: u64) {
    assert_eq!(store.lookup_rows_through().unwrap(), size);
    for index in 0..size {
        let own = store.lookup_candidates(&own_key(index), 0, 10).unwrap();
        assert_eq!(own, [index]);
    }
    let shared = store.lookup_candidates(&SHARED_KEY, 0, usize::MAX).unwrap();
    assert_eq!(shared, (0..size).collect::<Vec<_>>());
    let none = store.lookup_candidates(&own_key(size), 0, 10).unwrap();
    assert_eq!(none, NO_INDEXES);
}

fn new_store_is_empty(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    assert_eq!(store.size().unwrap(), 0);
    assert_eq!(store.checkpoint().unwrap(), None);
    assert_eq!(store.tile(0, 0).unwrap(), None);
    assert_eq!(store.tile(1, 0).unwrap(), None);
    assert_eq!(store.entries(0, 0).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(store.event_candidates(&event_id(0)).unwrap(), NO_INDEXES);
    assert_eq!(store.index_of_leaf(&leaf_hash(0)).unwrap(), None);
    assert_lookups(store.as_ref(), 0);
}

fn commits_read_back(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    store.commit(&batch(0, 5)).unwrap();
    assert_log(&*store, 5);
    store.commit(&batch(5, 7)).unwrap();
    assert_log(&*store, 12);
    assert_eq!(store.entries(3, 9).unwrap(), entries_in(3..9));
    assert_eq!(store.entries(11, 12).unwrap(), vec![entry(11)]);
    assert_eq!(store.entries(4, 4).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(store.entries(9, 4).unwrap(), Vec::<Vec<u8>>::new());
}

fn partial_tile_is_replaced_whole(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    let tile = |level, index, hashes: u8| TileWrite {
        level,
        index,
        hashes: vec![hashes; 32 * usize::from(hashes)],
    };
    let mut first = batch(0, 1);
    first.tiles = vec![tile(1, 7, 3), tile(2, 7, 1)];
    store.commit(&first).unwrap();
    let mut second = batch(1, 1);
    second.tiles = vec![tile(1, 7, 5)];
    store.commit(&second).unwrap();
    assert_eq!(store.tile(1, 7).unwrap(), Some(vec![5; 32 * 5]));
    assert_eq!(store.tile(2, 7).unwrap(), Some(vec![1; 32]));
    assert_eq!(store.tile(0, 7).unwrap(), None);
    assert_eq!(store.tile(1, 6).unwrap(), None);
    assert_eq!(store.tile(1, 8).unwrap(), None);
}

fn survives_reopen(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, 300, 50);
    drop(store);
    let store = fixture.open();
    assert_log(&*store, 300);
    grow(&*store, 300, 310, 10);
    drop(store);
    assert_log(&*fixture.open(), 310);
}

fn out_of_order_changes_nothing(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    // Rows are left out: they would name entries outside the moved batch,
    // which is refused as malformed before the order is even checked.
    let early = Batch {
        first_index: 1,
        lookup_rows: Vec::new(),
        ..batch(0, 2)
    };
    let err = store.commit(&early).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::OutOfOrder {
                batch: 1,
                stored: 0
            }
        ),
        "{err}"
    );
    assert_log(&*store, 0);

    grow(&*store, 0, 10, 4);
    for first_index in [7, 11, 0] {
        let misplaced = Batch {
            first_index,
            lookup_rows: Vec::new(),
            ..batch(10, 3)
        };
        let err = store.commit(&misplaced).unwrap_err();
        assert!(
            matches!(err, StorageError::OutOfOrder { batch, stored: 10 } if batch == first_index),
            "{err}"
        );
    }
    assert_log(&*store, 10);
    assert_eq!(store.event_candidates(&event_id(12)).unwrap(), NO_INDEXES);
    assert_eq!(store.index_of_leaf(&leaf_hash(12)).unwrap(), None);
}

fn malformed_batch_changes_nothing(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, 10, 10);
    let mut short_events = batch(10, 3);
    short_events.event_ids.pop();
    let mut short_leaves = batch(10, 3);
    short_leaves.leaf_hashes.pop();
    let mut long_events = batch(10, 3);
    long_events.event_ids.push(event_id(13));
    let mut ragged_tile = batch(10, 3);
    ragged_tile.tiles[0].hashes.pop();
    let mut empty_tile = batch(10, 3);
    empty_tile.tiles[0].hashes.clear();
    let mut no_checkpoint = batch(10, 3);
    no_checkpoint.checkpoint.clear();
    for malformed in [
        short_events,
        short_leaves,
        long_events,
        ragged_tile,
        empty_tile,
        no_checkpoint,
    ] {
        let err = store.commit(&malformed).unwrap_err();
        assert!(matches!(err, StorageError::MalformedBatch(_)), "{err}");
    }
    assert_log(&*store, 10);
    assert_eq!(store.event_candidates(&event_id(10)).unwrap(), NO_INDEXES);
    assert_eq!(store.index_of_leaf(&leaf_hash(10)).unwrap(), None);
}

fn checkpoint_only_batch_replaces_checkpoint(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    let only = |first_index, note: &[u8]| Batch {
        first_index,
        checkpoint: note.to_vec(),
        ..Batch::default()
    };
    store.commit(&only(0, b"empty tree")).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(b"empty tree".to_vec()));
    assert_eq!(store.size().unwrap(), 0);

    grow(&*store, 0, 4, 4);
    store.commit(&only(4, b"cosigned")).unwrap();
    assert_eq!(store.checkpoint().unwrap(), Some(b"cosigned".to_vec()));
    assert_eq!(store.size().unwrap(), 4);
    assert_eq!(store.entries(0, 4).unwrap(), entries_in(0..4));
    assert_eq!(store.tile(0, 0).unwrap(), Some(level0_tile(0, 4)));

    let err = store.commit(&only(3, b"stale")).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::OutOfOrder {
                batch: 3,
                stored: 4
            }
        ),
        "{err}"
    );
    assert_eq!(store.checkpoint().unwrap(), Some(b"cosigned".to_vec()));
}

/// The tree size a checkpoint written by [`checkpoint`] is for.
fn checkpoint_size(note: &[u8]) -> u64 {
    let text = std::str::from_utf8(note).expect("checkpoint is text");
    let size = text
        .trim_end()
        .strip_prefix("checkpoint ")
        .expect("checkpoint prefix");
    size.parse().expect("checkpoint size")
}

/// One reader pass: every read must describe a state some commit left.
/// A checkpoint read before `size` can only be older, one read after it
/// only newer, and every entry and hash below the size must be there.
fn read_consistently(store: &dyn Storage) -> u64 {
    let before = store
        .checkpoint()
        .unwrap()
        .map_or(0, |n| checkpoint_size(&n));
    let size = store.size().unwrap();
    let after = store
        .checkpoint()
        .unwrap()
        .map_or(0, |n| checkpoint_size(&n));
    assert!(
        before <= size && size <= after,
        "{before} <= {size} <= {after}"
    );
    assert_eq!(store.entries(0, size).unwrap(), entries_in(0..size));
    if let Some(last) = size.checked_sub(1) {
        assert_eq!(store.index_of_leaf(&leaf_hash(last)).unwrap(), Some(last));
        let tile = store
            .tile(0, last / TILE_WIDTH)
            .unwrap()
            .expect("tile of last entry");
        let expected = level0_tile(last / TILE_WIDTH, size);
        assert!(
            tile.starts_with(&expected),
            "tile is missing hashes below size {size}"
        );
    }
    size
}

fn readers_see_whole_commits(backend: Backend) {
    const READERS: usize = 2;
    const SIZE: u64 = 1_000;
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    let store = &*store;
    let start = Barrier::new(READERS + 1);
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let mut last = 0;
                    while !done.load(Ordering::Acquire) {
                        let size = read_consistently(store);
                        assert!(size >= last, "size went back from {last} to {size}");
                        last = size;
                    }
                    read_consistently(store)
                })
            })
            .collect();
        start.wait();
        grow(store, 0, SIZE, 5);
        done.store(true, Ordering::Release);
        for reader in readers {
            assert_eq!(reader.join().expect("reader thread"), SIZE);
        }
    });
}

fn range_reads_cross_batches(backend: Backend) {
    const SIZE: u64 = 10_000;
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, SIZE, 100);
    assert_log(&*store, SIZE);
    let ranges = [
        (0, 1),
        (99, 101),
        (100, 200),
        (150, 1_250),
        (255, 257),
        (4_321, 8_765),
        (9_899, SIZE),
        (SIZE - 1, SIZE),
    ];
    for (start, end) in ranges {
        let expected = entries_in(start..end);
        assert_eq!(
            store.entries(start, end).unwrap(),
            expected,
            "{start}..{end}"
        );
    }
    assert_eq!(store.tile(0, 38).unwrap().map(|t| t.len()), Some(32 * 256));
    assert_eq!(store.tile(0, 39).unwrap().map(|t| t.len()), Some(32 * 16));
}

/// `digest` with its last byte changed: same prefix, different digest.
fn same_prefix(digest: Digest, last: u8) -> Digest {
    let mut out = digest;
    out[31] = last;
    out
}

fn shared_prefixes_are_told_apart(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    let mut shared = batch(0, 4);
    let leaf = same_prefix(leaf_hash(1), 1);
    let twin = same_prefix(leaf_hash(1), 2);
    shared.leaf_hashes[1] = leaf;
    shared.leaf_hashes[3] = twin;
    shared.event_ids[3] = same_prefix(event_id(1), 9);
    shared.tiles = vec![TileWrite {
        level: 0,
        index: 0,
        hashes: shared.leaf_hashes.concat(),
    }];
    store.commit(&shared).unwrap();
    assert_eq!(store.leaf_candidates(&leaf).unwrap(), [1, 3]);
    assert_eq!(store.index_of_leaf(&leaf).unwrap(), Some(1));
    assert_eq!(store.index_of_leaf(&twin).unwrap(), Some(3));
    assert_eq!(store.index_of_leaf(&same_prefix(leaf, 3)).unwrap(), None);
    assert_eq!(store.event_candidates(&event_id(1)).unwrap(), [1, 3]);
    assert_eq!(store.event_candidates(&event_id(2)).unwrap(), [2]);
    assert_eq!(store.leaf_candidates(&leaf_hash(3)).unwrap(), NO_INDEXES);
}

fn lookup_candidates_page_in_index_order(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, 600, 100);
    let page = |from, limit| store.lookup_candidates(&SHARED_KEY, from, limit).unwrap();
    assert_eq!(page(0, 3), [0, 1, 2]);
    assert_eq!(page(298, 4), [298, 299, 300, 301]);
    assert_eq!(page(598, 10), [598, 599]);
    assert_eq!(page(600, 10), NO_INDEXES);
    assert_eq!(page(0, 0), NO_INDEXES);
    assert_eq!(page(0, usize::MAX).len(), 600);
}

fn lookup_rows_with_shared_prefixes_are_all_candidates(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    let mut shared = batch(0, 4);
    let twin = same_prefix(own_key(1), 0xee);
    shared.lookup_rows.push(LookupRow {
        key: twin,
        index: 3,
    });
    store.commit(&shared).unwrap();
    assert_eq!(store.lookup_candidates(&own_key(1), 0, 10).unwrap(), [1, 3]);
    assert_eq!(store.lookup_candidates(&twin, 0, 10).unwrap(), [1, 3]);
    assert_eq!(store.lookup_candidates(&twin, 2, 10).unwrap(), [3]);
    assert_eq!(store.lookup_candidates(&own_key(2), 0, 10).unwrap(), [2]);
}

fn lookup_rows_outside_the_batch_change_nothing(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, 10, 10);
    for index in [9, 13] {
        let mut stray = batch(10, 3);
        stray.lookup_rows.push(LookupRow {
            key: own_key(index),
            index,
        });
        let err = store.commit(&stray).unwrap_err();
        assert!(matches!(err, StorageError::MalformedBatch(_)), "{err}");
    }
    assert_log(&*store, 10);
}

/// A store written before lookups existed refuses to grow until its rows
/// are added; adding them in steps moves the marker, survives a reopen,
/// and refuses steps that would skip or repeat entries.
fn missing_lookup_rows_are_added_before_growing(backend: Backend) {
    let fixture = Fixture::new(backend);
    let store = fixture.open();
    grow(&*store, 0, 10, 5);
    store.forget_lookup_rows().unwrap();
    assert_eq!(store.lookup_rows_through().unwrap(), 0);
    assert_eq!(
        store.lookup_candidates(&SHARED_KEY, 0, 100).unwrap(),
        NO_INDEXES
    );
    let err = store.commit(&batch(10, 2)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::LookupRowsBehind {
                through: 0,
                size: 10
            }
        ),
        "{err}"
    );
    let only = Batch {
        first_index: 10,
        checkpoint: b"cosigned".to_vec(),
        ..Batch::default()
    };
    store.commit(&only).unwrap();

    let rows = |range: Range<u64>| range.flat_map(lookup_rows).collect::<Vec<_>>();
    store.add_lookup_rows(&rows(0..4), 4).unwrap();
    drop(store);
    let store = fixture.open();
    assert_eq!(store.lookup_rows_through().unwrap(), 4);
    for (bad_rows, through) in [
        (rows(2..6), 6),
        (rows(4..8), 7),
        (rows(4..11), 11),
        (Vec::new(), 3),
    ] {
        let err = store.add_lookup_rows(&bad_rows, through).unwrap_err();
        assert!(matches!(err, StorageError::MalformedBatch(_)), "{err}");
    }
    assert_eq!(store.lookup_rows_through().unwrap(), 4);
    store.add_lookup_rows(&rows(4..10), 10).unwrap();
    store.commit(&batch(10, 2)).unwrap();
    assert_log(&*store, 12);
}

macro_rules! conformance_suite {
    ($module:ident, $backend:expr, [$($test:ident),+ $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test($backend);
                }
            )+
        }
    };
}

macro_rules! all_backends {
    ($($module:ident => $backend:expr),+ $(,)?) => {
        $(
            conformance_suite!($module, $backend, [
                new_store_is_empty,
                commits_read_back,
                partial_tile_is_replaced_whole,
                survives_reopen,
                out_of_order_changes_nothing,
                malformed_batch_changes_nothing,
                checkpoint_only_batch_replaces_checkpoint,
                readers_see_whole_commits,
                range_reads_cross_batches,
                shared_prefixes_are_told_apart,
                lookup_candidates_page_in_index_order,
                lookup_rows_with_shared_prefixes_are_all_candidates,
                lookup_rows_outside_the_batch_change_nothing,
                missing_lookup_rows_are_added_before_growing,
            ]);
        )+
    };
}

all_backends! {
    redb => super::Backend::Redb,
    sled => super::Backend::Sled,
}
