//! Placeholder being replaced by the in-process twin.
use std::time::Duration;

use tokio::sync::watch;

use super::*;

fn todo() -> ControlError {
    ControlError::Protocol("embedded control plane not implemented yet".into())
}

#[derive(Debug, Default)]
pub struct EmbeddedControlPlane {}

impl EmbeddedControlPlane {
    pub fn new() -> Self {
        EmbeddedControlPlane {}
    }
    pub async fn ping(&self) -> Result<(), ControlError> {
        Ok(())
    }
    pub async fn sync(&self, _: &ServerId, _: &PoolSpec) -> Result<u64, ControlError> {
        Err(todo())
    }
    pub async fn try_acquire(&self, _: &ServerId, _: &AcquireRequest) -> Result<Attempt, ControlError> {
        Err(todo())
    }
    pub async fn commit(&self, _: &ServerId, _: &str, _: &str, _: &SlotMeta) -> Result<Committed, ControlError> {
        Err(todo())
    }
    pub async fn abort(&self, _: &ServerId, _: &str) -> Result<bool, ControlError> {
        Err(todo())
    }
    pub async fn release(&self, _: &ServerId, _: &str, _: Outcome) -> Result<Changed, ControlError> {
        Err(todo())
    }
    pub async fn renew(&self, _: &ServerId, _: &str) -> Result<Option<i64>, ControlError> {
        Err(todo())
    }
    pub async fn unbind(&self, _: &ServerId, _: &str) -> Result<Changed, ControlError> {
        Err(todo())
    }
    pub async fn touch(&self, _: &ServerId, _: &str) -> Result<bool, ControlError> {
        Err(todo())
    }
    pub async fn mark(&self, _: &ServerId, _: &str, _: SlotState) -> Result<Changed, ControlError> {
        Err(todo())
    }
    pub async fn reclaim(&self, _: &ServerId, _: u32) -> Result<Reclaimed, ControlError> {
        Err(todo())
    }
    pub async fn stats(&self, _: &ServerId) -> Result<PoolStats, ControlError> {
        Err(todo())
    }
    pub async fn slots(&self, _: &ServerId) -> Result<Vec<SlotRecord>, ControlError> {
        Err(todo())
    }
    pub async fn note_timeout(&self, _: &ServerId) -> Result<(), ControlError> {
        Err(todo())
    }
    pub async fn pools(&self) -> Result<Vec<ServerId>, ControlError> {
        Err(todo())
    }
    pub async fn changes(&self, _: &ServerId) -> Result<watch::Receiver<u64>, ControlError> {
        Err(todo())
    }
    pub async fn campaign(&self, _: &str, _: Duration) -> Result<Campaign, ControlError> {
        Err(todo())
    }
    pub async fn leader_op(&self, _: &str, _: &str, _: u64, _: Duration) -> Result<bool, ControlError> {
        Err(todo())
    }
    pub async fn fence(&self, _: &ServerId, _: u64) -> Result<(), ControlError> {
        Err(todo())
    }
    pub async fn recycle(&self, _: &ServerId, _: u64, _: Duration, _: u32) -> Result<Vec<SlotRecord>, ControlError> {
        Err(todo())
    }
}
