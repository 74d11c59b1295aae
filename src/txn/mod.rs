//! Producers: id allocation (here) and the transaction coordinator
//! (`coordinator.rs`). Per-partition producer state (sequences, open
//! transactions, the last stable offset, aborted transactions) lives in the
//! log (`log::producers`), under each partition's writer lock.
//!
//! Producer ids are handed out from blocks reserved durably in the metadata
//! store, so an id is never reused across restarts.

mod coordinator;

pub use coordinator::{
    TxnCoordinator, TxnDescription, TxnEffects, TxnError, TxnMeta, TxnOffset, TxnState,
    MAX_TIMEOUT_MS,
};

use parking_lot::Mutex;

use crate::store::{MetaStore, StoreError, CF_CLUSTER};

const BLOCK: i64 = 1000;
const KEY_BLOCK_END: &str = "producer_id_block_end";

/// Thread-safe.
pub struct ProducerIds {
    /// (next id to hand out, end of the durably reserved block)
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn open(store: &MetaStore) -> Result<ProducerIds, StoreError> {
        // Everything below the persisted block end may have been handed out.
        let end = store
            .get_json::<i64>(CF_CLUSTER, KEY_BLOCK_END)?
            .unwrap_or(0);
        Ok(ProducerIds {
            state: Mutex::new((end, end)),
        })
    }

    /// Whether `id` was ever handed out (or may have been, before a restart).
    pub fn is_issued(&self, id: i64) -> bool {
        id >= 0 && id < self.state.lock().0
    }

    /// A producer id never handed out before.
    pub fn allocate(&self, store: &MetaStore) -> Result<i64, StoreError> {
        let mut st = self.state.lock();
        if st.0 == st.1 {
            let end = st.1 + BLOCK;
            store.put_json(CF_CLUSTER, KEY_BLOCK_END, &end)?;
            st.1 = end;
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        let ids = ProducerIds::open(&store).unwrap();
        let a: Vec<i64> = (0..3).map(|_| ids.allocate(&store).unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        let ids = ProducerIds::open(&store).unwrap();
        assert_eq!(ids.allocate(&store).unwrap(), BLOCK);
    }
}
