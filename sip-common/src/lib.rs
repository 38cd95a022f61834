#![cfg_attr(not(test), no_std)]
//! Definitions shared by the sip-fastpath XDP program (`sip-ebpf`) and its daemon (`sip-user`):
//! map layouts, counter indices and the Call-ID hash. One definition, used on both sides.

pub mod hash;
pub mod maps;

pub use hash::{
    CALL_ID_HASH_MAX_LEN, CallIdHasher, call_id_hash_input, fmix64, hash_call_id,
    hash_call_id_input, is_call_id_terminator, slot_for_hash,
};
pub use maps::*;
