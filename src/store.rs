//! The embedded RocksDB that holds the broker's small state, one column family
//! per owner: `cluster` (cluster id, producer id blocks), `topics` (topic
//! metadata), `groups` (group metadata), `offsets` (committed offsets), `txns`
//! (transaction state), `delay_*` (the delay wheel, binary keys, see `src/delay`),
//! `views`, `quotas` (client quotas).
//!
//! Metadata writes are rare and synced (WAL fsync) before they are acknowledged.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("metadata store: bad record under {key}: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
}

pub const CF_CLUSTER: &str = "cluster";
pub const CF_TOPICS: &str = "topics";
pub const CF_GROUPS: &str = "groups";
pub const CF_OFFSETS: &str = "offsets";
pub const CF_TXNS: &str = "txns";
/// The delay wheel (`src/delay`): pending records by due time, their ids, its bookkeeping.
pub const CF_DELAY_WHEEL: &str = "delay_wheel";
pub const CF_DELAY_IDS: &str = "delay_ids";
pub const CF_DELAY_META: &str = "delay_meta";
/// View definitions (`src/filter/views.rs`).
pub const CF_VIEWS: &str = "views";
/// Client quotas (`src/quotas`).
pub const CF_QUOTAS: &str = "quotas";
const CFS: &[&str] = &[
    CF_CLUSTER,
    CF_TOPICS,
    CF_GROUPS,
    CF_OFFSETS,
    CF_TXNS,
    CF_DELAY_WHEEL,
    CF_DELAY_IDS,
    CF_DELAY_META,
    CF_VIEWS,
    CF_QUOTAS,
];

/// Thread-safe (RocksDB is); share it in an `Arc`.
pub struct MetaStore {
    db: DB,
}

impl MetaStore {
    pub fn open(path: &Path) -> Result<MetaStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Small state: keep RocksDB's own memory small (idle RSS target).
        opts.set_write_buffer_size(4 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_keep_log_file_num(3);
        // The delay wheel may hold many millions of records: its index and filter blocks
        // live in one bounded block cache instead of growing with the data.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(16 << 20));
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut big = opts.clone();
        big.set_block_based_table_factory(&table);
        let cfs = CFS.iter().map(|n| {
            // Each column family gets the same small memtables (the default is 64 MiB each).
            let o = if n.starts_with("delay_") { &big } else { &opts };
            ColumnFamilyDescriptor::new(*n, o.clone())
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(MetaStore { db })
    }

    /// The database itself, for owners that keep binary keys (the delay wheel).
    pub fn db(&self) -> &DB {
        &self.db
    }

    pub fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    pub fn put_json<T: Serialize>(&self, cf: &str, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).expect("serializing plain structs cannot fail");
        self.db
            .put_cf_opt(self.cf(cf), key.as_bytes(), bytes, &Self::synced())?;
        Ok(())
    }

    /// Writes many values in one atomic batch; `sync` makes it durable against
    /// power loss (a WAL fsync) before returning, else it survives a process crash.
    pub fn put_json_many<T: Serialize>(
        &self,
        cf: &str,
        items: &[(String, T)],
        sync: bool,
    ) -> Result<(), StoreError> {
        let handle = self.cf(cf);
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in items {
            let bytes = serde_json::to_vec(v).expect("serializing plain structs cannot fail");
            batch.put_cf(handle, k.as_bytes(), bytes);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    pub fn get_json<T: DeserializeOwned>(
        &self,
        cf: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get_cf(self.cf(cf), key.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| StoreError::Decode {
                    key: key.to_string(),
                    source,
                }),
        }
    }

    pub fn delete(&self, cf: &str, key: &str) -> Result<(), StoreError> {
        self.db
            .delete_cf_opt(self.cf(cf), key.as_bytes(), &Self::synced())?;
        Ok(())
    }

    /// Every (key, value) in a column family, in key order.
    pub fn scan_json<T: DeserializeOwned>(&self, cf: &str) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = serde_json::from_slice(&v).map_err(|source| StoreError::Decode {
                key: key.clone(),
                source,
            })?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// The cluster id, created on first start and stable afterwards.
    pub fn cluster_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.get_json::<String>(CF_CLUSTER, "cluster_id")? {
            return Ok(id);
        }
        let id = base64_uuid(uuid::Uuid::new_v4());
        self.put_json(CF_CLUSTER, "cluster_id", &id)?;
        Ok(id)
    }
}

/// Kafka prints cluster ids as URL-safe base64 of a UUID without padding.
fn base64_uuid(u: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = u.as_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_stable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = MetaStore::open(dir.path()).unwrap().cluster_id().unwrap();
        assert_eq!(id.len(), 22);
        let again = MetaStore::open(dir.path()).unwrap().cluster_id().unwrap();
        assert_eq!(id, again);
    }

    #[test]
    fn json_round_trip_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(dir.path()).unwrap();
        s.put_json(CF_TOPICS, "b", &2u32).unwrap();
        s.put_json(CF_TOPICS, "a", &1u32).unwrap();
        assert_eq!(
            s.scan_json::<u32>(CF_TOPICS).unwrap(),
            vec![("a".into(), 1), ("b".into(), 2)]
        );
        s.delete(CF_TOPICS, "a").unwrap();
        assert_eq!(s.get_json::<u32>(CF_TOPICS, "a").unwrap(), None);
    }
}
