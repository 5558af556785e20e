//! FaultyFs (todo)
pub struct FaultyFs;
