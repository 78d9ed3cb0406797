//! Failures of the storage PUT that `/attachments/presigned` points at.

use super::{Faults, lock};

/// How the next presigned PUT fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadFault {
    /// The connection is closed after part of the body was read, with no answer.
    Reset,
    /// The storage answers this status (403 reads as an expired URL) after reading the body.
    Status(u16),
}

impl Faults {
    /// Queues a failure for the next presigned PUT (used in order, once each).
    pub fn fail_next_upload(&self, fault: UploadFault) {
        lock(&self.inner.uploads).push_back(fault);
    }

    pub(crate) fn take_upload_fault(&self) -> Option<UploadFault> {
        lock(&self.inner.uploads).pop_front()
    }
}
