//! A Platos-compatible in-memory server.
