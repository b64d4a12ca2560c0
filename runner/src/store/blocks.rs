//! How a run's events are laid out in the store: in blocks of [`BLOCK`] consecutive sequence
//! numbers, one sled entry per block.
//!
//! One sled entry per event capped ingest at about 70,000 events per second of CPU here: every
//! sled write costs ~10 µs whatever its size (its log, page cache and node updates), and a
//! worker on an online stream emits events faster than that. A block is written once when it
//! is full (64 events for one write), and its partial last block whenever the store is flushed
//! or read; until then the orchestrator keeps it in memory ([`Pending`]). What a crash loses
//! is at most the unflushed events of each run's last block — the run folder's `events.jsonl`
//! has them, and the next `clorch run` finds the store behind the folders and rebuilds the run
//! from it, as it did for sled's own unflushed writes.
//!
//! A block's value is its events one after another, each as `offset (u8) ++ length (u32
//! little-endian) ++ the event's JSON`, offsets ascending; the key is the run's prefix and the
//! block number (big-endian, so that byte order is sequence order).

use std::ops::Range;

/// Sequence numbers per block.
pub const BLOCK: u64 = 64;

/// The events of one block being filled, by offset.
#[derive(Debug)]
pub struct Pending {
    /// The block number (`seq / BLOCK`).
    pub block: u64,
    /// The event bytes by offset within the block.
    pub entries: Vec<Option<Vec<u8>>>,
    /// Changed since it was last written.
    pub dirty: bool,
}

impl Pending {
    /// An empty block `block`.
    pub fn new(block: u64) -> Pending {
        Pending { block, entries: vec![None; BLOCK as usize], dirty: false }
    }

    /// The block as stored, read back.
    pub fn from_value(block: u64, value: &[u8]) -> Result<Pending, String> {
        let mut pending = Pending::new(block);
        for entry in entries(value) {
            let (offset, range) = entry?;
            pending.entries[offset as usize] = Some(value[range].to_vec());
        }
        Ok(pending)
    }

    /// Whether every offset holds an event.
    pub fn is_full(&self) -> bool {
        self.entries.iter().all(Option::is_some)
    }

    /// The stored form; `None` when the block holds no event.
    pub fn value(&self) -> Option<Vec<u8>> {
        let size: usize = self.entries.iter().flatten().map(|e| e.len() + 5).sum();
        if size == 0 {
            return None;
        }
        let mut value = Vec::with_capacity(size);
        for (offset, entry) in self.entries.iter().enumerate() {
            if let Some(bytes) = entry {
                value.push(offset as u8);
                value.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                value.extend_from_slice(bytes);
            }
        }
        Some(value)
    }
}

/// The entries of a stored block: each event's offset and where its JSON is in `value`; an
/// error when the bytes are not a block.
pub fn entries(value: &[u8]) -> impl Iterator<Item = Result<(u8, Range<usize>), String>> + '_ {
    let mut at = 0usize;
    let mut last: Option<u8> = None;
    std::iter::from_fn(move || {
        if at >= value.len() {
            return None;
        }
        let entry = (|| {
            let header = value.get(at..at + 5).ok_or("a block ends inside an entry's header")?;
            let offset = header[0];
            let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let start = at + 5;
            let end =
                start.checked_add(len).filter(|&e| e <= value.len()).ok_or("a block ends inside an event")?;
            if u64::from(offset) >= BLOCK || last.is_some_and(|l| offset <= l) {
                return Err("a block's offsets are out of order".to_string());
            }
            Ok((offset, start..end))
        })();
        match entry {
            Ok((offset, range)) => {
                at = range.end;
                last = Some(offset);
                Some(Ok((offset, range)))
            }
            Err(e) => {
                at = value.len();
                Some(Err(e.to_string()))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_reads_back_what_was_written_and_refuses_damage() {
        let mut p = Pending::new(3);
        p.entries[0] = Some(b"{\"a\":1}".to_vec());
        p.entries[5] = Some(b"{}".to_vec());
        let value = p.value().unwrap();
        let back = Pending::from_value(3, &value).unwrap();
        assert_eq!(back.entries, p.entries);
        assert!(!back.is_full());
        assert!(Pending::new(0).value().is_none());
        for cut in 1..value.len() {
            let damaged = &value[..cut];
            let complete = cut == 12;
            assert_eq!(Pending::from_value(3, damaged).is_ok(), complete, "cut at {cut}");
        }
        let mut swapped = value.clone();
        swapped[12] = 0; // the second entry's offset now repeats the first's
        assert!(Pending::from_value(3, &swapped).is_err());
    }
}
