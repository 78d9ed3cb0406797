//! Integration, conformance and parity suites live in tests/.
