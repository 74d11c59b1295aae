//! An encoded response as a list of buffers, and the buffer a fetch response is encoded
//! into so that its records go out as they were read instead of being copied into the
//! response: kafka-protocol's encoder writes the records field with one `put_slice` of
//! the partition's `Bytes`; [`ChunkBuf`] recognises that slice and keeps a reference to
//! it in place of a copy. The connection writes the buffers in order.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// One response frame (length prefix included): its bytes are the buffers', in order.
#[derive(Debug, Default)]
pub struct Frame(Vec<Bytes>);

impl Frame {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// An empty frame stands for a response that could not be encoded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.0
    }
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Frame {
        Frame(vec![b])
    }
}

/// Slices shorter than this are copied: a separate buffer (and write) is not worth it.
const MIN_SHARED: usize = 4096;

/// A [`BufMut`] for kafka-protocol's encoders that copies everything except slices of
/// `shared` buffers, which it keeps as references.
pub struct ChunkBuf<'a> {
    shared: &'a [Bytes],
    done: Vec<Bytes>,
    cur: BytesMut,
    /// Bytes in `done`.
    base: usize,
    /// A seek or range reached into `done` (kafka-protocol's gaps; the fetch response
    /// uses none): the output is wrong and must not be used.
    broken: bool,
    scratch: Vec<u8>,
}

impl<'a> ChunkBuf<'a> {
    pub fn new(shared: &'a [Bytes], capacity: usize) -> ChunkBuf<'a> {
        ChunkBuf {
            shared,
            done: Vec::new(),
            cur: BytesMut::with_capacity(capacity),
            base: 0,
            broken: false,
            scratch: Vec::new(),
        }
    }

    /// The frame; None if the encoder used what this buffer cannot do.
    pub fn finish(mut self) -> Option<Frame> {
        if self.broken {
            return None;
        }
        if !self.cur.is_empty() {
            self.done.push(self.cur.freeze());
        }
        Some(Frame(self.done))
    }

    fn shared_slice(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < MIN_SHARED {
            return None;
        }
        let (start, end) = (src.as_ptr() as usize, src.as_ptr() as usize + src.len());
        self.shared
            .iter()
            .find(|b| {
                let from = b.as_ptr() as usize;
                from <= start && end <= from + b.len()
            })
            .map(|b| b.slice_ref(src))
    }
}

// SAFETY: every method forwards to the inner `BytesMut`, whose implementation upholds the
// trait's contract; `put_slice` only appends (to `cur` or as a whole new buffer).
unsafe impl BufMut for ChunkBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (cnt bytes of chunk_mut initialised) is forwarded.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared_slice(src) {
            Some(b) => {
                if !self.cur.is_empty() {
                    let head = self.cur.split().freeze();
                    self.base += head.len();
                    self.done.push(head);
                }
                self.base += b.len();
                self.done.push(b);
            }
            None => self.cur.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for ChunkBuf<'_> {
    fn offset(&self) -> usize {
        self.base + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.base) {
            Some(o) => self.cur.resize(o, 0),
            None => self.broken = true,
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        match (r.start.checked_sub(self.base), r.end.checked_sub(self.base)) {
            (Some(s), Some(e)) if s <= e && e <= self.cur.len() => &mut self.cur[s..e],
            _ => {
                self.broken = true;
                self.scratch.resize(r.len(), 0);
                &mut self.scratch[..]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::fetch_response::{
        FetchResponse, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::protocol::Encodable;

    /// A fetch response encoded through a `ChunkBuf` is the same bytes as through a
    /// `BytesMut`, at every version, and large records are shared, not copied.
    #[test]
    fn chunked_fetch_response_is_byte_identical() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let small = Bytes::from_static(b"tiny records");
        let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(kafka_protocol::protocol::StrBytes::from_static_str("t").into())
            .with_partitions(vec![
                PartitionData::default()
                    .with_partition_index(0)
                    .with_records(Some(big.clone())),
                PartitionData::default()
                    .with_partition_index(1)
                    .with_records(Some(small.clone())),
                PartitionData::default()
                    .with_partition_index(2)
                    .with_records(Some(big.slice(100..9000))),
            ])]);
        for version in 4..=17 {
            let mut plain = BytesMut::new();
            resp.encode(&mut plain, version).unwrap();
            let shared = [big.clone(), small.clone()];
            let mut chunked = ChunkBuf::new(&shared, 64);
            resp.encode(&mut chunked, version).unwrap();
            let frame = chunked.finish().unwrap();
            let mut joined = BytesMut::new();
            for c in frame.chunks() {
                joined.extend_from_slice(c);
            }
            assert_eq!(joined, plain, "version {version}");
            assert_eq!(frame.len(), plain.len());
            let shared_chunks: Vec<_> = frame
                .chunks()
                .iter()
                .filter(|c| c.len() >= MIN_SHARED)
                .collect();
            assert_eq!(shared_chunks.len(), 2, "version {version}");
            assert_eq!(shared_chunks[0].as_ptr(), big.as_ptr());
            assert_eq!(shared_chunks[1].as_ptr(), big[100..].as_ptr());
            assert!(frame.chunks().iter().all(|c| c.has_remaining()));
        }
    }

    #[test]
    fn a_seek_into_shared_bytes_is_refused() {
        let big = Bytes::from(vec![1u8; 5000]);
        let shared = [big.clone()];
        let mut b = ChunkBuf::new(&shared, 16);
        b.put_i32(1);
        b.put_slice(&big);
        b.put_i32(2);
        assert_eq!(b.offset(), 5008);
        b.range(5004..5008).copy_from_slice(&[0, 0, 0, 3]);
        b.seek(5008);
        let mut ok = ChunkBuf::new(&shared, 16);
        ok.put_slice(&big);
        assert!(ok.finish().is_some());
        b.range(0..4);
        assert!(b.finish().is_none());
    }
}
