//! The control plane, one operation at a time: each file holds one script's Redis call (its
//! arguments and typed reply) and its embedded twin side by side, so a pool rule is changed in
//! `lua/<op>.lua` and in the file of the same name here, and nowhere else. Helpers shared by
//! several scripts are the prelude (`lua/prelude.lua`) and its twin (`embedded/pool.rs`).

mod abort;
mod acquire;
mod breaker;
mod commit;
mod fence;
mod forget;
mod leader;
mod mark;
mod reclaim;
mod recycle;
mod release;
mod renew;
mod stats;
mod sync;
mod touch;
mod unbind;
mod warm;

pub use leader::LeaderOp;
