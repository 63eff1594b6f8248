//! Gleap's API v3: the shape of its entities and request bodies, the client, and how its
//! answers and lists are read; shared by the emulator, the sink, the source and `doctor`.

pub mod answer;
pub mod client;
pub mod fields;
pub mod model;
pub mod paging;
