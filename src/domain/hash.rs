//! A stable hash, below the modules that use it (`event` for idempotency
//! scopes and bodies, `order` for owed restocks' keys, the actors for
//! shards).

/// FNV-1a, 64 bits: a stable hash for the idempotency scope and body (stable
/// across builds and versions, unlike the std or ahash hashers).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
