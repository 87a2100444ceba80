//! The settings a Redis engine runs with.

use std::sync::Arc;

use crate::engine::rules::CapPolicy;
use crate::engine::rules::{Rules, touch_resolution};
use crate::id::IdSpec;
use crate::time::Clock;

/// The settings a Redis engine runs with; durations in milliseconds.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) rules: Rules,
    pub(super) touch_resolution: Option<u64>,
    pub(super) max_states: u64,
    pub(super) max_sessions: Option<u64>,
    pub(super) cap_policy: CapPolicy,
    pub(super) max_data_size: usize,
    pub(super) id_spec: IdSpec,
    pub(super) lock_ttl: u64,
    pub(super) clock: Arc<dyn Clock>,
}

impl Config {
    /// The touch resolution, as the redb engine computes it.
    pub(super) fn touch_resolution(&self) -> u64 {
        touch_resolution(self.rules.idle_timeout, self.touch_resolution)
    }
}
