//! The in-process control plane of the embedded single node. It holds no connection, so it is
//! always available; pool state arrives with the control-plane issue.

/// In-process twin of the Redis control plane.
#[derive(Debug, Default)]
pub struct EmbeddedControlPlane {}

impl EmbeddedControlPlane {
    pub fn new() -> Self {
        EmbeddedControlPlane {}
    }

    pub fn ping(&self) -> Result<(), super::ControlError> {
        Ok(())
    }
}
