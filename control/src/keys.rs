//! Every Redis key poolgate uses, built in one place. All keys of one pool share the hash tag
//! `{server_id}` so that each pool script touches exactly one Cluster slot (I7); server ids
//! cannot contain braces, and cannot start with `_`, so the `{_leader}` and `{_registry}` tags
//! never collide with a pool.

use poolgate_shared::domain::server::ServerId;

/// Names of the fourteen keys a pool script receives, in `KEYS` order (see `lua/prelude.lua`).
pub const POOL_KEY_SUFFIXES: [&str; 14] = [
    "cfg", "slots", "all", "avail", "bload", "resv", "rdata", "leases", "ldata", "bind", "bexp", "st", "closing",
    "users",
];

/// One of a pool's keys, by name (its discriminant is its place in `KEYS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKey {
    Cfg,
    Slots,
    All,
    Avail,
    Bload,
    Resv,
    Rdata,
    Leases,
    Ldata,
    Bind,
    Bexp,
    /// Counters and cursors.
    St,
    Closing,
    /// Per-user counters: client sessions, requests in flight, rate-limit state.
    Users,
}

/// The keys of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolKeys {
    /// Every key, in the `KEYS` order the scripts receive them.
    pub keys: Vec<String>,
    /// Pub/sub channel announcing releases (and anything else that may free capacity).
    pub channel: String,
}

impl PoolKeys {
    pub fn new(prefix: &str, pool: &ServerId) -> PoolKeys {
        let keys: Vec<String> = POOL_KEY_SUFFIXES
            .iter()
            .map(|s| format!("{prefix}{{{pool}}}:{s}"))
            .collect();
        let channel = format!("{}:ev", keys[PoolKey::St as usize]);
        PoolKeys { keys, channel }
    }

    /// One key by name.
    pub fn get(&self, key: PoolKey) -> &str {
        &self.keys[key as usize]
    }

    /// The key holding counters and cursors (`st`).
    pub fn stats_key(&self) -> &str {
        self.get(PoolKey::St)
    }
}

/// Leader election keys: the holder (with a TTL set by Redis) and the term counter (never
/// deleted, never expiring: the fencing token's source).
pub fn leader_keys(prefix: &str) -> [String; 2] {
    [
        format!("{prefix}{{_leader}}:holder"),
        format!("{prefix}{{_leader}}:term"),
    ]
}

/// The set of pools that were ever synced, for the coordinator to iterate.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}{{_registry}}:pools")
}

/// Redis Cluster's hash slot of a key (CRC16/XMODEM of the hash tag or the key, mod 16384).
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_pool_is_in_one_slot() {
        for id in ["server-1", "a", "x.y_z-9", "leader"] {
            let pool = ServerId::parse(id).expect("valid id");
            let keys = PoolKeys::new("mcpgateway:pool:", &pool);
            assert_eq!(keys.keys.len(), 14);
            let slot = hash_slot(&keys.keys[0]);
            assert!(keys.keys.iter().all(|k| hash_slot(k) == slot), "{keys:?}");
            assert!(keys.keys.iter().all(|k| k.starts_with("mcpgateway:pool:{")));
        }
    }

    #[test]
    fn named_keys_match_the_script_order() {
        let keys = PoolKeys::new("p:", &ServerId::parse("s").expect("valid id"));
        assert_eq!(keys.get(PoolKey::Cfg), "p:{s}:cfg");
        assert_eq!(keys.get(PoolKey::Slots), "p:{s}:slots");
        assert_eq!(keys.get(PoolKey::Ldata), "p:{s}:ldata");
        assert_eq!(keys.get(PoolKey::St), "p:{s}:st");
        assert_eq!(keys.get(PoolKey::Closing), "p:{s}:closing");
        assert_eq!(keys.get(PoolKey::Users), "p:{s}:users");
        assert_eq!(keys.channel, "p:{s}:st:ev");
    }

    #[test]
    fn crc16_matches_redis_reference_values() {
        // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("{user1000}.followers"));
        assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}"));
    }
}
