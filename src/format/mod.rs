//! The file format: the redb table definitions and format version ([`schema`]) and the record
//! codec, crc32 and bincode ([`codec`]). bincode appears only in `codec.rs`, redb table
//! definitions only in `schema.rs`.

pub(crate) mod codec;
pub(crate) mod schema;
